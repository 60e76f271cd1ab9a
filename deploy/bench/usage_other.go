//go:build !unix

package bench

import (
	"errors"
	"time"
)

// cpuTime is not available here: the bench needs getrusage.
func cpuTime() (time.Duration, error) {
	return 0, errors.New("CPU time: getrusage is not available on this system")
}
