package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/pipeline/revision"
	"github.com/millrace-dev/millrace/controllers/reconfig"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods/proxy,verbs=get

// How the operator learns which configuration each pod applied: it asks the pod's I/O sidecar
// (GET /status on its metrics port) through the API server's pods/proxy subresource. The
// executors keep running without any Kubernetes credentials (their pods mount no service account
// token), and the only permission added is the operator's own read of pods/proxy; having each
// sidecar write its Pod's status instead would give every executor pod a token and a write
// permission on pods. docs/operations.md explains the choice.

// SidecarStatus is what an I/O sidecar's GET /status says (iosidecar.Status).
type SidecarStatus struct {
	Config string `json:"config"`
	Ready  bool   `json:"ready"`
	// Retire is the progress of a retirement, when the sidecar's configuration has one.
	Retire *SidecarRetireStatus `json:"retire,omitempty"`
}

// SidecarRetireStatus is iosidecar.RetireStatus: Phase is Draining, Drained or Deleted.
type SidecarRetireStatus struct {
	Phase     string `json:"phase"`
	Remaining int64  `json:"remaining"`
}

// ConfigProber asks the I/O sidecar of a running pod which configuration it applied.
type ConfigProber interface {
	Probe(ctx context.Context, pod *corev1.Pod) (SidecarStatus, error)
}

// proxyProber asks through the API server's pods/proxy, with a REST client of the core group
// (the request client-go's typed ProxyGet makes; the typed clientset of every API group is not
// linked into the operator for it).
type proxyProber struct{ rc rest.Interface }

// newProxyProber builds a proxyProber on the manager's configuration and HTTP client.
func newProxyProber(cfg *rest.Config, hc *http.Client) (proxyProber, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.APIPath, cfg.GroupVersion = "/api", &corev1.SchemeGroupVersion
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(runtime.NewScheme()).WithoutConversion()
	rc, err := rest.RESTClientForConfigAndClient(cfg, hc)
	if err != nil {
		return proxyProber{}, err
	}
	return proxyProber{rc: rc}, nil
}

// probeTimeout bounds one question to one sidecar.
const probeTimeout = 5 * time.Second

func (p proxyProber) Probe(ctx context.Context, pod *corev1.Pod) (SidecarStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	b, err := p.rc.Get().Namespace(pod.Namespace).Resource("pods").SubResource("proxy").
		Name(utilnet.JoinSchemeNamePort("http", pod.Name, strconv.Itoa(config.DefaultMetricsPort))).Suffix("/status").DoRaw(ctx)
	if err != nil {
		return SidecarStatus{}, err
	}
	var st SidecarStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return SidecarStatus{}, fmt.Errorf("decode /status: %w", err)
	}
	return st, nil
}

// DefaultConfigApplyBound is how long a hot change may take to reach every running pod before
// ConfigApplied says ConfigNotApplied: the kubelet refreshes a mounted ConfigMap within its sync
// period plus its cache's TTL (about a minute by default), and the sidecar polls the file every
// second.
const DefaultConfigApplyBound = 3 * time.Minute

// configRecheck is how soon a Pipeline whose pods have not all applied their configuration is
// looked at again (the sidecars are asked, nothing notifies the operator).
const configRecheck = 10 * time.Second

// shortDigest is how the status names an executor.json.
func shortDigest(raw string) string { return config.Digest([]byte(raw))[:16] }

// observeConfig asks every running pod of every entity which configuration it applied, and
// which pods still run an older pod template. It runs after render (the digests and pod
// template hashes are the desired ones).
func (r *Reconciler) observeConfig(ctx context.Context, s *scope) {
	if s.desired == nil {
		return
	}
	now := r.clock()
	cms, stss := map[string]*corev1.ConfigMap{}, map[string]*appsv1.StatefulSet{}
	for _, o := range s.desired.Objects {
		switch t := o.(type) {
		case *corev1.ConfigMap:
			if e := t.Labels[render.LabelEntity]; e != "" {
				cms[e] = t
			}
		case *appsv1.StatefulSet:
			stss[t.Labels[render.LabelEntity]] = t
		}
	}
	s.entityConfig = map[string]*v1alpha1.EntityConfigStatus{}
	var late, pending []string
	for i := range s.p.Spec.Entities {
		e := &s.p.Spec.Entities[i]
		cm, sts := cms[e.Name], stss[e.Name]
		if cm == nil || sts == nil {
			continue
		}
		cs := &v1alpha1.EntityConfigStatus{Digest: shortDigest(cm.Data[config.FileName])}
		if prev := previousConfig(s, e.Name); prev != nil && prev.Digest == cs.Digest && prev.Since != nil {
			cs.Since = prev.Since
		} else {
			cs.Since = &metav1.Time{Time: now.Truncate(time.Second)}
		}
		var pods corev1.PodList
		if err := r.client.List(ctx, &pods, client.InNamespace(s.p.Namespace), client.MatchingLabels(render.SelectorLabels(s.p, e.Name))); err != nil {
			s.configErr = err
			continue
		}
		slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
		template := sts.Spec.Template.Annotations[render.AnnotationPodTemplateHash]
		var waiting, oldTemplates []string
		for j := range pods.Items {
			pod := &pods.Items[j]
			if pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil {
				continue
			}
			cs.RunningPods++
			ps := v1alpha1.PodConfigStatus{Name: pod.Name, PendingRestart: pod.Annotations[render.AnnotationPodTemplateHash] != template}
			if st, err := r.prober.Probe(ctx, pod); err != nil {
				ps.Error = err.Error()
			} else {
				if len(st.Config) >= 16 {
					ps.Applied = st.Config[:16]
				}
				ps.Ready = st.Ready
			}
			if ps.PendingRestart {
				cs.PendingRestart++
				if h := pod.Annotations[render.AnnotationPodTemplateHash]; !slices.Contains(oldTemplates, h) {
					oldTemplates = append(oldTemplates, h)
				}
			}
			if ps.Applied == cs.Digest && ps.Ready {
				cs.AppliedPods++
			} else if !ps.PendingRestart {
				// A pod that restarts for a new template gets the new configuration with it;
				// the others must reload it.
				waiting = append(waiting, pod.Name)
			}
			cs.Pods = append(cs.Pods, ps)
		}
		if cs.PendingRestart > 0 {
			cs.PendingRestartReason = restartReason(s, e, oldTemplates)
		}
		if len(waiting) > 0 {
			what := fmt.Sprintf("%s (%s)", e.Name, strings.Join(waiting, ", "))
			if now.Sub(cs.Since.Time) >= r.configApplyBound {
				late = append(late, what)
			} else {
				pending = append(pending, what)
			}
		}
		s.entityConfig[e.Name] = cs
	}
	s.configLate, s.configPending = late, pending
}

func previousConfig(s *scope, entity string) *v1alpha1.EntityConfigStatus {
	for _, es := range s.before.Entities {
		if es.Name == entity {
			return es.Config
		}
	}
	return nil
}

// restartReason names, in the contract's words, why pods with these pod template hashes restart:
// the revision each pod's template was rendered from is found by rendering the kept revisions
// (newest first) with the current facts, and the changes from it to the current spec that
// concern the entity and change pod templates are listed.
func restartReason(s *scope, e *v1alpha1.Entity, hashes []string) string {
	const unknown = "the pod template changed"
	revs := revision.Sorted(s.revisions)
	var why []string
	for _, h := range hashes {
		found := false
		for i := len(revs) - 1; i >= 0 && !found; i-- {
			if revs[i].Name == s.updateRevision {
				continue
			}
			spec, err := revision.Spec(&revs[i])
			if err != nil {
				continue
			}
			old := s.p.DeepCopy()
			old.Spec = *spec
			res, err := render.Render(old, s.facts)
			if err != nil {
				continue
			}
			for _, o := range res.Objects {
				sts, ok := o.(*appsv1.StatefulSet)
				if !ok || sts.Labels[render.LabelEntity] != e.Name || sts.Spec.Template.Annotations[render.AnnotationPodTemplateHash] != h {
					continue
				}
				found = true
				for _, c := range reconfig.EntityChanges(reconfig.Changes(spec, &s.p.Spec), e) {
					if (c.Class == reconfig.Rolling || c.Class == reconfig.Structural) && !slices.Contains(why, c.Path+" ("+string(c.Class)+")") {
						why = append(why, c.Path+" ("+string(c.Class)+")")
					}
				}
			}
		}
	}
	if len(why) == 0 {
		return unknown
	}
	return strings.Join(why, ", ")
}

// configCondition is ConfigApplied, from what observeConfig found.
func configCondition(s *scope) metav1.Condition {
	switch {
	case s.configErr != nil:
		return metav1.Condition{Status: metav1.ConditionUnknown, Reason: v1alpha1.ReasonConfigPending, Message: "listing the executor pods failed: " + s.configErr.Error()}
	case len(s.configLate) > 0:
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonConfigNotApplied,
			Message: "these running pods have not applied their entity's configuration within the bound: " + strings.Join(s.configLate, "; ") +
				"; status.entities[].config.pods says what each applied; `kubectl logs -c io` shows whether the sidecar rejected the file"}
	case len(s.configPending) > 0:
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonConfigPending,
			Message: "a configuration change is on its way to: " + strings.Join(s.configPending, "; ")}
	default:
		return metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonConfigApplied,
			Message: "every running pod applied its entity's configuration"}
	}
}
