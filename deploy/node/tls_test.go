package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sharpeye/alerts/casedb"
	"sharpeye/console/auth"
)

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sharpeye test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestTLS: with a certificate the listener serves HTTPS only, and the
// session cookie is marked Secure.
func TestTLS(t *testing.T) {
	cert, key := selfSigned(t)
	n := startNode(t, casedb.SQLite, func(c *Config) { c.HTTP.TLSCert, c.HTTP.TLSKey = cert, key })
	if !strings.HasPrefix(n.URL(), "https://") {
		t.Fatalf("URL %s", n.URL())
	}
	if _, err := n.Auth().EnsureUser(context.Background(), auth.NewUser{Username: "admin", Password: "admin-password-1", Role: auth.Admin}); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	res, err := c.Post(n.URL()+"/api/v1/auth/login", "application/json", strings.NewReader(`{"username":"admin","password":"admin-password-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || res.TLS == nil {
		t.Fatalf("login over TLS: %d", res.StatusCode)
	}
	var secure bool
	for _, ck := range res.Cookies() {
		if ck.Name == "sharpeye_session" {
			secure = ck.Secure
		}
	}
	if !secure || res.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("cookie Secure=%v, HSTS %q", secure, res.Header.Get("Strict-Transport-Security"))
	}
	// Plain HTTP to the TLS port gets nowhere.
	plain := strings.Replace(n.URL(), "https://", "http://", 1)
	if res, err := (&http.Client{Timeout: 5 * time.Second}).Get(plain + "/healthz"); err == nil && res.StatusCode == 200 {
		t.Fatal("plain HTTP answered on the TLS listener")
	}
}
