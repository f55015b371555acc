// Package topics manages the Kafka topics of a Pipeline in Direct mode, through the Kafka admin
// API: it creates missing topics, raises partition counts, and never lowers them (Kafka cannot).
// It deletes a topic only when asked to, for streams whose deletionPolicy is Delete.
package topics

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Cluster is where the admin client connects and as whom: the listener's address, and the
// TLS and SASL settings that listener requires. The credentials are held in memory only, for
// as long as the connection they opened is cached.
type Cluster struct {
	Bootstrap string
	// TLS, when set, encrypts every connection.
	TLS *TLS
	// SASL, when set, authenticates every connection.
	SASL *SASL
}

// TLS is the TLS configuration of the admin client, as PEM.
type TLS struct {
	// CA verifies the brokers' certificates; empty uses the system's roots.
	CA []byte
	// Cert and Key are a client certificate (TLS client authentication); both or neither.
	Cert, Key []byte
}

// SASL is a SASL mechanism with its credentials.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string
	User      string
	Password  string
}

// key identifies the connection for c: its address and a digest of its credentials, so that
// rotated credentials open a new connection and two Pipelines on one Kafka with different users
// never share one.
func (c Cluster) key() string {
	h := sha256.New()
	write := func(parts ...string) {
		for _, p := range parts {
			fmt.Fprintf(h, "%d:%s", len(p), p)
		}
	}
	write(c.Bootstrap)
	if c.TLS != nil {
		write("tls", string(c.TLS.CA), string(c.TLS.Cert), string(c.TLS.Key))
	}
	if c.SASL != nil {
		write("sasl", c.SASL.Mechanism, c.SASL.User, c.SASL.Password)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// options are the franz-go options that connect to c.
func (c Cluster) options() ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(strings.Split(c.Bootstrap, ",")...)}
	if t := c.TLS; t != nil {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if len(t.CA) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(t.CA) {
				return nil, errors.New("the CA certificate (ca.crt) holds no PEM certificate")
			}
			cfg.RootCAs = pool
		}
		if len(t.Cert) > 0 || len(t.Key) > 0 {
			cert, err := tls.X509KeyPair(t.Cert, t.Key)
			if err != nil {
				return nil, fmt.Errorf("client certificate (user.crt, user.key): %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if s := c.SASL; s != nil {
		var mech sasl.Mechanism
		switch strings.ToUpper(s.Mechanism) {
		case "PLAIN":
			mech = plain.Auth{User: s.User, Pass: s.Password}.AsMechanism()
		case "SCRAM-SHA-256":
			mech = scram.Auth{User: s.User, Pass: s.Password}.AsSha256Mechanism()
		case "SCRAM-SHA-512":
			mech = scram.Auth{User: s.User, Pass: s.Password}.AsSha512Mechanism()
		default:
			return nil, fmt.Errorf("SASL mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
		}
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// Spec is one desired topic.
type Spec struct {
	Name       string
	Partitions int32
	// Replicas is the replication factor; 0 uses the broker default.
	Replicas int16
	Configs  map[string]string
}

// State is what Ensure found or made of one topic.
type State struct {
	Name       string
	Partitions int32
	Created    bool
	Grown      bool
	Err        error
}

// Admin talks to Kafka clusters, keeping one admin client per address and credentials so that
// reconciles of many Pipelines on one cluster share connections.
type Admin struct {
	mu      sync.Mutex
	clients map[string]*conn
	// Timeout bounds each admin call.
	Timeout time.Duration
	// IdleTimeout closes a client unused for that long (credentials rotated, Pipeline gone).
	IdleTimeout time.Duration
}

// NewAdmin returns an Admin with no connections yet.
func NewAdmin() *Admin {
	return &Admin{clients: map[string]*conn{}, Timeout: 15 * time.Second, IdleTimeout: 10 * time.Minute}
}

// conn is one cluster's client and its admin wrapper.
type conn struct {
	*kadm.Client
	kgo      *kgo.Client
	lastUsed time.Time
}

func (a *Admin) client(c Cluster) (*conn, error) {
	if c.Bootstrap == "" {
		return nil, errors.New("no Kafka bootstrap address")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	for k, old := range a.clients {
		// A call lasts at most Timeout, far below IdleTimeout: nobody uses a client closed here.
		if now.Sub(old.lastUsed) > a.IdleTimeout {
			old.Close()
			delete(a.clients, k)
		}
	}
	key := c.key()
	if cl, ok := a.clients[key]; ok {
		cl.lastUsed = now
		return cl, nil
	}
	opts, err := c.options()
	if err != nil {
		return nil, fmt.Errorf("kafka client for %s: %w", c.Bootstrap, err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %s: %w", c.Bootstrap, err)
	}
	conn := &conn{Client: kadm.NewClient(cl), kgo: cl, lastUsed: now}
	a.clients[key] = conn
	return conn, nil
}

// describe returns the partition count of each topic that exists. It sends a metadata request
// itself: kadm answers from the client's metadata cache, which can hide a topic created a moment
// ago (or one deleted).
func (c *conn) describe(ctx context.Context, names []string) (map[string]int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	for _, n := range names {
		t := kmsg.NewMetadataRequestTopic()
		t.Topic = kmsg.StringPtr(n)
		req.Topics = append(req.Topics, t)
	}
	resp, err := req.RequestWith(ctx, c.kgo)
	if err != nil {
		return nil, err
	}
	out := map[string]int32{}
	for _, t := range resp.Topics {
		if t.Topic == nil {
			continue
		}
		switch err := kerr.ErrorForCode(t.ErrorCode); {
		case err == nil:
			out[*t.Topic] = int32(len(t.Partitions))
		case errors.Is(err, kerr.UnknownTopicOrPartition):
		default:
			return nil, fmt.Errorf("describe topic %s: %w", *t.Topic, err)
		}
	}
	return out, nil
}

// Close closes every connection.
func (a *Admin) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, c := range a.clients {
		c.Close()
		delete(a.clients, k)
	}
}

// Ensure creates the missing topics and raises partitions that are below spec. It returns the
// state of each topic, sorted by name, and the first error.
func (a *Admin) Ensure(ctx context.Context, c Cluster, specs []Spec) ([]State, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	adm, err := a.client(c)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	names := make([]string, 0, len(specs))
	for _, s := range specs {
		names = append(names, s.Name)
	}
	existing, err := adm.describe(ctx, names)
	if err != nil {
		return nil, fmt.Errorf("list topics on %s: %w", c.Bootstrap, err)
	}
	var states []State
	var firstErr error
	for _, s := range specs {
		st := State{Name: s.Name}
		partitions, ok := existing[s.Name]
		switch {
		case !ok:
			st.Err = a.create(ctx, adm.Client, s)
			st.Created, st.Partitions = st.Err == nil, s.Partitions
		default:
			st.Partitions = partitions
			if st.Partitions < s.Partitions {
				resp, err := adm.UpdatePartitions(ctx, int(s.Partitions), s.Name)
				if err == nil {
					err = resp.Error()
				}
				if err != nil {
					st.Err = fmt.Errorf("raise partitions of topic %s to %d: %w", s.Name, s.Partitions, err)
				} else {
					st.Grown, st.Partitions = true, s.Partitions
				}
			}
		}
		if st.Err != nil && firstErr == nil {
			firstErr = st.Err
		}
		states = append(states, st)
	}
	sort.Slice(states, func(i, j int) bool { return states[i].Name < states[j].Name })
	return states, firstErr
}

func (a *Admin) create(ctx context.Context, adm *kadm.Client, s Spec) error {
	var configs map[string]*string
	if len(s.Configs) > 0 {
		configs = map[string]*string{}
		for k, v := range s.Configs {
			configs[k] = kadm.StringPtr(v)
		}
	}
	rf := s.Replicas
	if rf == 0 {
		rf = -1
	}
	partitions := s.Partitions
	if partitions == 0 {
		partitions = -1
	}
	_, err := adm.CreateTopic(ctx, partitions, rf, configs, s.Name)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", s.Name, err)
	}
	return nil
}

// Delete deletes topics; a topic that is already gone is not an error.
func (a *Admin) Delete(ctx context.Context, c Cluster, names ...string) error {
	if len(names) == 0 {
		return nil
	}
	adm, err := a.client(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	resp, err := adm.DeleteTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("delete topics %v on %s: %w", names, c.Bootstrap, err)
	}
	for _, r := range resp {
		if r.Err != nil && !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("delete topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// Exists reports which of the topics exist; used by tests and status.
func (a *Admin) Exists(ctx context.Context, c Cluster, names ...string) (map[string]int32, error) {
	adm, err := a.client(c)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	return adm.describe(ctx, names)
}
