package relay

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// dropper loses every 10th RTP packet (10 in all) the first time it arrives, as a
// lossy network would; it records what it dropped and what came again.
type dropper struct {
	interceptor.NoOp
	mu      sync.Mutex
	seen    int
	dropped map[uint16]bool
	again   int
}

func (d *dropper) NewInterceptor(string) (interceptor.Interceptor, error) { return d, nil }

func (d *dropper) BindRemoteStream(_ *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attr, err := reader.Read(b, a)
			if err != nil {
				return n, attr, err
			}
			if attr == nil {
				attr = interceptor.Attributes{}
			}
			h, err := attr.GetRTPHeader(b[:n])
			if err != nil {
				return n, attr, nil
			}
			d.mu.Lock()
			d.seen++
			drop := false
			if done, ok := d.dropped[h.SequenceNumber]; ok {
				if !done {
					d.dropped[h.SequenceNumber] = true
					d.again++
				}
			} else if d.seen%10 == 0 && len(d.dropped) < 10 {
				d.dropped[h.SequenceNumber] = false
				drop = true
			}
			d.mu.Unlock()
			if !drop {
				return n, attr, nil
			}
		}
	})
}

func (d *dropper) counts() (dropped, again int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.dropped), d.again
}

// Lost packets are sent again from the viewer's NACK buffer.
func TestNACKRetransmits(t *testing.T) {
	e := newEnv(t, nil)
	e.camera(t, "cam1", "county/east", loadClip(t, "street-360p"))
	d := &dropper{dropped: map[uint16]bool{}}
	// The dropper sits after SRTP, which has already seen the packets it
	// drops: without this, their retransmissions would look replayed.
	a, err := newClientAPI(func(se *webrtc.SettingEngine) { se.DisableSRTPReplayProtection(true) }, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := DialWith(ctx, e.srv.URL, "cam1", aliceToken, DialOptions{API: a})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	waitFor(t, "10 packets dropped and sent again", func() bool {
		dropped, again := d.counts()
		return dropped == 10 && again == 10
	})
	if info := e.sessionInfo(t, v); info.NACKs < 10 {
		t.Fatalf("the session counted %d NACKed packets, want at least 10", info.NACKs)
	}
}
