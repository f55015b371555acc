// Package kafkaclient turns the executor config's Kafka section into franz-go options.
package kafkaclient

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
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
		pw, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("read kafka SASL password: %w", err)
		}
		password := strings.TrimSpace(string(pw))
		switch strings.ToUpper(s.Mechanism) {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: s.Username, Pass: password}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: password}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: s.Username, Pass: password}.AsSha512Mechanism()))
		default:
			return nil, fmt.Errorf("kafka SASL mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
		}
	}
	return opts, nil
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
