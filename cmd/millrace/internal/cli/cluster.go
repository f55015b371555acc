package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/graph"
	"github.com/millrace-dev/millrace/controllers/pipeline/revision"
	"github.com/millrace-dev/millrace/controllers/render"
)

// FieldManager is the field manager of the CLI's changes to Pipelines.
const FieldManager = "kubectl-millrace"

// clusterFlags are kubectl's connection flags (--kubeconfig, --context, --namespace, ...),
// shared by every cluster command.
type clusterFlags struct {
	config *genericclioptions.ConfigFlags
}

func newClusterFlags() *clusterFlags {
	return &clusterFlags{config: genericclioptions.NewConfigFlags(true)}
}

func (c *clusterFlags) add(cmd *cobra.Command) { c.config.AddFlags(cmd.Flags()) }

// client connects to the cluster and returns the namespace the command works in.
func (c *clusterFlags) client() (client.Client, string, error) {
	cfg, err := c.config.ToRESTConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := c.config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig namespace: %w", err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, kedav1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, "", err
		}
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", fmt.Errorf("connect to the cluster: %w", err)
	}
	return cl, ns, nil
}

func getPipeline(ctx context.Context, cl client.Client, ns, name string) (*v1alpha1.Pipeline, error) {
	p := &v1alpha1.Pipeline{}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, p); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("pipeline %s/%s not found", ns, name)
		}
		return nil, fmt.Errorf("get pipeline %s/%s: %w", ns, name, err)
	}
	return p, nil
}

func newStatusCommand(streams IO, c *clusterFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "status [PIPELINE]",
		Short: "Show Pipelines: entities, replicas, autoscaling, lag and conditions",
		Long: `Show each Pipeline of the namespace (or the one named): its phase and revisions, a table of
its entities (replicas and ready replicas, autoscaling range, consumer lag where KEDA measures it)
and its conditions with their messages, which say what to do when something is wrong.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ns, err := c.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var pipelines []v1alpha1.Pipeline
			if len(args) == 1 {
				p, err := getPipeline(ctx, cl, ns, args[0])
				if err != nil {
					return err
				}
				pipelines = []v1alpha1.Pipeline{*p}
			} else {
				var list v1alpha1.PipelineList
				opts := []client.ListOption{}
				if !all {
					opts = append(opts, client.InNamespace(ns))
				}
				if err := cl.List(ctx, &list, opts...); err != nil {
					return fmt.Errorf("list pipelines: %w", err)
				}
				pipelines = list.Items
				if len(pipelines) == 0 {
					if all {
						fmt.Fprintln(streams.Out, "No Pipelines found.")
					} else {
						fmt.Fprintf(streams.Out, "No Pipelines found in namespace %s.\n", ns)
					}
					return nil
				}
			}
			for i := range pipelines {
				if i > 0 {
					fmt.Fprintln(streams.Out)
				}
				if err := writeStatus(ctx, streams.Out, cl, &pipelines[i], time.Now()); err != nil {
					return err
				}
			}
			return nil
		},
	}
	c.add(cmd)
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "show Pipelines of every namespace")
	return cmd
}

// writeStatus prints one Pipeline's status. now makes ages reproducible in tests.
func writeStatus(ctx context.Context, w io.Writer, cl client.Client, p *v1alpha1.Pipeline, now time.Time) error {
	st := p.Status
	phase := string(st.Phase)
	if phase == "" {
		phase = "Unknown"
	}
	fmt.Fprintf(w, "Pipeline %s/%s: %s", p.Namespace, p.Name, phase)
	if p.Spec.Suspend {
		fmt.Fprint(w, " (suspended)")
	}
	fmt.Fprintln(w)
	if st.ObservedGeneration != p.Generation {
		fmt.Fprintf(w, "  the operator has not yet observed generation %d (status is of generation %d)\n", p.Generation, st.ObservedGeneration)
	}
	if st.CurrentRevision != "" || st.UpdateRevision != "" {
		fmt.Fprintf(w, "  revision: current %s, update %s\n", orDash(st.CurrentRevision), orDash(st.UpdateRevision))
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTITY\tREPLICAS\tREADY\tAUTOSCALING\tPARTITIONS\tLAG\tINPUTS\tOUTPUTS")
	for i := range p.Spec.Entities {
		e := &p.Spec.Entities[i]
		es := entityStatus(st, e.Name)
		replicas, ready, partitions := "-", "-", "-"
		if es != nil {
			replicas, ready, partitions = strconv.Itoa(int(es.Replicas)), strconv.Itoa(int(es.ReadyReplicas)), strconv.Itoa(int(es.Partitions))
		}
		scaling := "-"
		if e.Autoscaling != nil {
			scaling = strings.TrimPrefix(graph.Parallelism(e), "autoscaled ")
		}
		lag := "-"
		if e.Autoscaling != nil {
			lag = kedaLag(ctx, cl, p, e.Name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, replicas, ready, scaling, partitions, lag,
			strings.Join(e.Inputs, ","), orDash(strings.Join(e.Outputs, ",")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for i := range p.Spec.Entities {
		es := entityStatus(st, p.Spec.Entities[i].Name)
		if es == nil || es.Config == nil {
			continue
		}
		c := es.Config
		fmt.Fprintf(w, "  %s: configuration %s applied by %d of %d running pods", es.Name, c.Digest, c.AppliedPods, c.RunningPods)
		if c.PendingRestart > 0 {
			fmt.Fprintf(w, "; %d pods wait for a restart: %s", c.PendingRestart, c.PendingRestartReason)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	if len(st.Conditions) == 0 {
		fmt.Fprintln(w, "No conditions yet: the operator has not reconciled this Pipeline (is it running?).")
		return nil
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONDITION\tSTATUS\tREASON\tAGE\tMESSAGE")
	conds := slices.Clone(st.Conditions)
	order := []string{v1alpha1.ConditionReady, v1alpha1.ConditionTopicsReady, v1alpha1.ConditionExecutorsReady,
		v1alpha1.ConditionAutoscalingReady, v1alpha1.ConditionMonitoringReady, v1alpha1.ConditionConfigApplied, v1alpha1.ConditionDegraded}
	rank := func(t string) int {
		if i := slices.Index(order, t); i >= 0 {
			return i
		}
		return len(order)
	}
	slices.SortStableFunc(conds, func(a, b metav1.Condition) int { return rank(a.Type) - rank(b.Type) })
	for _, cond := range conds {
		age := "-"
		if !cond.LastTransitionTime.IsZero() {
			age = duration.HumanDuration(now.Sub(cond.LastTransitionTime.Time))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cond.Type, cond.Status, cond.Reason, age, cond.Message)
	}
	return tw.Flush()
}

func entityStatus(st v1alpha1.PipelineStatus, name string) *v1alpha1.EntityStatus {
	for i := range st.Entities {
		if st.Entities[i].Name == name {
			return &st.Entities[i]
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// kedaLag is the consumer lag of an autoscaled entity as KEDA last measured it: the external
// metric in the status of the HPA that KEDA manages for the entity's ScaledObject. "-" when KEDA
// has not measured it (or is not installed).
func kedaLag(ctx context.Context, cl client.Client, p *v1alpha1.Pipeline, entity string) string {
	so := &kedav1alpha1.ScaledObject{}
	name := render.ScaledObjectName(p, entity)
	if err := cl.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: name}, so); err != nil {
		return "-"
	}
	hpaName := so.Status.HpaName
	if hpaName == "" {
		hpaName = "keda-hpa-" + name
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{}
	if err := cl.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: hpaName}, hpa); err != nil {
		return "-"
	}
	var total int64
	found := false
	for _, m := range hpa.Status.CurrentMetrics {
		if m.Type != autoscalingv2.ExternalMetricSourceType || m.External == nil {
			continue
		}
		switch cur := m.External.Current; {
		case cur.Value != nil:
			total += cur.Value.Value()
			found = true
		case cur.AverageValue != nil:
			// KEDA targets an average per replica; the lag of the entity is that times the pods.
			total += cur.AverageValue.Value() * int64(max(hpa.Status.CurrentReplicas, 1))
			found = true
		}
	}
	if !found {
		return "-"
	}
	return strconv.FormatInt(total, 10)
}

func listRevisions(ctx context.Context, cl client.Client, p *v1alpha1.Pipeline) ([]appsv1.ControllerRevision, error) {
	var list appsv1.ControllerRevisionList
	if err := cl.List(ctx, &list, client.InNamespace(p.Namespace), client.MatchingLabels{v1alpha1.LabelPipeline: p.Name}); err != nil {
		return nil, fmt.Errorf("list revisions of pipeline %s/%s: %w", p.Namespace, p.Name, err)
	}
	// Only revisions this Pipeline controls: a namesake's leftovers are not its history.
	var out []appsv1.ControllerRevision
	for _, r := range list.Items {
		if ref := metav1.GetControllerOf(&r); ref != nil && ref.UID == p.UID {
			out = append(out, r)
		}
	}
	return revision.Sorted(out), nil
}

// pipelineHistory reads a Pipeline and its revisions, oldest first, for history and rollback.
func (c *clusterFlags) pipelineHistory(ctx context.Context, name string) (client.Client, string, *v1alpha1.Pipeline, []appsv1.ControllerRevision, error) {
	cl, ns, err := c.client()
	if err != nil {
		return nil, "", nil, nil, err
	}
	p, err := getPipeline(ctx, cl, ns, name)
	if err != nil {
		return nil, "", nil, nil, err
	}
	revs, err := listRevisions(ctx, cl, p)
	if err != nil {
		return nil, "", nil, nil, err
	}
	return cl, ns, p, revs, nil
}

func newHistoryCommand(streams IO, c *clusterFlags) *cobra.Command {
	var show int64
	cmd := &cobra.Command{
		Use:   "history PIPELINE",
		Short: "List the revisions of a Pipeline's spec, or show one",
		Example: `  kubectl millrace history wordcount
  kubectl millrace history wordcount --revision 2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			_, ns, p, revs, err := c.pipelineHistory(ctx, args[0])
			if err != nil {
				return err
			}
			if show != 0 {
				r := revision.ByNumber(revs, show)
				if r == nil {
					return fmt.Errorf("pipeline %s/%s has no revision %d%s", ns, p.Name, show, availableRevisions(revs))
				}
				spec, err := revision.Spec(r)
				if err != nil {
					return err
				}
				y, err := yaml.Marshal(map[string]any{"spec": spec})
				if err != nil {
					return err
				}
				fmt.Fprintf(streams.Out, "# pipeline %s/%s revision %d (%s)\n%s", ns, p.Name, r.Revision, r.Name, y)
				return nil
			}
			if len(revs) == 0 {
				fmt.Fprintf(streams.Out, "Pipeline %s/%s has no revisions yet: the operator records one when it reconciles the spec.\n", ns, p.Name)
				return nil
			}
			tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tNAME\tCREATED\tSTATUS\tSUMMARY")
			for _, r := range revs {
				var marks []string
				if r.Name == p.Status.CurrentRevision {
					marks = append(marks, "current")
				}
				if r.Name == p.Status.UpdateRevision && r.Name != p.Status.CurrentRevision {
					marks = append(marks, "rolling out")
				}
				summary := "?"
				if spec, err := revision.Spec(&r); err == nil {
					summary = specSummary(spec)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.Revision, r.Name, r.CreationTimestamp.UTC().Format(time.RFC3339), orDash(strings.Join(marks, ",")), summary)
			}
			return tw.Flush()
		},
	}
	c.add(cmd)
	cmd.Flags().Int64Var(&show, "revision", 0, "print the spec of this revision")
	return cmd
}

// specSummary condenses a spec into what usually changes between revisions: the entities'
// images and parallelism, and suspension.
func specSummary(spec *v1alpha1.PipelineSpec) string {
	var parts []string
	for i := range spec.Entities {
		e := &spec.Entities[i]
		parts = append(parts, fmt.Sprintf("%s=%s (%s)", e.Name, e.Image, graph.Parallelism(e)))
	}
	s := strings.Join(parts, ", ")
	if spec.Suspend {
		s += "; suspended"
	}
	return s
}

func availableRevisions(revs []appsv1.ControllerRevision) string {
	if len(revs) == 0 {
		return " (it has none yet)"
	}
	var nums []string
	for _, r := range revs {
		nums = append(nums, strconv.FormatInt(r.Revision, 10))
	}
	return "; its revisions are " + strings.Join(nums, ", ")
}

// patch applies a JSON merge or JSON patch to a Pipeline as the CLI's field manager.
func patch(ctx context.Context, cl client.Client, p *v1alpha1.Pipeline, pt types.PatchType, body any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	if err := cl.Patch(ctx, p, client.RawPatch(pt, raw), client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("update pipeline %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

func newRollbackCommand(streams IO, c *clusterFlags) *cobra.Command {
	var to int64
	cmd := &cobra.Command{
		Use:   "rollback PIPELINE --to-revision N",
		Short: "Ask the operator to restore the spec of an earlier revision",
		Long: `Ask the operator to restore the spec of an earlier revision (see history). This sets the
annotation ` + v1alpha1.AnnotationRollbackTo + `=N on the Pipeline, exactly what

  kubectl annotate pipeline PIPELINE ` + v1alpha1.AnnotationRollbackTo + `=N

does; the operator restores the spec, removes the annotation and records the result as the newest
revision. Watch it with "status".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to <= 0 {
				return fmt.Errorf("--to-revision is required: a revision number from history")
			}
			ctx := cmd.Context()
			cl, ns, p, revs, err := c.pipelineHistory(ctx, args[0])
			if err != nil {
				return err
			}
			if revision.ByNumber(revs, to) == nil {
				return fmt.Errorf("pipeline %s/%s has no revision %d%s", ns, p.Name, to, availableRevisions(revs))
			}
			body := map[string]any{"metadata": map[string]any{
				"resourceVersion": p.ResourceVersion,
				"annotations":     map[string]any{v1alpha1.AnnotationRollbackTo: strconv.FormatInt(to, 10)},
			}}
			if err := patch(ctx, cl, p, types.MergePatchType, body); err != nil {
				return err
			}
			fmt.Fprintf(streams.Out, "pipeline %s/%s: rollback to revision %d requested\n", ns, p.Name, to)
			return nil
		},
	}
	c.add(cmd)
	cmd.Flags().Int64Var(&to, "to-revision", 0, "the revision number to restore (from history)")
	return cmd
}

func newSuspendCommand(streams IO, c *clusterFlags, suspend bool) *cobra.Command {
	use, short, done := "suspend", "Stop processing of a Pipeline, keeping topics, offsets and state", "suspended"
	value := any(true)
	if !suspend {
		// Removing the field, rather than writing false, leaves the spec as it was before suspend.
		use, short, done, value = "resume", "Resume processing of a suspended Pipeline where it stopped", "resumed", nil
	}
	cmd := &cobra.Command{
		Use:   use + " PIPELINE",
		Short: short,
		Long: short + `. This sets spec.suspend, as

  kubectl patch pipeline PIPELINE --type merge -p '{"spec":{"suspend":` + map[bool]string{true: "true", false: "null"}[suspend] + `}}'

does.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, ns, err := c.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			p, err := getPipeline(ctx, cl, ns, args[0])
			if err != nil {
				return err
			}
			if p.Spec.Suspend == suspend {
				fmt.Fprintf(streams.Out, "pipeline %s/%s is already %s\n", ns, p.Name, done)
				return nil
			}
			if err := patch(ctx, cl, p, types.MergePatchType, map[string]any{"spec": map[string]any{"suspend": value}}); err != nil {
				return err
			}
			fmt.Fprintf(streams.Out, "pipeline %s/%s %s\n", ns, p.Name, done)
			return nil
		},
	}
	c.add(cmd)
	return cmd
}

func newScaleCommand(streams IO, c *clusterFlags) *cobra.Command {
	var replicas int32
	cmd := &cobra.Command{
		Use:   "scale [PIPELINE] ENTITY --replicas N",
		Short: "Set the replicas of a fixed-parallelism entity",
		Long: `Set spec.entities[ENTITY].replicas of a Pipeline. Autoscaled entities are scaled by KEDA:
change their autoscaling range instead. PIPELINE may be left out when only one Pipeline of the
namespace has an entity of that name.`,
		Example: `  kubectl millrace scale wordcount split --replicas 4
  kubectl millrace scale split --replicas 4`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("replicas") {
				return fmt.Errorf("--replicas is required")
			}
			if replicas < 0 {
				return fmt.Errorf("--replicas %d: must not be negative", replicas)
			}
			cl, ns, err := c.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			entity := args[len(args)-1]
			var p *v1alpha1.Pipeline
			if len(args) == 2 {
				if p, err = getPipeline(ctx, cl, ns, args[0]); err != nil {
					return err
				}
			} else if p, err = pipelineWithEntity(ctx, cl, ns, entity); err != nil {
				return err
			}
			i := slices.IndexFunc(p.Spec.Entities, func(e v1alpha1.Entity) bool { return e.Name == entity })
			if i < 0 {
				var names []string
				for _, e := range p.Spec.Entities {
					names = append(names, e.Name)
				}
				return fmt.Errorf("pipeline %s/%s has no entity %q; its entities are %s", ns, p.Name, entity, strings.Join(names, ", "))
			}
			e := p.Spec.Entities[i]
			if e.Autoscaling != nil {
				return fmt.Errorf("entity %q of pipeline %s/%s is autoscaled by KEDA (%s): change spec.entities[].autoscaling instead", entity, ns, p.Name, graph.Parallelism(&e))
			}
			if e.Assignment != nil && len(e.Assignment.Partitions) > 0 && int(replicas) != len(e.Assignment.Partitions) {
				return fmt.Errorf("entity %q of pipeline %s/%s has an explicit Static assignment of %d partition lists, one per replica: change spec.entities[].assignment.partitions to change its parallelism", entity, ns, p.Name, len(e.Assignment.Partitions))
			}
			// The test guards the index against a concurrent edit that reordered the entities.
			ops := []map[string]any{
				{"op": "test", "path": fmt.Sprintf("/spec/entities/%d/name", i), "value": entity},
				{"op": "add", "path": fmt.Sprintf("/spec/entities/%d/replicas", i), "value": replicas},
			}
			if err := patch(ctx, cl, p, types.JSONPatchType, ops); err != nil {
				return err
			}
			fmt.Fprintf(streams.Out, "pipeline %s/%s: entity %s scaled to %d replicas\n", ns, p.Name, entity, replicas)
			return nil
		},
	}
	c.add(cmd)
	cmd.Flags().Int32Var(&replicas, "replicas", 0, "the new number of replicas")
	return cmd
}

// pipelineWithEntity finds the one Pipeline of the namespace with an entity of that name.
func pipelineWithEntity(ctx context.Context, cl client.Client, ns, entity string) (*v1alpha1.Pipeline, error) {
	var list v1alpha1.PipelineList
	if err := cl.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("list pipelines: %w", err)
	}
	var found []*v1alpha1.Pipeline
	for i := range list.Items {
		if slices.ContainsFunc(list.Items[i].Spec.Entities, func(e v1alpha1.Entity) bool { return e.Name == entity }) {
			found = append(found, &list.Items[i])
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no Pipeline in namespace %s has an entity %q", ns, entity)
	case 1:
		return found[0], nil
	default:
		var names []string
		for _, p := range found {
			names = append(names, p.Name)
		}
		return nil, fmt.Errorf("pipelines %s of namespace %s all have an entity %q: name the Pipeline, as in scale PIPELINE %s", strings.Join(names, ", "), ns, entity, entity)
	}
}

var _ = meta.IsNoMatchError
