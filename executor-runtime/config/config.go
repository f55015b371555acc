// Package config is the one contract between the Millrace operator and the executor runtime: the
// file the operator writes into each entity's ConfigMap and every process of an executor pod reads
// (and re-reads when Kubernetes swaps the mounted file). The operator imports this package; this
// package imports nothing of the operator.
//
// The format is versioned by APIVersion. A reader rejects a version it does not know rather than
// guessing, so that a newer operator never silently drives an older runtime.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// APIVersion is the version of the format this package reads and writes.
const APIVersion = "executor.millrace.dev/v1"

// FileName is the key of the runtime configuration in an entity's ConfigMap and the name of the
// file in the mounted directory.
const FileName = "executor.json"

// EnvFile is the environment variable that tells every container of an executor pod the path
// of executor.json; the sidecars read it when no --config flag is given.
const EnvFile = "MILLRACE_CONFIG"

// DefaultPath is where the sidecars look for executor.json when neither --config nor
// MILLRACE_CONFIG says otherwise: the operator's mount of the entity's ConfigMap.
const DefaultPath = "/etc/millrace/config/" + FileName

// PathFromEnv returns MILLRACE_CONFIG, or DefaultPath when it is unset.
func PathFromEnv() string {
	if p := os.Getenv(EnvFile); p != "" {
		return p
	}
	return DefaultPath
}

// Guarantee is the delivery guarantee of an entity.
type Guarantee string

const (
	AtLeastOnce Guarantee = "AtLeastOnce"
	ExactlyOnce Guarantee = "ExactlyOnce"
)

// AssignmentMode says how partitions of the input topics reach the pods of an entity.
type AssignmentMode string

const (
	// GroupAssignment lets the Kafka consumer group protocol assign partitions.
	GroupAssignment AssignmentMode = "Group"
	// StaticAssignment has the operator assign partitions to pod ordinals; the pods still commit
	// offsets to the entity's group id so lag-based autoscaling sees them.
	StaticAssignment AssignmentMode = "Static"
)

// Executor is the whole runtime configuration of one entity.
type Executor struct {
	APIVersion string `json:"apiVersion"`

	Namespace string `json:"namespace"`
	Pipeline  string `json:"pipeline"`
	Entity    string `json:"entity"`

	Kafka Kafka `json:"kafka"`

	Inputs  []Input  `json:"inputs"`
	Outputs []Output `json:"outputs,omitempty"`

	// GroupID is the consumer group of the entity, in both assignment modes.
	GroupID string `json:"groupID"`
	// Heirs are the groups of other entities that take an input this entity no longer reads
	// over from this entity's group (their start position "group" names GroupID). The I/O
	// sidecar deletes the group's committed offsets on a topic it no longer reads, and on such a
	// topic only once every heir has committed offsets of its own on each of the partitions.
	Heirs []Heir `json:"heirs,omitempty"`
	// TransactionalIDPrefix prefixes the transactional ids of ExactlyOnce producers; a pod
	// appends its ordinal (and, in Group mode, nothing else: one producer per pod).
	TransactionalIDPrefix string    `json:"transactionalIDPrefix,omitempty"`
	Guarantee             Guarantee `json:"guarantee"`
	// OffsetReset is where a group without committed offsets starts: "earliest" or "latest".
	// KEDA's kafka scaler is configured with the same policy.
	OffsetReset string `json:"offsetReset"`

	Assignment Assignment `json:"assignment"`

	State *State `json:"state,omitempty"`

	Runtime Runtime `json:"runtime"`

	// UserConfig is the entity's application configuration, handed to the function and
	// hot-reloaded.
	UserConfig map[string]string `json:"userConfig,omitempty"`

	// Retire, when set, says the entity was removed from its Pipeline and is being retired: the
	// I/O sidecar drains its inputs (Drain), stops consuming, and deletes its consumer group
	// (DeleteGroup). GET /status reports the progress.
	Retire *Retire `json:"retire,omitempty"`
}

// Retire says the entity was removed from its Pipeline and is being retired.
type Retire struct {
	// Since is when the operator began the retirement (RFC 3339, UTC). With Drain, each input
	// partition is read up to the first offset whose record timestamp is >= Since (ListOffsets by
	// timestamp; when there is none, the partition's last stable offset as read the first time),
	// so every pod of the entity computes the same targets.
	Since string `json:"since"`
	// Drain: process and commit every input up to those targets before stopping.
	Drain bool `json:"drain,omitempty"`
	// DeleteGroup: once drained (at once without Drain), leave the consumer group and delete it.
	DeleteGroup bool `json:"deleteGroup,omitempty"`
}

// SinceTime parses Since.
func (r *Retire) SinceTime() (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, r.Since)
	if err != nil {
		return time.Time{}, fmt.Errorf("retire.since %q is not an RFC 3339 time: %w", r.Since, err)
	}
	return t, nil
}

// Kafka says how to reach the brokers.
type Kafka struct {
	BootstrapServers []string `json:"bootstrapServers"`
	// TLS, when set, enables TLS; file paths are inside the pod.
	TLS *TLS `json:"tls,omitempty"`
	// SASL, when set, enables SASL authentication.
	SASL *SASL `json:"sasl,omitempty"`
}

// TLS files mounted into the pod.
type TLS struct {
	CAFile   string `json:"caFile,omitempty"`
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
}

// SASL credentials; the password is read from a mounted file, never carried in the ConfigMap.
// Exactly one of Username and UsernameFile is set.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `json:"mechanism"`
	// Username is the user, when the operator knows it (Strimzi's KafkaUser).
	Username string `json:"username,omitempty"`
	// UsernameFile is a mounted file holding the user (the `username` key of a user-supplied
	// credentials Secret). Surrounding whitespace is ignored.
	UsernameFile string `json:"usernameFile,omitempty"`
	// PasswordFile is a mounted file holding the password. Surrounding whitespace is ignored.
	PasswordFile string `json:"passwordFile"`
}

// Input is one stream an entity reads.
type Input struct {
	Stream     string `json:"stream"`
	Topic      string `json:"topic"`
	Partitions int32  `json:"partitions"`
	// DeadLetterTopic receives records of this input that cannot be processed.
	DeadLetterTopic string `json:"deadLetterTopic"`
	// Start, when set, is where the entity's group begins to read the topic when it has no
	// committed offset on any of its partitions; absent, such a group starts at OffsetReset.
	Start *Start `json:"start,omitempty"`
}

// Start positions of Start.Position.
const (
	StartLatest    = "latest"
	StartTimestamp = "timestamp"
	// StartGroup takes the input over from another consumer group (Start.Group): the I/O
	// sidecar waits until no member of that group is subscribed to the topic, then starts at
	// that group's committed offsets.
	StartGroup = "group"
)

// Start is the start position of an input the entity's group has never committed offsets for.
// The I/O sidecar resolves it to an offset per partition when a member is first given the
// partition, and commits that offset at once, so that every other member (a restart, a
// rebalance, another replica) continues from the same place. A partition of a topic on which the
// group has committed offsets elsewhere (a partition added to the topic) starts at OffsetReset
// instead: Latest must never skip records written to a new partition.
type Start struct {
	// Position is "latest" (the topic's last stable offset when the partition is first
	// assigned), "timestamp" or "group".
	Position string `json:"position"`
	// Group, for "group", is the consumer group whose final committed offsets on the topic are
	// the start.
	Group string `json:"group,omitempty"`
	// TimestampMillis, for "timestamp", is the Unix time in milliseconds: each partition is read
	// from its first record at or after it (its end when it has none).
	TimestampMillis int64 `json:"timestampMillis,omitempty"`
}

// Heir is a group that takes Topic over from the entity's group (see Executor.Heirs).
type Heir struct {
	Topic   string `json:"topic"`
	GroupID string `json:"groupID"`
}

// Output is one stream an entity writes.
type Output struct {
	Stream string `json:"stream"`
	Topic  string `json:"topic"`
}

// Assignment is the partition assignment of the entity.
type Assignment struct {
	Mode AssignmentMode `json:"mode"`
	// Static holds, for StaticAssignment, the partitions of every input topic that each pod
	// ordinal consumes: Static[ordinal] lists partition numbers. Inputs of a Static entity are
	// co-partitioned, so one list applies to each input topic.
	Static [][]int32 `json:"static,omitempty"`
	// Generation increases whenever Static changes, so pods can tell a reassignment from a
	// reload of the same map.
	Generation int64 `json:"generation,omitempty"`
}

// State configures the state sidecar.
type State struct {
	ChangelogTopic string `json:"changelogTopic"`
	// Backend is "memory" or "pebble".
	Backend string `json:"backend"`
	// Dir is where the pebble backend keeps its files.
	Dir string `json:"dir,omitempty"`
}

// Runtime holds the knobs of the sidecars: where the sockets are and how batches are formed.
type Runtime struct {
	// SocketDir holds the Unix domain sockets shared by the containers of the pod.
	SocketDir string `json:"socketDir"`
	// FunctionSocket is the socket file name the function serves on, inside SocketDir.
	FunctionSocket string `json:"functionSocket"`
	// StateSocket is the socket file name the state sidecar serves on, inside SocketDir.
	StateSocket string `json:"stateSocket,omitempty"`
	// MetricsPort serves /metrics, /healthz and /readyz of the I/O sidecar.
	MetricsPort int32 `json:"metricsPort"`
	// StateMetricsPort serves the same for the state sidecar.
	StateMetricsPort int32 `json:"stateMetricsPort,omitempty"`
	// MaxBatchRecords bounds the records sent to the function in one batch.
	MaxBatchRecords int32 `json:"maxBatchRecords"`
	// MaxInFlightBatches bounds batches sent to the function and not yet answered.
	MaxInFlightBatches int32 `json:"maxInFlightBatches"`
	// CommitInterval is how often offsets (or transactions) are committed.
	CommitInterval Duration `json:"commitInterval"`
	// GroupProtocol selects the consumer group protocol of Group mode: "classic" (the
	// cooperative-sticky balancer), "consumer" (KIP-848, broker-side assignment; needs Kafka 4.0+)
	// or empty for "consumer" where every broker supports it and "classic" otherwise. Static mode
	// always uses the classic protocol with Millrace's own ordinal balancer.
	GroupProtocol string `json:"groupProtocol,omitempty"`
	// SessionTimeout bounds how long the partitions of a pod that died without leaving the group
	// (a crash, a SIGKILL, a lost node) wait before the group gives them to the other pods. In
	// the classic protocol (Static mode, and Group mode on brokers before Kafka 4.0) it is the
	// member's session timeout, default 10 s, within the broker's
	// group.min.session.timeout.ms..group.max.session.timeout.ms (6 s..30 min by default). Under
	// KIP-848 the broker owns the session timeout: the sidecar asks for this value as the group's
	// consumer.session.timeout.ms, which the broker accepts only within
	// group.consumer.min.session.timeout.ms..group.consumer.max.session.timeout.ms (45 s..60 s by
	// default); unset, the broker's group.consumer.session.timeout.ms applies (45 s by default).
	SessionTimeout Duration `json:"sessionTimeout,omitzero"`
	// LivenessTimeout is how long the I/O sidecar's processing loop may stand still while it
	// holds partitions before /healthz (its liveness probe) fails, default 2 minutes. The loop
	// turns at least once per commit interval; it stands still only when something it waits for
	// (the function answering a batch, Kafka ending a transaction) does not come.
	LivenessTimeout Duration `json:"livenessTimeout,omitzero"`
}

// DefaultLivenessTimeout is the default of runtime.livenessTimeout.
const DefaultLivenessTimeout = 2 * time.Minute

// DefaultClassicSessionTimeout is the session timeout of classic-protocol members when
// runtime.sessionTimeout is not set: a crashed pod's partitions move after at most this long.
const DefaultClassicSessionTimeout = 10 * time.Second

// Group protocols of Runtime.GroupProtocol.
const (
	GroupProtocolClassic  = "classic"
	GroupProtocolConsumer = "consumer"
)

// Duration is a time.Duration that reads and writes as a Go duration string ("100ms").
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"100ms\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Defaults used by render and by readers when a field is zero.
const (
	DefaultSocketDir          = "/var/run/millrace"
	DefaultFunctionSocket     = "function.sock"
	DefaultStateSocket        = "state.sock"
	DefaultMetricsPort        = 9090
	DefaultStateMetricsPort   = 9091
	DefaultMaxBatchRecords    = 500
	DefaultMaxInFlightBatches = 4
	DefaultCommitInterval     = 100 * time.Millisecond
	DefaultOffsetReset        = "earliest"
)

// Default fills zero runtime fields with their defaults.
func (e *Executor) Default() {
	r := &e.Runtime
	if r.SocketDir == "" {
		r.SocketDir = DefaultSocketDir
	}
	if r.FunctionSocket == "" {
		r.FunctionSocket = DefaultFunctionSocket
	}
	if e.State != nil && r.StateSocket == "" {
		r.StateSocket = DefaultStateSocket
	}
	if r.MetricsPort == 0 {
		r.MetricsPort = DefaultMetricsPort
	}
	if e.State != nil && r.StateMetricsPort == 0 {
		r.StateMetricsPort = DefaultStateMetricsPort
	}
	if r.MaxBatchRecords == 0 {
		r.MaxBatchRecords = DefaultMaxBatchRecords
	}
	if r.MaxInFlightBatches == 0 {
		r.MaxInFlightBatches = DefaultMaxInFlightBatches
	}
	if r.CommitInterval.Duration == 0 {
		r.CommitInterval.Duration = DefaultCommitInterval
	}
	if e.OffsetReset == "" {
		e.OffsetReset = DefaultOffsetReset
	}
	if e.Assignment.Mode == "" {
		e.Assignment.Mode = GroupAssignment
	}
	if e.Guarantee == "" {
		e.Guarantee = AtLeastOnce
	}
}

// Validate reports every problem of the configuration at once.
func (e *Executor) Validate() error {
	var errs []error
	if e.APIVersion != APIVersion {
		errs = append(errs, fmt.Errorf("apiVersion %q is not supported: this runtime reads %q", e.APIVersion, APIVersion))
	}
	if len(e.Kafka.BootstrapServers) == 0 {
		errs = append(errs, errors.New("kafka.bootstrapServers is empty"))
	}
	if len(e.Inputs) == 0 {
		errs = append(errs, errors.New("inputs is empty"))
	}
	for i, in := range e.Inputs {
		if in.Topic == "" {
			errs = append(errs, fmt.Errorf("inputs[%d].topic is empty", i))
		}
		if in.DeadLetterTopic == "" {
			errs = append(errs, fmt.Errorf("inputs[%d].deadLetterTopic is empty", i))
		}
		if st := in.Start; st != nil {
			switch {
			case (st.Position == StartGroup) != (st.Group != ""):
				errs = append(errs, fmt.Errorf("inputs[%d].start.group is required with position %q, and only then", i, StartGroup))
			case st.Position == StartGroup && st.Group == e.GroupID:
				errs = append(errs, fmt.Errorf("inputs[%d].start.group is the entity's own group", i))
			case st.Position != StartTimestamp && st.TimestampMillis != 0:
				errs = append(errs, fmt.Errorf("inputs[%d].start.timestampMillis is set with position %q", i, st.Position))
			case st.Position == StartTimestamp && st.TimestampMillis < 0:
				errs = append(errs, fmt.Errorf("inputs[%d].start.timestampMillis %d is negative", i, st.TimestampMillis))
			case st.Position != StartLatest && st.Position != StartTimestamp && st.Position != StartGroup:
				errs = append(errs, fmt.Errorf("inputs[%d].start.position %q is not %s, %s or %s", i, st.Position, StartLatest, StartTimestamp, StartGroup))
			}
		}
	}
	for i, h := range e.Heirs {
		switch {
		case h.Topic == "" || h.GroupID == "":
			errs = append(errs, fmt.Errorf("heirs[%d] needs a topic and a groupID", i))
		case h.GroupID == e.GroupID:
			errs = append(errs, fmt.Errorf("heirs[%d].groupID is the entity's own group", i))
		}
	}
	for i, out := range e.Outputs {
		if out.Topic == "" {
			errs = append(errs, fmt.Errorf("outputs[%d].topic is empty", i))
		}
	}
	if e.GroupID == "" {
		errs = append(errs, errors.New("groupID is empty"))
	}
	if s := e.Kafka.SASL; s != nil {
		if (s.Username == "") == (s.UsernameFile == "") {
			errs = append(errs, errors.New("kafka.sasl needs exactly one of username and usernameFile"))
		}
		if s.PasswordFile == "" {
			errs = append(errs, errors.New("kafka.sasl.passwordFile is empty"))
		}
	}
	switch e.Guarantee {
	case AtLeastOnce:
	case ExactlyOnce:
		if e.TransactionalIDPrefix == "" {
			errs = append(errs, errors.New("transactionalIDPrefix is required with ExactlyOnce"))
		}
	default:
		errs = append(errs, fmt.Errorf("guarantee %q is not AtLeastOnce or ExactlyOnce", e.Guarantee))
	}
	switch e.Assignment.Mode {
	case GroupAssignment:
	case StaticAssignment:
		if len(e.Assignment.Static) == 0 {
			errs = append(errs, errors.New("assignment.static is empty in Static mode"))
		}
	default:
		errs = append(errs, fmt.Errorf("assignment.mode %q is not Group or Static", e.Assignment.Mode))
	}
	switch e.Runtime.GroupProtocol {
	case "", GroupProtocolClassic, GroupProtocolConsumer:
	default:
		errs = append(errs, fmt.Errorf("runtime.groupProtocol %q is not classic or consumer", e.Runtime.GroupProtocol))
	}
	if d := e.Runtime.SessionTimeout.Duration; d < 0 || (d > 0 && d < time.Second) {
		errs = append(errs, fmt.Errorf("runtime.sessionTimeout %s is below 1s", d))
	}
	if e.State != nil && e.State.ChangelogTopic == "" {
		errs = append(errs, errors.New("state.changelogTopic is empty"))
	}
	if r := e.Retire; r != nil {
		if _, err := r.SinceTime(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PartitionsFor returns the partitions that pod ordinal consumes in Static mode, or nil when
// the ordinal has none (more pods than the map has entries).
func (a Assignment) PartitionsFor(ordinal int) []int32 {
	if ordinal < 0 || ordinal >= len(a.Static) {
		return nil
	}
	return slices.Clone(a.Static[ordinal])
}

// Digest identifies the contents of an executor.json: the hex SHA-256 of its bytes. The I/O
// sidecar reports the digest of the configuration its running session applied (GET /status), and
// the operator compares it with the digest of the entity's ConfigMap, which the kubelet writes
// byte for byte.
func Digest(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// Marshal encodes the configuration deterministically.
func Marshal(e *Executor) ([]byte, error) {
	return json.MarshalIndent(e, "", "  ")
}

// Parse decodes, defaults and validates a configuration. Unknown fields are errors: a typo in a
// hand-written local config must not be ignored.
func Parse(b []byte) (*Executor, error) {
	var e Executor
	dec := json.NewDecoder(bytesReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("decode executor config: %w", err)
	}
	e.Default()
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("invalid executor config: %w", err)
	}
	return &e, nil
}

// Load reads and parses the configuration file at path.
func Load(path string) (*Executor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read executor config: %w", err)
	}
	return Parse(b)
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
