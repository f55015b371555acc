package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// cachedOwnedLeaves, on cached children beside cachedOwnedDigest, holds the owned values that
// the digest leaves out (ownedLeaf), as JSON.
const cachedOwnedLeaves = "cache.streaming.millrace.dev/owned-leaves"

// cachedOwnedDigest is an annotation that exists only on cached children, never on the server:
// a digest of the values the operator's field manager owns on the live object (ownedDigest).
// stripUnread sets it from the managed fields and then drops what no reader needs (a
// StatefulSet's pod template, a composed kind's spec), and upToDate compares it with the digest
// of the configuration about to be applied instead of comparing the values one by one.
const cachedOwnedDigest = "cache.streaming.millrace.dev/owned-digest"

// ownedDigest is the digest of what manager's server-side apply owns on obj (an object as
// unstructured content, with its managed fields): the values at the paths of its apply entry's
// field set. Server-side apply takes a field from every other manager's set as soon as somebody
// else changes or removes its value (with an update as well as an apply), so the values the
// operator still owns are exactly those that nobody changed since its last apply: the digest
// equals appliedDigest of the configuration last applied unless something was changed behind
// the operator's back. "" when manager has no apply entry.
//
// Owned maps that are atomic (a fieldRef) or were applied empty (updateStrategy: {}) are owned
// whole, defaults that the API server filled in included, so they cannot be compared by digest:
// they are returned apart, as leaves (their path in the owned values and their live value), out
// of the digest, for upToDate to compare with covers as before.
func ownedDigest(obj map[string]any, entries []metav1.ManagedFieldsEntry, manager string) (string, []ownedLeaf) {
	for _, mf := range entries {
		if mf.Manager != manager || mf.Operation != metav1.ManagedFieldsOperationApply || mf.Subresource != "" || mf.FieldsV1 == nil {
			continue
		}
		var set map[string]any
		if err := json.Unmarshal(mf.FieldsV1.Raw, &set); err != nil {
			return "", nil
		}
		var leaves []ownedLeaf
		owned, _ := project(obj, set, nil, &leaves).(map[string]any)
		return appliedDigest(owned), leaves
	}
	return "", nil
}

// ownedLeaf is an owned map compared by value rather than by digest (see ownedDigest): Path
// holds field names and list indexes (in the owned values, where a list holds only the
// operator's elements, in the order it applied them).
type ownedLeaf struct {
	Path  []any `json:"p"`
	Value any   `json:"v"`
}

// withoutLeaves returns a copy of an applied configuration without the leaves' paths, and
// whether it holds every leaf's value (covers).
func withoutLeaves(obj map[string]any, leaves []ownedLeaf) (map[string]any, bool) {
	c := runtime.DeepCopyJSON(obj)
	for _, l := range leaves {
		if len(l.Path) == 0 {
			return nil, false
		}
		var node any = c
		for _, seg := range l.Path[:len(l.Path)-1] {
			node = child(node, seg)
		}
		m, ok := node.(map[string]any)
		last, _ := l.Path[len(l.Path)-1].(string)
		if !ok {
			return nil, false
		}
		v, ok := m[last]
		if !ok || !covers(l.Value, v) {
			return nil, false
		}
		delete(m, last)
	}
	return c, true
}

func child(node, seg any) any {
	switch t := node.(type) {
	case map[string]any:
		if k, ok := seg.(string); ok {
			return t[k]
		}
	case []any:
		if f, ok := number(seg); ok && int(f) >= 0 && int(f) < len(t) {
			return t[int(f)]
		}
	}
	return nil
}

// appliedDigest is the digest of an applied configuration's values, in the form ownedDigest
// gives the live object's: without apiVersion, kind and status, of the metadata only labels,
// annotations and owner references, and without empty values (an empty value is applied as
// well as omitted, and the API server may store either).
func appliedDigest(obj map[string]any) string {
	m := map[string]any{}
	for k, v := range obj {
		switch k {
		case "apiVersion", "kind", "status":
		case "metadata":
			meta, _ := v.(map[string]any)
			kept := map[string]any{}
			for _, f := range []string{"labels", "annotations", "ownerReferences"} {
				if fv, ok := meta[f]; ok {
					kept[f] = fv
				}
			}
			m[k] = kept
		default:
			m[k] = v
		}
	}
	raw, err := json.Marshal(withoutEmpty(m))
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:12])
}

// project returns the part of v at the paths of a managed-fields set (the FieldsV1 format:
// "f:<field>" for a map's field, "k:<json>" for a list element by its keys, "v:<json>" for a
// set's element, "i:<n>" for a list element by index, "." for the node itself); a path with no
// deeper set keeps the whole value, except that a map field owned whole goes to leaves instead.
// Elements of lists keep their order in v. path is v's path in the result.
func project(v any, set map[string]any, path []any, leaves *[]ownedLeaf) any {
	if ownedWhole(set) {
		return v
	}
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, sub := range set {
			name, ok := strings.CutPrefix(k, "f:")
			if !ok {
				continue
			}
			fv, ok := t[name]
			if !ok {
				continue
			}
			subSet, _ := sub.(map[string]any)
			fieldPath := append(slices.Clip(path), name)
			if composite(fv) && ownedWhole(subSet) && !isEmpty(withoutEmpty(fv)) {
				// An empty one (emptyDir: {}) stays: appliedDigest drops it on both sides.
				*leaves = append(*leaves, ownedLeaf{Path: fieldPath, Value: fv})
				continue
			}
			out[name] = project(fv, subSet, fieldPath, leaves)
		}
		return out
	case []any:
		var out []any
		for i, el := range t {
			if sub, ok := elementSet(set, el, i); ok {
				out = append(out, project(el, sub, append(slices.Clip(path), len(out)), leaves))
			}
		}
		return out
	}
	return v
}

// composite: a map, or a list that holds maps (whose elements the API server may default).
func composite(v any) bool {
	switch t := v.(type) {
	case map[string]any:
		return true
	case []any:
		for _, el := range t {
			if _, ok := el.(map[string]any); ok {
				return true
			}
		}
	}
	return false
}

// ownedWhole: a field set with nothing below the node.
func ownedWhole(set map[string]any) bool {
	return len(set) == 0 || (len(set) == 1 && set["."] != nil)
}

// elementSet finds the set of list element el (at index i) in a list's field set.
func elementSet(set map[string]any, el any, i int) (map[string]any, bool) {
	for k, sub := range set {
		subSet, _ := sub.(map[string]any)
		switch {
		case strings.HasPrefix(k, "k:"):
			var keys map[string]any
			m, ok := el.(map[string]any)
			if !ok || json.Unmarshal([]byte(k[2:]), &keys) != nil {
				continue
			}
			match := true
			for kf, kv := range keys {
				if !sameScalar(m[kf], kv) {
					match = false
					break
				}
			}
			if match {
				return subSet, true
			}
		case strings.HasPrefix(k, "v:"):
			var val any
			if json.Unmarshal([]byte(k[2:]), &val) == nil && sameScalar(el, val) {
				return subSet, true
			}
		case strings.HasPrefix(k, "i:"):
			if k[2:] == strconv.Itoa(i) {
				return subSet, true
			}
		}
	}
	return nil, false
}

// sameScalar compares a live value with one decoded from a field set's key (numbers as float64).
func sameScalar(live, key any) bool {
	if kf, ok := number(key); ok {
		lf, ok := number(live)
		return ok && lf == kf
	}
	return live == key
}

// withoutEmpty is a copy of v without the empty values of maps (nested maps and lists emptied
// by that included); list elements stay, so that positions still count.
func withoutEmpty(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, fv := range t {
			fv = withoutEmpty(fv)
			if isEmpty(fv) {
				continue
			}
			out[k] = fv
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, el := range t {
			out[i] = withoutEmpty(el)
		}
		return out
	}
	if f, ok := number(v); ok {
		// int64 and float64 of the same value print alike.
		return f
	}
	return v
}
