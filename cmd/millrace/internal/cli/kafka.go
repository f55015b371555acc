package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/cmd/millrace/internal/kafkaio"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/manifest"
	"github.com/millrace-dev/millrace/controllers/render"
)

// EnvBootstrapServers is the default of --bootstrap-servers for produce and consume; `millrace
// run` prints the export line for its embedded Kafka.
const EnvBootstrapServers = "MILLRACE_BOOTSTRAP_SERVERS"

// topicFlags resolve the TOPIC|STREAM argument of produce and consume, and the brokers.
type topicFlags struct {
	bootstrapServers string
	file             string
	namespace        string
	keySeparator     string
}

func (t *topicFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&t.bootstrapServers, "bootstrap-servers", "", "Kafka brokers, host:port[,host:port] (default $"+EnvBootstrapServers+", else localhost:9092)")
	fl.StringVarP(&t.file, "filename", "f", "", "Pipeline manifest: the argument is then a stream of it, not a topic")
	fl.StringVarP(&t.namespace, "namespace", "n", "default", "namespace of a Pipeline whose manifest names none (it is part of default topic names)")
	fl.StringVar(&t.keySeparator, "key-separator", "", `split lines into key and value at this separator (for example "\t" or "=")`)
}

func (t *topicFlags) seeds() []string {
	s := t.bootstrapServers
	if s == "" {
		s = os.Getenv(EnvBootstrapServers)
	}
	if s == "" {
		s = "localhost:9092"
	}
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// topic is the Kafka topic of the argument: the stream's topic with -f, else the argument.
func (t *topicFlags) topic(arg string, in io.Reader) (string, error) {
	if t.file == "" {
		return arg, nil
	}
	p, err := manifest.ReadOne(t.file, in, t.namespace)
	if err != nil {
		return "", err
	}
	for _, s := range p.Spec.Streams {
		if s.Name == arg {
			return render.TopicName(p, arg), nil
		}
	}
	var names []string
	for _, s := range p.Spec.Streams {
		names = append(names, s.Name)
	}
	return "", fmt.Errorf("pipeline %s has no stream %q; its streams are %s", p.Name, arg, strings.Join(names, ", "))
}

func (t *topicFlags) format() kafkaio.Format {
	return kafkaio.Format{KeySeparator: unescape(t.keySeparator)}
}

// unescape lets a separator be typed as "\t" on a command line.
func unescape(s string) string {
	return strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(s)
}

func newProduceCommand(streams IO) *cobra.Command {
	var t topicFlags
	var input, key string
	cmd := &cobra.Command{
		Use:   "produce TOPIC | -f PIPELINE STREAM",
		Short: "Write records to a topic or stream, one a line, from a file or stdin",
		Example: `  millrace produce -f pipeline.yaml lines --file words.txt
  printf 'a\t1\nb\t2\n' | millrace produce my-topic --key-separator '\t'
  millrace produce my-topic --bootstrap-servers localhost:9092 --key user-1 < events.txt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topic, err := t.topic(args[0], streams.In)
			if err != nil {
				return err
			}
			var r io.Reader = streams.In
			if input != "" && input != "-" {
				f, err := os.Open(input)
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(t.seeds()...), kgo.AllowAutoTopicCreation())
			if err != nil {
				return fmt.Errorf("kafka client: %w", err)
			}
			defer cl.Close()
			format := t.format()
			format.Key = key
			n, err := kafkaio.Produce(cmd.Context(), cl, topic, r, format)
			if err != nil {
				return err
			}
			fmt.Fprintf(streams.ErrOut, "produced %d records to %s\n", n, topic)
			return nil
		},
	}
	t.add(cmd)
	cmd.Flags().StringVar(&input, "file", "", "read lines from this file instead of stdin")
	cmd.Flags().StringVar(&key, "key", "", "key of every record (without --key-separator)")
	return cmd
}

func newConsumeCommand(streams IO) *cobra.Command {
	var t topicFlags
	var o kafkaio.ConsumeOptions
	var follow, headers bool
	cmd := &cobra.Command{
		Use:   "consume TOPIC | -f PIPELINE STREAM",
		Short: "Print the records of a topic or stream, one a line, and follow it",
		Long: `Print the records of every partition of a topic, from the beginning, and keep following
new ones until interrupted. Only committed records are shown (read_committed), as the entities
reading the stream see them. No consumer group is used: consuming moves no offsets.`,
		Example: `  millrace consume -f pipeline.yaml counts --key-separator '\t'
  millrace consume my-topic --follow=false
  millrace consume my-topic.dlq --headers   # a dead-lettered record's origin and error`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topic, err := t.topic(args[0], streams.In)
			if err != nil {
				return err
			}
			o.UntilEnd = !follow
			format := t.format()
			format.Headers = headers
			_, err = kafkaio.Consume(cmd.Context(), t.seeds(), topic, o, func(r *kgo.Record) error {
				return kafkaio.WriteRecord(streams.Out, r, format)
			})
			return err
		},
	}
	t.add(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&follow, "follow", true, "keep printing new records; with --follow=false stop at the end the topic had at the start")
	fl.BoolVar(&o.FromEnd, "from-end", false, "start at the end instead of the beginning (only new records)")
	fl.IntVar(&o.Max, "max", 0, "stop after this many records (0: no limit)")
	fl.BoolVar(&o.Uncommitted, "read-uncommitted", false, "also show records of open or aborted transactions")
	fl.BoolVar(&headers, "headers", false, `start each line with the record's headers, key="value" separated by spaces, then a tab`)
	return cmd
}
