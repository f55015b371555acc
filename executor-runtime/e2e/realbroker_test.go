package e2e

import (
	"testing"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
)

// The real-broker tier runs the same scenarios against Apache Kafka: start one with
// `hack/kafka.sh start` and export MILLRACE_KAFKA_BOOTSTRAP to the address it prints. Topic and
// group names carry a per-run prefix, so runs can share a broker.

func TestRealBrokerWordCount(t *testing.T) {
	for _, g := range []config.Guarantee{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run(string(g), func(t *testing.T) { testWordCount(t, testenv.Real(t), g) })
	}
}

func TestRealBrokerFaults(t *testing.T) {
	// The classic protocol with static membership lets a SIGKILLed I/O sidecar's replacement take
	// its partitions back at once; under KIP-848 a member that died without leaving keeps them
	// for the broker's group.consumer.session.timeout.ms (45 s at least), which would make every
	// kill of this loop a 45-second stall. See docs/executor.md.
	classic := func(c *config.Executor) { c.Runtime.GroupProtocol = config.GroupProtocolClassic }
	for _, g := range []config.Guarantee{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run(string(g), func(t *testing.T) { testFaults(t, testenv.Real(t), g, 1, classic) })
	}
	t.Run("ExactlyOnceTwoPods", func(t *testing.T) { testFaults(t, testenv.Real(t), config.ExactlyOnce, 2, classic) })
}
