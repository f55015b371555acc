// Package topics manages the Kafka topics of a Pipeline in Direct mode, through the Kafka admin
// API: it creates missing topics, raises partition counts, and never lowers them (Kafka cannot).
// It deletes a topic only when asked to, for streams whose deletionPolicy is Delete.
package topics

import (
	"context"
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
)

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

// Admin talks to Kafka clusters, keeping one admin client per bootstrap address so that
// reconciles of many Pipelines on one cluster share connections.
type Admin struct {
	mu      sync.Mutex
	clients map[string]*conn
	// Timeout bounds each admin call.
	Timeout time.Duration
}

// NewAdmin returns an Admin with no connections yet.
func NewAdmin() *Admin { return &Admin{clients: map[string]*conn{}, Timeout: 15 * time.Second} }

// conn is one cluster's client and its admin wrapper.
type conn struct {
	*kadm.Client
	kgo *kgo.Client
}

func (a *Admin) client(bootstrap string) (*conn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.clients[bootstrap]; ok {
		return c, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...))
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %s: %w", bootstrap, err)
	}
	c := &conn{Client: kadm.NewClient(cl), kgo: cl}
	a.clients[bootstrap] = c
	return c, nil
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
func (a *Admin) Ensure(ctx context.Context, bootstrap string, specs []Spec) ([]State, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	if bootstrap == "" {
		return nil, errors.New("no Kafka bootstrap address")
	}
	adm, err := a.client(bootstrap)
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
		return nil, fmt.Errorf("list topics on %s: %w", bootstrap, err)
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
func (a *Admin) Delete(ctx context.Context, bootstrap string, names ...string) error {
	if len(names) == 0 {
		return nil
	}
	if bootstrap == "" {
		return errors.New("no Kafka bootstrap address")
	}
	adm, err := a.client(bootstrap)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	resp, err := adm.DeleteTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("delete topics %v on %s: %w", names, bootstrap, err)
	}
	for _, r := range resp {
		if r.Err != nil && !errors.Is(r.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("delete topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// Exists reports which of the topics exist; used by tests and status.
func (a *Admin) Exists(ctx context.Context, bootstrap string, names ...string) (map[string]int32, error) {
	adm, err := a.client(bootstrap)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	return adm.describe(ctx, names)
}
