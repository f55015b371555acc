package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/manifest"
	"github.com/millrace-dev/millrace/controllers/reconfig"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/controllers/validate"
)

// Exit codes of plan and diff, those of kubectl diff: 0 no change, 1 changes, more on an error
// (a refused or invalid update included).
const (
	exitNoChanges = 0
	exitChanges   = 1
	exitFailed    = 2
)

// writePlan prints the plan of applying next over prev (both valid) and returns the exit code.
func writePlan(cmd *cobra.Command, streams IO, prev, next *v1alpha1.Pipeline, facts render.Facts, output string) error {
	prev, err := validate.Default(prev)
	if err != nil {
		return exitWith(streams, err)
	}
	plan, err := reconfig.NewPlan(prev, next, facts)
	if err != nil {
		return exitWith(streams, err)
	}
	// The transition rules are the API server's; the contract names the ones it knows, and any
	// other rejection of the update is printed as the API server would.
	if len(plan.Refused()) == 0 {
		if errs := validate.Pipeline(cmd.Context(), next, prev); len(errs) > 0 {
			fmt.Fprint(streams.ErrOut, invalidMessage(next, errs))
			return exitError{code: exitFailed}
		}
	}
	switch output {
	case "text":
		if err := reconfig.Write(streams.Out, plan); err != nil {
			return err
		}
	case "json":
		b, err := json.MarshalIndent(plan, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(streams.Out, "%s\n", b)
	default:
		return exitWith(streams, fmt.Errorf("--output %q: want text or json", output))
	}
	switch {
	case len(plan.Refused()) > 0:
		return exitError{code: exitFailed}
	case plan.Empty():
		return nil
	default:
		return exitError{code: exitChanges}
	}
}

// exitWith prints err and ends with the error exit code of plan and diff (2, not 1, which means
// "changes").
func exitWith(streams IO, err error) error {
	fmt.Fprintf(streams.ErrOut, "Error: %v\n", err)
	return exitError{code: exitFailed}
}

// addFactFlags adds render's flags for the facts the operator observes, shared by plan and diff.
func addFactFlags(cmd *cobra.Command, r *renderFlags) {
	fl := cmd.Flags()
	fl.StringVar(&r.strimzi, "strimzi-api-version", "v1", "kafka.strimzi.io version the cluster serves: v1, v1beta2, or none (Strimzi not installed)")
	fl.StringVar(&r.bootstrapServers, "bootstrap-servers", "", "Kafka address read from the Strimzi Kafka's status (spec.kafka.bootstrapServers overrides it)")
	fl.BoolVar(&r.keda, "keda", true, "KEDA is installed (autoscaled entities get a ScaledObject)")
	fl.BoolVar(&r.prometheusOperator, "prometheus-operator", true, "the Prometheus Operator is installed (monitoring gets a ServiceMonitor and rules)")
	fl.StringVar(&r.ioImage, "io-image", render.DefaultIOSidecarImage, "image of the I/O sidecar")
	fl.StringVar(&r.stateImage, "state-image", render.DefaultStateSidecarImage, "image of the state sidecar")
	fl.StringToStringVar(&r.replicas, "replicas", nil, "current replicas of autoscaled entities, ENTITY=N (the Static assignment follows them)")
	fl.StringVarP(&r.output, "output", "o", "text", "output format: text or json")
}

func newPlanCommand(streams IO) *cobra.Command {
	var r renderFlags
	var oldFile string
	cmd := &cobra.Command{
		Use:   "plan -f NEW --old OLD",
		Short: "Show what applying a Pipeline over another does: classes, restarts, topics, groups, steps",
		Long: `Compare a new Pipeline with the one it would replace, offline, through the reconfiguration
contract (docs/reconfiguration.md) and the operator's own render: every changed field and its
class (Hot, Scale, Rolling, Structural, Refused), per entity whether its pods restart and why or
reload their configuration, the child objects created, changed or deleted, the topics and
consumer groups that appear, change or go, and the operator's steps.

Exit codes are those of kubectl diff: 0 no changes, 1 changes, 2 an error, a refused or an
invalid update.`,
		Example: `  millrace plan -f new.yaml --old deployed.yaml
  millrace plan -f new.yaml --old deployed.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			facts, err := r.facts()
			if err != nil {
				return exitWith(streams, err)
			}
			oldDoc, err := manifest.ReadOneDocument(oldFile, streams.In, r.namespace)
			if err != nil {
				return exitWith(streams, err)
			}
			if errs := validate.Object(cmd.Context(), oldDoc.Object, nil); len(errs) > 0 {
				fmt.Fprintf(streams.ErrOut, "%s: %s", oldDoc.Source, invalidMessage(oldDoc.Pipeline, errs))
				return exitError{code: exitFailed}
			}
			if len(r.files) != 1 {
				return exitWith(streams, fmt.Errorf("-f: want one file with one Pipeline"))
			}
			valid, ok, err := checked(cmd, &r.fileFlags, nil, streams)
			if err != nil {
				return exitWith(streams, err)
			}
			if !ok {
				return exitError{code: exitFailed}
			}
			if len(valid) != 1 {
				return exitWith(streams, fmt.Errorf("%s: want one Pipeline, found %d", r.files[0], len(valid)))
			}
			next := valid[0].Pipeline
			if next.Namespace != oldDoc.Pipeline.Namespace || next.Name != oldDoc.Pipeline.Name {
				return exitWith(streams, fmt.Errorf("%s is Pipeline %s/%s, %s is %s/%s: plan compares two versions of one Pipeline",
					r.files[0], next.Namespace, next.Name, oldFile, oldDoc.Pipeline.Namespace, oldDoc.Pipeline.Name))
			}
			return writePlan(cmd, streams, oldDoc.Pipeline, next, facts, r.output)
		},
	}
	r.fileFlags.add(cmd)
	cmd.Flags().StringVar(&oldFile, "old", "", "the Pipeline as it runs now")
	_ = cmd.MarkFlagRequired("old")
	addFactFlags(cmd, &r)
	return cmd
}

func newDiffCommand(streams IO, c *clusterFlags) *cobra.Command {
	var r renderFlags
	cmd := &cobra.Command{
		Use:   "diff -f FILE",
		Short: "Show what applying a Pipeline does to the live one: classes, restarts, topics, groups, steps",
		Long: `Compare a Pipeline manifest with the live Pipeline of the same name (read with the current
kubeconfig), as ` + "`plan`" + ` does offline: every changed field and its class, the pods that restart and
why, the child objects, topics and consumer groups that change, and the operator's steps. A
Pipeline that does not exist yet is planned as created from nothing.

Exit codes are those of kubectl diff: 0 no changes, 1 changes, 2 an error, a refused or an
invalid update.`,
		Example: `  kubectl millrace diff -f pipeline.yaml
  kubectl millrace diff -f pipeline.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			facts, err := r.facts()
			if err != nil {
				return exitWith(streams, err)
			}
			cl, ns, err := c.client()
			if err != nil {
				return exitWith(streams, err)
			}
			r.namespace = ns
			valid, ok, err := checked(cmd, &r.fileFlags, nil, streams)
			if err != nil {
				return exitWith(streams, err)
			}
			if !ok {
				return exitError{code: exitFailed}
			}
			if len(valid) != 1 {
				return exitWith(streams, fmt.Errorf("want one Pipeline, found %d", len(valid)))
			}
			next := valid[0].Pipeline
			live := &v1alpha1.Pipeline{}
			if err := cl.Get(cmd.Context(), types.NamespacedName{Namespace: next.Namespace, Name: next.Name}, live); err != nil {
				if !apierrors.IsNotFound(err) {
					return exitWith(streams, fmt.Errorf("get pipeline %s/%s: %w", next.Namespace, next.Name, err))
				}
				fmt.Fprintf(streams.Out, "Pipeline %s/%s does not exist: applying creates it\n", next.Namespace, next.Name)
				return exitError{code: exitChanges}
			}
			// The rendered children of both carry the live Pipeline's uid, as the operator's do.
			next.UID = live.UID
			return writePlan(cmd, streams, live, next, facts, r.output)
		},
	}
	cmd.Flags().StringSliceVarP(&r.files, "filename", "f", nil, "Pipeline manifest (YAML or JSON); - reads stdin")
	_ = cmd.MarkFlagRequired("filename")
	c.add(cmd)
	addFactFlags(cmd, &r)
	return cmd
}
