package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// verifiedTTL is how long a password check of the RTSP re-serve is
// remembered. An RTSP client sends its credentials with every request
// (DESCRIBE, SETUP, PLAY, and again at each reconnect); without the cache
// each would cost an argon2 hash and an attempt against the login limits,
// which a player exhausts in two connections.
const verifiedTTL = 5 * time.Minute

// verifiedMax bounds the cache; past it, expired entries go, and if none
// has, all of them.
const verifiedMax = 10000

// verified remembers which user name and secret passed a password check,
// by a hash of the two, with the user's id and password hash then: a hit
// still reads the user, so that a changed password, a disabled account or
// a new role or region applies at once.
type verified struct {
	mu sync.Mutex
	m  map[[32]byte]verifiedEntry
}

type verifiedEntry struct {
	userID, hash string
	until        time.Time
}

func verifiedKey(username, secret string) [32]byte {
	return sha256.Sum256([]byte(username + "\x00" + secret))
}

func (v *verified) get(k [32]byte, now time.Time) (verifiedEntry, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.m[k]
	if ok && now.After(e.until) {
		delete(v.m, k)
		return verifiedEntry{}, false
	}
	return e, ok
}

func (v *verified) put(k [32]byte, e verifiedEntry, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[[32]byte]verifiedEntry{}
	}
	if len(v.m) >= verifiedMax {
		for key, old := range v.m {
			if now.After(old.until) {
				delete(v.m, key)
			}
		}
		if len(v.m) >= verifiedMax {
			clear(v.m)
		}
	}
	v.m[k] = e
}

func (v *verified) drop(k [32]byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.m, k)
}
