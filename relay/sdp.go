package relay

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// offer is what the relay needs to know of a WHEP offer before setting up
// a peer connection for it.
type offer struct {
	// video: a video section the relay can send on (not rejected, not
	// sendonly or inactive).
	video bool
	// h264: H.264 with packetization-mode=1 is offered; h264Mode0: only
	// packetization-mode=0 H.264 is.
	h264, h264Mode0 bool
	h265            bool
	// h264Offered are the offer's packetization-mode=1 H.264 formats, in
	// its order: the answer uses their payload types.
	h264Offered []offeredCodec
	// iceUfrag is the viewer's ICE username fragment.
	iceUfrag string
}

// offeredCodec is one format of an offer's video section.
type offeredCodec struct {
	pt   uint8
	fmtp string
}

// parseOffer checks an SDP offer and reads its video codecs. Its errors
// are sentences for the caller.
func parseOffer(raw []byte) (offer, error) {
	var o offer
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(raw); err != nil {
		return o, fmt.Errorf("malformed SDP offer: %v", strings.TrimPrefix(err.Error(), "sdp: "))
	}
	if len(sd.MediaDescriptions) == 0 {
		return o, errors.New("the SDP offer has no media section: add a recvonly video transceiver before creating the offer")
	}
	o.iceUfrag, _ = sd.Attribute("ice-ufrag")
	for _, md := range sd.MediaDescriptions {
		if !strings.EqualFold(md.MediaName.Media, "video") || md.MediaName.Port.Value == 0 {
			continue
		}
		if _, ok := md.Attribute("sendonly"); ok {
			continue
		}
		if _, ok := md.Attribute("inactive"); ok {
			continue
		}
		if !o.video {
			if u, ok := md.Attribute("ice-ufrag"); ok && o.iceUfrag == "" {
				o.iceUfrag = u
			}
		}
		o.video = true
		names, fmtps := map[string]string{}, map[string]string{}
		for _, a := range md.Attributes {
			pt, rest, ok := strings.Cut(a.Value, " ")
			if !ok {
				continue
			}
			switch a.Key {
			case "rtpmap":
				names[pt] = strings.TrimSpace(rest)
			case "fmtp":
				fmtps[pt] = strings.TrimSpace(rest)
			}
		}
		for _, pt := range md.MediaName.Formats {
			name, clock, _ := strings.Cut(names[pt], "/")
			clock, _, _ = strings.Cut(clock, "/")
			if clock != "90000" {
				continue
			}
			switch strings.ToUpper(name) {
			case "H264":
				if fmtpParam(fmtps[pt], "packetization-mode") == "1" {
					o.h264 = true
					if n, err := strconv.ParseUint(pt, 10, 8); err == nil && n >= 96 && n <= 127 && len(o.h264Offered) < 16 {
						o.h264Offered = append(o.h264Offered, offeredCodec{uint8(n), fmtps[pt]})
					}
				} else {
					o.h264Mode0 = true
				}
			case "H265":
				o.h265 = true
			}
		}
	}
	if !o.video {
		return o, errors.New("the SDP offer has no video section the relay can send on: add a recvonly video transceiver")
	}
	return o, nil
}

// fmtpParam returns one parameter of an fmtp line ("a=1;b=2").
func fmtpParam(fmtp, key string) string {
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, key) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// sdpFrag is a trickle-ice-sdpfrag (RFC 8840) body of a PATCH.
type sdpFrag struct {
	ufrag, pwd string
	candidates []fragCandidate
}

type fragCandidate struct {
	mid       string
	candidate string // "candidate:..." without "a="
}

// maxFragCandidates bounds the candidates of one PATCH.
const maxFragCandidates = 64

// parseSDPFrag reads the ICE credentials and candidates of an SDP
// fragment.
func parseSDPFrag(body string) (sdpFrag, error) {
	var f sdpFrag
	mid, inMedia := "", false
	for i, line := range strings.Split(body, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case line == "":
		case strings.HasPrefix(line, "a=ice-ufrag:"):
			f.ufrag = strings.TrimPrefix(line, "a=ice-ufrag:")
		case strings.HasPrefix(line, "a=ice-pwd:"):
			f.pwd = strings.TrimPrefix(line, "a=ice-pwd:")
		case strings.HasPrefix(line, "m="):
			inMedia, mid = true, ""
		case strings.HasPrefix(line, "a=mid:"):
			mid = strings.TrimPrefix(line, "a=mid:")
		case strings.HasPrefix(line, "a=candidate:"):
			if !inMedia {
				return f, fmt.Errorf("line %d: a candidate before any m= line", i+1)
			}
			if len(f.candidates) >= maxFragCandidates {
				return f, fmt.Errorf("more than %d candidates in one fragment", maxFragCandidates)
			}
			f.candidates = append(f.candidates, fragCandidate{mid: mid, candidate: strings.TrimPrefix(line, "a=")})
		case len(line) >= 2 && line[1] == '=' && line[0] >= 'a' && line[0] <= 'z':
			// Other lines (a=group, a=ice-options, a=end-of-candidates)
			// need nothing.
		default:
			return f, fmt.Errorf("line %d is not an SDP line: %.40q", i+1, line)
		}
	}
	return f, nil
}
