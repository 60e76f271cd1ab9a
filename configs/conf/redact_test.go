package conf

import "testing"

func TestRedactURLs(t *testing.T) {
	for in, want := range map[string]string{
		"rtsp://admin:pw@10.0.0.1:554/live":           "rtsp://<redacted>@10.0.0.1:554/live",
		"open rtsp://user@cam/x failed":               "open rtsp://<redacted>@cam/x failed",
		"rtsp://10.0.0.1/live":                        "rtsp://10.0.0.1/live",
		"two: rtsp://a:b@h1/x and http://c:d@h2/y ok": "two: rtsp://<redacted>@h1/x and http://<redacted>@h2/y ok",
		"weird rtsp://a:b%zz@h/x":                     "weird rtsp://<redacted>@h/x",
	} {
		if got := RedactURLs(in); got != want {
			t.Errorf("RedactURLs(%q) = %q, want %q", in, got, want)
		}
	}
}
