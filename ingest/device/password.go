package device

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Stored passwords are PBKDF2-HMAC-SHA256 hashes written
// "pbkdf2-sha256$<iterations>$<salt>$<key>" (unpadded base64). The work
// factor is modest on purpose: a broker restart makes every device log in
// again at once, and device passwords are machine secrets, not words a
// person chose (the API refuses passwords shorter than MinPasswordLen).
const (
	hashScheme     = "pbkdf2-sha256"
	hashIterations = 4096 // about 1 ms on the machines this runs on
	hashSaltLen    = 16
	hashKeyLen     = 32
)

var errBadHash = errors.New("unrecognised password hash")

// hashPassword returns the stored form of password.
func hashPassword(password string) (string, error) {
	salt := make([]byte, hashSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha256.New, password, salt, hashIterations, hashKeyLen)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("%s$%d$%s$%s", hashScheme, hashIterations, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// checkHash reports whether password matches the stored hash.
func checkHash(hash, password string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 4 || parts[0] != hashScheme {
		return false, errBadHash
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > 1<<20 {
		return false, errBadHash
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(parts[2])
	if err != nil || len(salt) < 8 {
		return false, errBadHash
	}
	want, err := enc.DecodeString(parts[3])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, errBadHash
	}
	got, err := pbkdf2.Key(sha256.New, password, salt, iter, len(want))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
