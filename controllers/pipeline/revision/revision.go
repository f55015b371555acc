// Package revision keeps the history of a Pipeline's spec as ControllerRevisions, the way a
// StatefulSet keeps its pod templates: each distinct spec is one revision, named by a hash of the
// spec, whose revision number grows whenever that spec becomes the current one again (for example
// after a rollback). It is pure: the reconciler reads and writes the objects.
package revision

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// DefaultHistoryLimit is used when spec.revisionHistoryLimit is unset.
const DefaultHistoryLimit = 10

// Data is the serialized spec a revision stores, and its hash.
type Data struct {
	JSON []byte
	Hash string
}

// For serializes a spec. The hash names the revision, so equal specs share one revision.
func For(spec *v1alpha1.PipelineSpec) (Data, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return Data{}, fmt.Errorf("serialize pipeline spec: %w", err)
	}
	sum := sha256.Sum256(raw)
	return Data{JSON: raw, Hash: hex.EncodeToString(sum[:])[:10]}, nil
}

// Name is the name of the revision of a spec with that hash.
func Name(p *v1alpha1.Pipeline, hash string) string { return p.Name + "-" + hash }

// New builds the ControllerRevision of a spec, controlled by the Pipeline.
func New(p *v1alpha1.Pipeline, d Data, number int64, labels map[string]string) *appsv1.ControllerRevision {
	return &appsv1.ControllerRevision{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ControllerRevision"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            Name(p, d.Hash),
			Namespace:       p.Namespace,
			Labels:          labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(p, v1alpha1.GroupVersion.WithKind("Pipeline"))},
		},
		Data:     runtime.RawExtension{Raw: d.JSON},
		Revision: number,
	}
}

// Spec decodes the spec a revision stores.
func Spec(cr *appsv1.ControllerRevision) (*v1alpha1.PipelineSpec, error) {
	raw := cr.Data.Raw
	if raw == nil && cr.Data.Object != nil {
		var err error
		if raw, err = json.Marshal(cr.Data.Object); err != nil {
			return nil, fmt.Errorf("read revision %s: %w", cr.Name, err)
		}
	}
	spec := &v1alpha1.PipelineSpec{}
	if err := json.Unmarshal(raw, spec); err != nil {
		return nil, fmt.Errorf("read revision %s: %w", cr.Name, err)
	}
	return spec, nil
}

// Sorted returns the revisions by increasing revision number (name breaks ties).
func Sorted(revs []appsv1.ControllerRevision) []appsv1.ControllerRevision {
	out := append([]appsv1.ControllerRevision(nil), revs...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Revision != out[j].Revision {
			return out[i].Revision < out[j].Revision
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Next is the number a new (or re-current) revision gets.
func Next(revs []appsv1.ControllerRevision) int64 {
	var top int64
	for _, r := range revs {
		if r.Revision > top {
			top = r.Revision
		}
	}
	return top + 1
}

// Latest returns the revision with the highest number, or nil.
func Latest(revs []appsv1.ControllerRevision) *appsv1.ControllerRevision {
	s := Sorted(revs)
	if len(s) == 0 {
		return nil
	}
	return &s[len(s)-1]
}

// ByNumber finds the revision with that number.
func ByNumber(revs []appsv1.ControllerRevision, number int64) *appsv1.ControllerRevision {
	for i := range revs {
		if revs[i].Revision == number {
			return &revs[i]
		}
	}
	return nil
}

// ByName finds the revision with that name.
func ByName(revs []appsv1.ControllerRevision, name string) *appsv1.ControllerRevision {
	for i := range revs {
		if revs[i].Name == name {
			return &revs[i]
		}
	}
	return nil
}

// Limit is the history limit of a Pipeline.
func Limit(p *v1alpha1.Pipeline) int {
	if p.Spec.RevisionHistoryLimit != nil && *p.Spec.RevisionHistoryLimit > 0 {
		return int(*p.Spec.RevisionHistoryLimit)
	}
	return DefaultHistoryLimit
}

// Excess lists the oldest revisions beyond limit, never one named in keep.
func Excess(revs []appsv1.ControllerRevision, limit int, keep ...string) []appsv1.ControllerRevision {
	s := Sorted(revs)
	if len(s) <= limit {
		return nil
	}
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	var out []appsv1.ControllerRevision
	over := len(s) - limit
	for _, r := range s {
		if over == 0 {
			break
		}
		if kept[r.Name] {
			continue
		}
		out = append(out, r)
		over--
	}
	return out
}
