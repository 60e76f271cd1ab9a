//go:build !linux

package rtsp

import "time"

// ReactorConns: there are no reactors here.
func ReactorConns(time.Duration) int { return -1 }
