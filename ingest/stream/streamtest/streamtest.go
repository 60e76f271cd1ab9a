// Package streamtest holds helpers for tests that consume a camera's hub.
package streamtest

import (
	"testing"
	"time"

	"sharpeye/ingest/stream"
)

// WaitKeyframe reads sub until a keyframe arrives, failing the test, with
// who in the message, when the subscription ends or none comes within
// timeout.
func WaitKeyframe(t testing.TB, sub *stream.Sub, timeout time.Duration, who string) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case u, ok := <-sub.Units():
			if !ok {
				t.Fatalf("%s: the subscription ended: %v", who, sub.Err())
			}
			if u.Key {
				return
			}
		case <-deadline.C:
			t.Fatalf("%s: no keyframe within %s", who, timeout)
		}
	}
}

// Timeout is how long Watch and Fresh wait for a keyframe: generous, for
// machines whose two cores run other packages' tests too.
const Timeout = time.Minute

// Watch subscribes to hub, closed when the test ends, and waits for the
// first keyframe.
func Watch(t testing.TB, hub *stream.Hub, who string) *stream.Sub {
	t.Helper()
	sub, err := hub.Subscribe(256)
	if err != nil {
		t.Fatalf("%s: subscribe: %v", who, err)
	}
	t.Cleanup(sub.Close)
	WaitKeyframe(t, sub, Timeout, who)
	return sub
}

// Fresh drops what sub has queued, then waits for a keyframe: one sent
// after the call (a hand-over's, say).
func Fresh(t testing.TB, sub *stream.Sub, who string) {
	t.Helper()
	for len(sub.Units()) > 0 {
		<-sub.Units()
	}
	WaitKeyframe(t, sub, Timeout, who)
}
