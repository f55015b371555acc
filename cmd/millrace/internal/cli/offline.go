package cli

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/graph"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/manifest"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/controllers/validate"
)

// fileFlags are the flags every command reading Pipelines from files has.
type fileFlags struct {
	files     []string
	namespace string
}

func (f *fileFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringSliceVarP(&f.files, "filename", "f", nil, "Pipeline manifest (YAML or JSON, several documents allowed); - reads stdin")
	cmd.Flags().StringVarP(&f.namespace, "namespace", "n", "default", "namespace of Pipelines whose manifest names none")
	_ = cmd.MarkFlagRequired("filename")
}

// invalidMessage formats errors as the API server and kubectl do: `The Pipeline "x" is invalid:`
// followed by the causes, each with the API server's own message.
// The API server evaluates CEL rules in no fixed order; the causes are sorted so that the same
// Pipeline always gives the same output, with the note on unchecked rules kept last.
func invalidMessage(p *v1alpha1.Pipeline, errs field.ErrorList) string {
	errs = slices.Clone(errs)
	note := func(e *field.Error) bool {
		return strings.HasPrefix(e.Detail, "some validation rules were not checked")
	}
	slices.SortStableFunc(errs, func(a, b *field.Error) int {
		if na, nb := note(a), note(b); na != nb {
			if na {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Error(), b.Error())
	})
	var b strings.Builder
	fmt.Fprintf(&b, "The Pipeline %q is invalid:", p.Name)
	if len(errs) == 1 {
		fmt.Fprintf(&b, " %s\n", errs[0].Error())
		return b.String()
	}
	b.WriteString(" \n")
	for _, e := range errs {
		fmt.Fprintf(&b, "* %s\n", e.Error())
	}
	return b.String()
}

// checked reads the Pipelines and validates each, printing the errors of invalid ones to errOut.
// It returns the valid Pipelines, defaulted as the API server stores them, and whether all were
// valid.
// Each Pipeline is checked as written, not after a Go round trip that drops zero values
// (partitions: 0 is rejected by the API server, and so here).
func checked(cmd *cobra.Command, f *fileFlags, old *manifest.Document, streams IO) ([]manifest.Document, bool, error) {
	docs, err := manifest.Read(f.files, streams.In, f.namespace)
	if err != nil {
		return nil, false, err
	}
	ok := true
	var valid []manifest.Document
	for _, d := range docs {
		var oldObj map[string]any
		if old != nil {
			oldObj = old.Object
		}
		if errs := validate.Object(cmd.Context(), d.Object, oldObj); len(errs) > 0 {
			fmt.Fprintf(streams.ErrOut, "%s: %s", d.Source, invalidMessage(d.Pipeline, errs))
			ok = false
			continue
		}
		p, err := validate.Default(d.Pipeline)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", d.Source, err)
		}
		valid = append(valid, manifest.Document{Source: d.Source, Pipeline: p})
	}
	return valid, ok, nil
}

func newValidateCommand(streams IO) *cobra.Command {
	var f fileFlags
	var oldFile string
	cmd := &cobra.Command{
		Use:   "validate -f FILE",
		Short: "Check Pipelines with the API server's rules and the operator's, offline",
		Long: `Check Pipelines with the rules the API server enforces (the CRD's schema and CEL rules, run
with the API server's own code, so the messages are the same) and those the operator adds (the
stream graph must be acyclic). Exits non-zero when a Pipeline is invalid.

With --old, checks the Pipeline as an update of the old one, as the API server checks an apply
over a stored Pipeline (partitions never decrease, topicName never changes).`,
		Example: `  millrace validate -f pipeline.yaml
  millrace validate -f new.yaml --old deployed.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var old *manifest.Document
			if oldFile != "" {
				d, err := manifest.ReadOneDocument(oldFile, streams.In, f.namespace)
				if err != nil {
					return err
				}
				old = &d
			}
			valid, ok, err := checked(cmd, &f, old, streams)
			if err != nil {
				return err
			}
			for _, d := range valid {
				fmt.Fprintf(streams.Out, "%s: Pipeline %s/%s is valid\n", d.Source, d.Pipeline.Namespace, d.Pipeline.Name)
			}
			if !ok {
				return exitError{code: 1}
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&oldFile, "old", "", "the stored Pipeline this one updates, to check transition rules")
	return cmd
}

type renderFlags struct {
	fileFlags
	strimzi            string
	bootstrapServers   string
	keda               bool
	prometheusOperator bool
	ioImage            string
	stateImage         string
	replicas           map[string]string
	output             string
}

func (r *renderFlags) facts() (render.Facts, error) {
	f := render.Facts{
		BootstrapServers:   r.bootstrapServers,
		KEDA:               r.keda,
		PrometheusOperator: r.prometheusOperator,
		Images:             render.Images{IOSidecar: r.ioImage, StateSidecar: r.stateImage},
	}
	switch r.strimzi {
	case "v1", "v1beta2":
		f.StrimziAPIVersion = r.strimzi
	case "none", "":
	default:
		return f, fmt.Errorf("--strimzi-api-version %q: want v1, v1beta2 or none", r.strimzi)
	}
	for entity, v := range r.replicas {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return f, fmt.Errorf("--replicas %s=%s: want a replica count", entity, v)
		}
		if f.Replicas == nil {
			f.Replicas = map[string]int32{}
		}
		f.Replicas[entity] = int32(n)
	}
	return f, nil
}

func newRenderCommand(streams IO) *cobra.Command {
	var r renderFlags
	cmd := &cobra.Command{
		Use:   "render -f FILE",
		Short: "Print the objects the operator would apply for Pipelines, for GitOps and review",
		Long: `Print the objects the operator would apply for each Pipeline: Strimzi KafkaTopics and
KafkaUser, per entity a ConfigMap, Service, StatefulSet and KEDA ScaledObject, and the Prometheus
Operator's ServiceMonitor and PrometheusRule. The flags give what the operator observes on the
cluster; render itself is the operator's own code, so the output is what it applies.

Topics created with the Kafka admin API (spec.kafka.topics: Direct) are listed as comments.`,
		Example: `  millrace render -f pipeline.yaml
  millrace render -f pipeline.yaml --strimzi-api-version v1beta2 --keda=false`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			facts, err := r.facts()
			if err != nil {
				return err
			}
			valid, ok, err := checked(cmd, &r.fileFlags, nil, streams)
			if err != nil {
				return err
			}
			if !ok {
				return exitError{code: 1}
			}
			var items []map[string]any
			// notes are comments: before the documents in YAML, on stderr with JSON (which has
			// no comments, and must stay parseable).
			var b, notes strings.Builder
			for _, d := range valid {
				res, err := render.Render(d.Pipeline, facts)
				if err != nil {
					return fmt.Errorf("%s: %w", d.Source, err)
				}
				if d.Pipeline.UID == "" {
					fmt.Fprintf(&notes, "# Pipeline %s/%s: no ownerReferences (the Pipeline has no uid until the API server stores it), so deleting the Pipeline does not delete these\n", d.Pipeline.Namespace, d.Pipeline.Name)
				}
				if d.Pipeline.Spec.Kafka.Topics == v1alpha1.TopicsDirect {
					fmt.Fprintf(&notes, "# Pipeline %s/%s: topics the operator creates with the Kafka admin API\n", d.Pipeline.Namespace, d.Pipeline.Name)
					for _, t := range res.Topics {
						fmt.Fprintf(&notes, "#   %s (%s, %d partitions, deletionPolicy %s)\n", t.Name, t.Purpose, t.Partitions, t.DeletionPolicy)
					}
				}
				for _, o := range res.Objects {
					u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
					if err != nil {
						return fmt.Errorf("%s: convert %T: %w", d.Source, o, err)
					}
					items = append(items, clean(u))
				}
			}
			switch r.output {
			case "yaml":
				b.WriteString(notes.String())
				for _, it := range items {
					y, err := yaml.Marshal(it)
					if err != nil {
						return err
					}
					b.WriteString("---\n")
					b.Write(y)
				}
			case "json":
				j, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "  ")
				if err != nil {
					return err
				}
				b.Write(j)
				b.WriteString("\n")
				fmt.Fprint(streams.ErrOut, notes.String())
			default:
				return fmt.Errorf("--output %q: want yaml or json", r.output)
			}
			_, err = fmt.Fprint(streams.Out, b.String())
			return err
		},
	}
	r.fileFlags.add(cmd)
	fl := cmd.Flags()
	fl.StringVar(&r.strimzi, "strimzi-api-version", "v1", "kafka.strimzi.io version the cluster serves: v1, v1beta2, or none (Strimzi not installed)")
	fl.StringVar(&r.bootstrapServers, "bootstrap-servers", "", "Kafka address read from the Strimzi Kafka's status (spec.kafka.bootstrapServers overrides it)")
	fl.BoolVar(&r.keda, "keda", true, "KEDA is installed (autoscaled entities get a ScaledObject)")
	fl.BoolVar(&r.prometheusOperator, "prometheus-operator", true, "the Prometheus Operator is installed (monitoring gets a ServiceMonitor and rules)")
	fl.StringVar(&r.ioImage, "io-image", render.DefaultIOSidecarImage, "image of the I/O sidecar")
	fl.StringVar(&r.stateImage, "state-image", render.DefaultStateSidecarImage, "image of the state sidecar")
	fl.StringToStringVar(&r.replicas, "replicas", nil, "current replicas of autoscaled entities, ENTITY=N (the Static assignment follows them)")
	fl.StringVarP(&r.output, "output", "o", "yaml", "output format: yaml or json")
	return cmd
}

// clean makes a rendered object a manifest that kubectl apply accepts as is: no status (the
// operator never applies one, and a CRD without a status subresource would store it), no owner
// reference without a uid (the API server rejects those; a Pipeline read from a file has none),
// and none of the null creationTimestamps typed objects carry.
func clean(obj map[string]any) map[string]any {
	delete(obj, "status")
	if md, ok := obj["metadata"].(map[string]any); ok {
		if refs, ok := md["ownerReferences"].([]any); ok {
			kept := slices.DeleteFunc(refs, func(r any) bool {
				ref, _ := r.(map[string]any)
				uid, _ := ref["uid"].(string)
				return uid == ""
			})
			if len(kept) == 0 {
				delete(md, "ownerReferences")
			} else {
				md["ownerReferences"] = kept
			}
		}
	}
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			if ts, ok := t["creationTimestamp"]; ok && ts == nil {
				delete(t, "creationTimestamp")
			}
			for _, k := range slices.Sorted(maps.Keys(t)) {
				walk(t[k])
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(obj)
	return obj
}

func newGraphCommand(streams IO) *cobra.Command {
	var f fileFlags
	var format string
	cmd := &cobra.Command{
		Use:   "graph -f FILE",
		Short: "Draw the topology of Pipelines: streams, entities, partitions, replicas",
		Example: `  millrace graph -f pipeline.yaml
  millrace graph -f pipeline.yaml -o dot | dot -Tsvg > pipeline.svg
  millrace graph -f pipeline.yaml -o mermaid`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			valid, ok, err := checked(cmd, &f, nil, streams)
			if err != nil {
				return err
			}
			if !ok {
				return exitError{code: 1}
			}
			for i, d := range valid {
				if i > 0 {
					fmt.Fprintln(streams.Out)
				}
				if err := graph.Write(streams.Out, d.Pipeline, graph.Format(format)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVarP(&format, "output", "o", string(graph.ASCII), "format: ascii, dot or mermaid")
	return cmd
}
