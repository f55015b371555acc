package kafkaclient

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
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ping connects with opts and sends one request, which needs the connection's TLS handshake
// and SASL authentication to succeed.
func ping(t *testing.T, opts []kgo.Opt) error {
	t.Helper()
	cl, err := kgo.NewClient(append(opts, kgo.RequestRetries(0), kgo.RetryTimeout(time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

func TestSASLRoundTrip(t *testing.T) {
	const user, pass = "millrace-exec", "s3cret"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", user, pass), kfake.Superuser("PLAIN", user, pass))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	// Mounted Secret files end with a newline more often than not.
	passwordFile := writeFile(t, dir, "password", pass+"\n")
	wrongPasswordFile := writeFile(t, dir, "wrong-password", "nope")
	usernameFile := writeFile(t, dir, "username", user+"\n")

	cases := []struct {
		reason string
		sasl   config.SASL
		ok     bool
	}{
		{"the username from the config authenticates", config.SASL{Mechanism: "SCRAM-SHA-512", Username: user, PasswordFile: passwordFile}, true},
		{"the username from a file (a user-supplied Secret) authenticates", config.SASL{Mechanism: "SCRAM-SHA-512", UsernameFile: usernameFile, PasswordFile: passwordFile}, true},
		{"PLAIN with the username from a file authenticates", config.SASL{Mechanism: "plain", UsernameFile: usernameFile, PasswordFile: passwordFile}, true},
		{"a wrong password is refused by the broker", config.SASL{Mechanism: "SCRAM-SHA-512", UsernameFile: usernameFile, PasswordFile: wrongPasswordFile}, false},
		{"a wrong user is refused by the broker", config.SASL{Mechanism: "SCRAM-SHA-512", Username: "someone-else", PasswordFile: passwordFile}, false},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			opts, err := Options(config.Kafka{BootstrapServers: c.ListenAddrs(), SASL: &tc.sasl}, nil)
			if err != nil {
				t.Fatalf("Options: %v", err)
			}
			err = ping(t, opts)
			if tc.ok && err != nil {
				t.Fatalf("ping: %v, want success", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("ping succeeded, want an authentication failure")
			}
		})
	}
	// Without SASL the broker does not answer.
	if ping(t, []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}) == nil {
		t.Fatal("a client without SASL was served: the cluster does not check authentication, so the cases above prove nothing")
	}
}

func TestOptionsErrors(t *testing.T) {
	dir := t.TempDir()
	passwordFile := writeFile(t, dir, "password", "pw")
	empty := writeFile(t, dir, "empty", "\n")
	cases := []struct {
		reason string
		kafka  config.Kafka
		want   string
	}{
		{"a missing password file fails at start", config.Kafka{SASL: &config.SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: filepath.Join(dir, "missing")}}, "read kafka SASL password"},
		{"a missing username file fails at start", config.Kafka{SASL: &config.SASL{Mechanism: "PLAIN", UsernameFile: filepath.Join(dir, "missing"), PasswordFile: passwordFile}}, "read kafka SASL username"},
		{"an empty username file fails at start", config.Kafka{SASL: &config.SASL{Mechanism: "PLAIN", UsernameFile: empty, PasswordFile: passwordFile}}, "is empty"},
		{"an unknown mechanism", config.Kafka{SASL: &config.SASL{Mechanism: "GSSAPI", Username: "u", PasswordFile: passwordFile}}, "is not PLAIN"},
		{"a missing CA file", config.Kafka{TLS: &config.TLS{CAFile: filepath.Join(dir, "missing")}}, "read kafka CA"},
		{"a CA file without a certificate", config.Kafka{TLS: &config.TLS{CAFile: passwordFile}}, "no PEM certificate"},
		{"a client certificate that does not load", config.Kafka{TLS: &config.TLS{CertFile: passwordFile, KeyFile: passwordFile}}, "load kafka client certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			tc.kafka.BootstrapServers = []string{"127.0.0.1:1"}
			_, err := Options(tc.kafka, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Options: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// pki is a CA with a server certificate for 127.0.0.1 and a client certificate, as PEM files.
type pki struct {
	pool                      *x509.CertPool
	server                    tls.Certificate
	caFile, certFile, keyFile string
	otherCAFile               string
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	ca, caKey, caPEM := newCA("test-ca")
	_, _, otherPEM := newCA("other-ca")
	leaf := func(serial int64, usage x509.ExtKeyUsage) ([]byte, []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	}
	serverCert, serverKey := leaf(2, x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := leaf(3, x509.ExtKeyUsageClientAuth)
	server, err := tls.X509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pki{
		pool: pool, server: server,
		caFile:      writeFile(t, dir, "ca.crt", string(caPEM)),
		otherCAFile: writeFile(t, dir, "other-ca.crt", string(otherPEM)),
		certFile:    writeFile(t, dir, "user.crt", string(clientCert)),
		keyFile:     writeFile(t, dir, "user.key", string(clientKey)),
	}
}

// TLS with the files render mounts (ca.crt, user.crt, user.key) against a broker that requires
// a client certificate, alone and with SASL on top (Strimzi's scram-sha-512 listener over TLS).
func TestTLSRoundTrip(t *testing.T) {
	p := newPKI(t)
	const user, pass = "millrace-exec", "s3cret"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", user, pass),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	sasl := &config.SASL{Mechanism: "SCRAM-SHA-512", UsernameFile: writeFile(t, dir, "username", user), PasswordFile: writeFile(t, dir, "password", pass)}
	cases := []struct {
		reason string
		tls    config.TLS
		ok     bool
	}{
		{"CA, client certificate and key", config.TLS{CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile}, true},
		{"without a client certificate the broker refuses", config.TLS{CAFile: p.caFile}, false},
		{"a CA that did not sign the broker is refused by the client", config.TLS{CAFile: p.otherCAFile, CertFile: p.certFile, KeyFile: p.keyFile}, false},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			opts, err := Options(config.Kafka{BootstrapServers: c.ListenAddrs(), TLS: &tc.tls, SASL: sasl}, nil)
			if err != nil {
				t.Fatalf("Options: %v", err)
			}
			err = ping(t, opts)
			if tc.ok && err != nil {
				t.Fatalf("ping: %v, want success", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("ping succeeded, want a TLS failure")
			}
		})
	}
}
