package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// TestReconfiguredEvent: a change of the spec is reported by an event in the contract's words
// (class, fields, the entities whose pods restart), and the operator then does what it said:
// the pod template of the entity it named changes, that of the entity with a hot change does not.
func TestReconfiguredEvent(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns)))
	splitBefore, err := e.statefulSet(p, "split")
	if err != nil {
		t.Fatal(err)
	}
	countBefore, err := e.statefulSet(p, "count")
	if err != nil {
		t.Fatal(err)
	}

	p = e.converged(t, e.update(t, p, withImage("split", "example/split:2"), func(p *v1alpha1.Pipeline) {
		entity(p, "count").Config = map[string]string{"window": "5m"}
	}))

	const want = "from revision 1: Rolling change: spec.entities[split].image (Rolling), spec.entities[count].config (Hot); pods restart: split"
	cs, err := kubernetes.NewForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Reconfigured event", func() error {
		list, err := cs.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		var seen []string
		for _, ev := range list.Items {
			if ev.Reason == EventReconfigured {
				if ev.Note == want && ev.Regarding.Name == p.Name {
					return nil
				}
				seen = append(seen, ev.Note)
			}
		}
		return fmt.Errorf("no Reconfigured event %q; seen %q", want, seen)
	})

	splitAfter, err := e.statefulSet(p, "split")
	if err != nil {
		t.Fatal(err)
	}
	countAfter, err := e.statefulSet(p, "count")
	if err != nil {
		t.Fatal(err)
	}
	if equality.Semantic.DeepEqual(splitBefore.Spec.Template, splitAfter.Spec.Template) {
		t.Errorf("the event says split restarts, but its pod template is unchanged")
	}
	if !equality.Semantic.DeepEqual(countBefore.Spec.Template, countAfter.Spec.Template) {
		t.Errorf("the event says count does not restart, but its pod template changed")
	}
	cm, err := e.configMap(p, "count")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cm.Data["executor.json"], `"window"`) {
		t.Errorf("count's hot change is not in its ConfigMap:\n%s", cm.Data["executor.json"])
	}
}
