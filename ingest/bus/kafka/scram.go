package kafka

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go/sasl"
)

// scram is the client side of SASL SCRAM-SHA-256 and SCRAM-SHA-512
// (RFC 5802, RFC 7677), as Kafka uses them (KIP-84). kafka-go's own
// implementation needs a module this one does not depend on.
type scram struct {
	name     string
	hash     func() hash.Hash
	username string
	password string
}

var _ sasl.Mechanism = scram{}

// minIterations is the least PBKDF2 work accepted from a server, as
// Kafka requires: a server asking for less is not trusted.
const minIterations = 4096

func newSCRAM(mechanism, username, password string) (scram, error) {
	switch mechanism {
	case SASLSCRAMSHA256:
		return scram{"SCRAM-SHA-256", sha256.New, username, password}, nil
	case SASLSCRAMSHA512:
		return scram{"SCRAM-SHA-512", sha512.New, username, password}, nil
	}
	return scram{}, fmt.Errorf("unknown SCRAM mechanism %q", mechanism)
}

func (s scram) Name() string { return s.name }

func (s scram) Start(context.Context) (sasl.StateMachine, []byte, error) {
	nonce := make([]byte, 24)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	c := &scramConv{m: s, clientNonce: base64.RawStdEncoding.EncodeToString(nonce)}
	c.clientFirstBare = "n=" + escapeSASLName(s.username) + ",r=" + c.clientNonce
	return c, []byte("n,," + c.clientFirstBare), nil
}

// scramConv is one authentication exchange.
type scramConv struct {
	m               scram
	clientNonce     string
	clientFirstBare string
	serverSignature []byte
	step            int
}

func (c *scramConv) Next(_ context.Context, challenge []byte) (bool, []byte, error) {
	c.step++
	switch c.step {
	case 1:
		resp, err := c.final(string(challenge))
		return false, resp, err
	case 2:
		return true, nil, c.verify(string(challenge))
	}
	return false, nil, errors.New("scram: unexpected server message")
}

// final answers the server-first message with the client proof.
func (c *scramConv) final(serverFirst string) ([]byte, error) {
	attrs := scramAttrs(serverFirst)
	if e, ok := attrs["e"]; ok {
		return nil, fmt.Errorf("scram: server error %q", e)
	}
	nonce, salt64, iterStr := attrs["r"], attrs["s"], attrs["i"]
	if !strings.HasPrefix(nonce, c.clientNonce) || len(nonce) == len(c.clientNonce) {
		return nil, errors.New("scram: server nonce does not extend the client nonce")
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil || len(salt) == 0 {
		return nil, errors.New("scram: bad salt from server")
	}
	iter, err := strconv.Atoi(iterStr)
	if err != nil || iter < minIterations || iter > 1<<20 {
		return nil, fmt.Errorf("scram: iteration count %q refused", iterStr)
	}
	salted, err := pbkdf2.Key(c.m.hash, c.m.password, salt, iter, c.m.hash().Size())
	if err != nil {
		return nil, fmt.Errorf("scram: %w", err)
	}
	clientKey := c.hmac(salted, "Client Key")
	storedKey := c.sum(clientKey)
	withoutProof := "c=biws,r=" + nonce // biws: base64 of the GS2 header "n,,"
	authMessage := c.clientFirstBare + "," + serverFirst + "," + withoutProof
	signature := c.hmac(storedKey, authMessage)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ signature[i]
	}
	c.serverSignature = c.hmac(c.hmac(salted, "Server Key"), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// verify checks the server's signature, which proves it knows the
// password too.
func (c *scramConv) verify(serverFinal string) error {
	attrs := scramAttrs(serverFinal)
	if e, ok := attrs["e"]; ok {
		return fmt.Errorf("scram: server error %q", e)
	}
	v, err := base64.StdEncoding.DecodeString(attrs["v"])
	if err != nil || !hmac.Equal(v, c.serverSignature) {
		return errors.New("scram: server signature mismatch")
	}
	return nil
}

func (c *scramConv) hmac(key []byte, msg string) []byte {
	h := hmac.New(c.m.hash, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

func (c *scramConv) sum(b []byte) []byte {
	h := c.m.hash()
	h.Write(b)
	return h.Sum(nil)
}

// scramAttrs splits "a=1,b=2" into its attributes.
func scramAttrs(msg string) map[string]string {
	attrs := map[string]string{}
	for part := range strings.SplitSeq(msg, ",") {
		if k, v, ok := strings.Cut(part, "="); ok && len(k) == 1 {
			if _, dup := attrs[k]; !dup {
				attrs[k] = v
			}
		}
	}
	return attrs
}

// escapeSASLName escapes ',' and '=' in a user name (RFC 5802 5.1).
func escapeSASLName(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case ',':
			b.WriteString("=2C")
		case '=':
			b.WriteString("=3D")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
