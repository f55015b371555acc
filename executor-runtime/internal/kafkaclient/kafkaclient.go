// Package kafkaclient turns the executor config's Kafka section into franz-go options.
package kafkaclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// Options returns the connection options of k.
func Options(k config.Kafka, log *slog.Logger) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(k.BootstrapServers...)}
	if log != nil {
		opts = append(opts, kgo.WithLogger(slogLogger{log}))
	}
	if k.TLS != nil {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if k.TLS.CAFile != "" {
			ca, err := os.ReadFile(k.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read kafka CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca) {
				return nil, fmt.Errorf("kafka CA file %s holds no PEM certificate", k.TLS.CAFile)
			}
			cfg.RootCAs = pool
		}
		if k.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(k.TLS.CertFile, k.TLS.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("load kafka client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if s := k.SASL; s != nil {
		mech, err := saslMechanism(*s)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// saslMechanism authenticates with the credentials of s. The files are read once here, so that
// a missing or unreadable file fails at start with a clear error, and again at every
// authentication, so that rotated credentials (a Secret updated in place) are used by new
// connections without a restart.
func saslMechanism(s config.SASL) (sasl.Mechanism, error) {
	creds := func(context.Context) (user, pass string, err error) {
		user = s.Username
		if s.UsernameFile != "" {
			b, err := os.ReadFile(s.UsernameFile)
			if err != nil {
				return "", "", fmt.Errorf("read kafka SASL username: %w", err)
			}
			user = strings.TrimSpace(string(b))
			if user == "" {
				return "", "", fmt.Errorf("kafka SASL username file %s is empty", s.UsernameFile)
			}
		}
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return "", "", fmt.Errorf("read kafka SASL password: %w", err)
		}
		return user, strings.TrimSpace(string(b)), nil
	}
	if _, _, err := creds(context.Background()); err != nil {
		return nil, err
	}
	scramAuth := func(ctx context.Context) (scram.Auth, error) {
		user, pass, err := creds(ctx)
		return scram.Auth{User: user, Pass: pass}, err
	}
	switch strings.ToUpper(s.Mechanism) {
	case "PLAIN":
		return plain.Plain(func(ctx context.Context) (plain.Auth, error) {
			user, pass, err := creds(ctx)
			return plain.Auth{User: user, Pass: pass}, err
		}), nil
	case "SCRAM-SHA-256":
		return scram.Sha256(scramAuth), nil
	case "SCRAM-SHA-512":
		return scram.Sha512(scramAuth), nil
	default:
		return nil, fmt.Errorf("kafka SASL mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
	}
}

// slogLogger routes franz-go's logs at warn and above into slog.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (s slogLogger) Log(level kgo.LogLevel, msg string, kv ...any) {
	switch level {
	case kgo.LogLevelError:
		s.l.Error(msg, kv...)
	case kgo.LogLevelWarn:
		s.l.Warn(msg, kv...)
	default:
		s.l.Debug(msg, kv...)
	}
}
