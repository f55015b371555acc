package render

import (
	"path"
	"slices"
	"strings"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// Paths inside executor pods.
const (
	// ConfigDir is where an entity's ConfigMap is mounted, as a directory so that the kubelet
	// swaps executor.json atomically when it changes (a subPath mount would never update).
	ConfigDir = "/etc/millrace/config"
	// CredentialsDir holds the Kafka credentials Secret.
	CredentialsDir = "/etc/millrace/kafka/credentials"
	// ClusterCADir holds the CA certificate of a Strimzi cluster's brokers.
	ClusterCADir = "/etc/millrace/kafka/cluster-ca"
	// StateDir is where the Pebble state backend keeps its files.
	StateDir = "/var/lib/millrace/state"

	// EnvConfigFile tells every container of an executor pod where executor.json is.
	EnvConfigFile = "MILLRACE_CONFIG"
	// EnvFunctionSocket tells the function where to serve.
	EnvFunctionSocket = "MILLRACE_FUNCTION_SOCKET"
)

// executorConfig builds the executor configuration of entity e of the defaulted Pipeline p.
func executorConfig(p *v1alpha1.Pipeline, e *v1alpha1.Entity, f Facts) (*config.Executor, error) {
	cfg := &config.Executor{
		APIVersion: config.APIVersion,
		Namespace:  p.Namespace,
		Pipeline:   p.Name,
		Entity:     e.Name,
		Kafka:      kafkaClient(p, f),
		GroupID:    GroupID(p, e.Name),
		Guarantee:  config.Guarantee(e.Guarantee),
		// KEDA's scaler is configured with the same policy, so that the lag it scales on is the
		// lag the executors will actually consume.
		OffsetReset: config.DefaultOffsetReset,
		Assignment:  config.Assignment{Mode: config.GroupAssignment},
		UserConfig:  cloneMap(e.Config),
	}
	cfg.Kafka.BootstrapServers = bootstrapServers(p, f)
	for _, s := range inputStreams(p, e) {
		topic := TopicName(p, s.Name)
		cfg.Inputs = append(cfg.Inputs, config.Input{
			Stream:          s.Name,
			Topic:           topic,
			Partitions:      s.Partitions,
			DeadLetterTopic: DeadLetterTopicName(topic),
			Start:           inputStart(p, e, s.Name),
		})
	}
	for _, name := range e.Outputs {
		cfg.Outputs = append(cfg.Outputs, config.Output{Stream: name, Topic: TopicName(p, name)})
	}
	cfg.Heirs = heirs(p, e)
	if e.Guarantee == v1alpha1.ExactlyOnce {
		cfg.TransactionalIDPrefix = TransactionalIDPrefix(p, e.Name)
	}
	if staticMode(e) {
		cfg.Assignment = staticAssignment(p, e, f)
	}
	if stateEnabled(e) {
		cfg.State = &config.State{ChangelogTopic: ChangelogTopicName(p, e.Name), Backend: "memory"}
		if e.State.Backend == v1alpha1.StatePebble {
			cfg.State.Backend = "pebble"
			cfg.State.Dir = StateDir
		}
	}
	cfg.Runtime = config.Runtime{
		SocketDir:      config.DefaultSocketDir,
		FunctionSocket: config.DefaultFunctionSocket,
		MetricsPort:    config.DefaultMetricsPort,
	}
	if rt := e.Runtime; rt != nil {
		if rt.SessionTimeout != nil {
			cfg.Runtime.SessionTimeout = config.Duration{Duration: rt.SessionTimeout.Duration}
		}
		if rt.LivenessTimeout != nil {
			cfg.Runtime.LivenessTimeout = config.Duration{Duration: rt.LivenessTimeout.Duration}
		}
	}
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// heirs are the groups of the entities that take a stream e no longer reads over from e's group
// (their spec.entities[].start says position Entity, entity e): the I/O sidecar keeps e's
// committed offsets on such a stream until each heir has committed its own, then deletes them.
// A stream e still reads is left out: nothing is deleted there, and e's pods need not reload
// when another entity names e.
func heirs(p *v1alpha1.Pipeline, e *v1alpha1.Entity) []config.Heir {
	var out []config.Heir
	for _, o := range p.Spec.Entities {
		if o.Name == e.Name {
			continue
		}
		for _, st := range o.Start {
			if st.Position != v1alpha1.StartEntity || st.Entity != e.Name || slices.Contains(e.Inputs, st.Stream) || !slices.Contains(o.Inputs, st.Stream) {
				continue
			}
			h := config.Heir{Topic: TopicName(p, st.Stream), GroupID: GroupID(p, o.Name)}
			if !slices.Contains(out, h) {
				out = append(out, h)
			}
		}
	}
	return out
}

// inputStart is the executor's start position of input stream of e: nil for Earliest, which is
// the group's offset reset policy already (so an explicit Earliest changes nothing in
// executor.json and reloads no pod).
func inputStart(p *v1alpha1.Pipeline, e *v1alpha1.Entity, stream string) *config.Start {
	for _, st := range e.Start {
		if st.Stream != stream {
			continue
		}
		switch st.Position {
		case v1alpha1.StartLatest:
			return &config.Start{Position: config.StartLatest}
		case v1alpha1.StartTimestamp:
			if st.Timestamp != nil {
				return &config.Start{Position: config.StartTimestamp, TimestampMillis: st.Timestamp.UnixMilli()}
			}
		case v1alpha1.StartEntity:
			return &config.Start{Position: config.StartGroup, Group: GroupID(p, st.Entity)}
		}
	}
	return nil
}

// kafkaClient is the security part of the Kafka client configuration. Secrets never enter the
// ConfigMap: the config names files of the mounted credentials Secret.
func kafkaClient(p *v1alpha1.Pipeline, f Facts) config.Kafka {
	var k config.Kafka
	if useTLS(p, f) && authType(p) != v1alpha1.AuthTLS {
		// An encrypting listener without client certificates: trust the cluster CA.
		k.TLS = &config.TLS{CAFile: path.Join(caDir(p), "ca.crt")}
	}
	switch authType(p) {
	case v1alpha1.AuthScramSha512:
		k.SASL = &config.SASL{
			Mechanism:    "SCRAM-SHA-512",
			Username:     saslUsername(p),
			PasswordFile: path.Join(CredentialsDir, "password"),
		}
		if k.SASL.Username == "" {
			k.SASL.UsernameFile = path.Join(CredentialsDir, "username")
		}
	case v1alpha1.AuthTLS:
		k.TLS = &config.TLS{
			CAFile:   path.Join(caDir(p), "ca.crt"),
			CertFile: path.Join(CredentialsDir, "user.crt"),
			KeyFile:  path.Join(CredentialsDir, "user.key"),
		}
	}
	return k
}

// saslUsername is the user Strimzi creates for the pipeline's KafkaUser. A user-supplied Secret
// (without Strimzi) holds its own `username` key, which the executor reads from the mounted
// file (config.SASL.UsernameFile) next to the password file.
func saslUsername(p *v1alpha1.Pipeline) string {
	if p.Spec.Kafka.StrimziCluster != "" && credentialsSecretName(p) == KafkaUserName(p) {
		return KafkaUserName(p)
	}
	return ""
}

// credentialsSecretName is the Secret with the executors' Kafka credentials: the one the spec
// names, else the one Strimzi's user operator writes for the pipeline's KafkaUser.
func credentialsSecretName(p *v1alpha1.Pipeline) string {
	if a := p.Spec.Kafka.Authentication; a != nil && a.SecretName != "" {
		return a.SecretName
	}
	return KafkaUserName(p)
}

// caDir is where the CA certificate that signed the brokers is: Strimzi's brokers are signed by
// the cluster CA, published in the <cluster>-cluster-ca-cert Secret; otherwise the credentials
// Secret carries ca.crt.
func caDir(p *v1alpha1.Pipeline) string {
	if p.Spec.Kafka.StrimziCluster != "" {
		return ClusterCADir
	}
	return CredentialsDir
}

// clusterCASecretName is the Secret Strimzi publishes its cluster CA certificate in.
func clusterCASecretName(p *v1alpha1.Pipeline) string {
	return strings.TrimSpace(p.Spec.Kafka.StrimziCluster) + "-cluster-ca-cert"
}

// AdminClient is how the operator's own Kafka admin client connects in topics: Direct mode: on
// the executors' listener, with their TLS and SASL mechanism, and with the credentials of
// spec.kafka.authentication.adminSecretName (else the executors' Secret). It names Secrets and
// keys; the controller reads them when it calls Kafka.
type AdminClient struct {
	// Secret holds the credentials; "" without authentication.
	Secret string
	// SASLMechanism is "SCRAM-SHA-512", or "" without SASL.
	SASLMechanism string
	// Username is the SASL user when it is known without the Secret (a Strimzi KafkaUser's
	// Secret has no username key: the user is the KafkaUser's name); otherwise the Secret's
	// "username" key holds it.
	Username string
	// TLS says whether the listener encrypts.
	TLS bool
	// CASecret holds ca.crt, the CA of the brokers' certificates: Strimzi's cluster CA Secret,
	// or Secret itself without Strimzi; "" trusts the system's roots.
	CASecret string
	// ClientCertificate says that Secret holds user.crt and user.key (TLS authentication).
	ClientCertificate bool
}

// Secret keys of the credentials Secrets.
const (
	SecretKeyUsername = "username"
	SecretKeyPassword = "password"
	SecretKeyCA       = "ca.crt"
	SecretKeyUserCert = "user.crt"
	SecretKeyUserKey  = "user.key"
)

// AdminClientOf is the admin client configuration of the Pipeline p, with the facts observed.
func AdminClientOf(p *v1alpha1.Pipeline, f Facts) AdminClient {
	p = withDefaults(p)
	var a AdminClient
	auth := authType(p)
	if auth != v1alpha1.AuthNone {
		a.Secret = credentialsSecretName(p)
		if s := p.Spec.Kafka.Authentication.AdminSecretName; s != "" {
			a.Secret = s
		}
	}
	if useTLS(p, f) {
		a.TLS = true
		switch {
		case p.Spec.Kafka.StrimziCluster != "":
			a.CASecret = clusterCASecretName(p)
		case a.Secret != "":
			a.CASecret = a.Secret
		}
	}
	switch auth {
	case v1alpha1.AuthScramSha512:
		a.SASLMechanism = "SCRAM-SHA-512"
		if a.Secret == credentialsSecretName(p) {
			a.Username = saslUsername(p)
		}
	case v1alpha1.AuthTLS:
		a.ClientCertificate = true
	}
	return a
}
