package pipeline

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestProject(t *testing.T) {
	live := map[string]any{
		"metadata": map[string]any{"labels": map[string]any{"a": "1", "theirs": "x"}},
		"spec": map[string]any{
			"replicas": int64(3),
			"template": map[string]any{"spec": map[string]any{
				"containers": []any{
					map[string]any{"name": "injected", "image": "sidecar:1"},
					map[string]any{"name": "fn", "image": "img:1", "terminationMessagePath": "/dev/termination-log",
						"env":   []any{map[string]any{"name": "POD", "valueFrom": map[string]any{"fieldRef": map[string]any{"apiVersion": "v1", "fieldPath": "metadata.name"}}}},
						"ports": []any{map[string]any{"containerPort": int64(8080), "protocol": "TCP"}}},
				},
				"finalizers": []any{"a", "b"},
			}},
		},
	}
	set := `{"f:metadata":{"f:labels":{"f:a":{}}},"f:spec":{"f:template":{"f:spec":{
		"f:containers":{"k:{\"name\":\"fn\"}":{".":{},"f:name":{},"f:image":{},
			"f:env":{"k:{\"name\":\"POD\"}":{".":{},"f:name":{},"f:valueFrom":{"f:fieldRef":{}}}},
			"f:ports":{"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:protocol":{}}}}},
		"f:finalizers":{"v:\"b\"":{}}}}}}`
	var fields map[string]any
	if err := json.Unmarshal([]byte(set), &fields); err != nil {
		t.Fatal(err)
	}
	var leaves []ownedLeaf
	got := project(live, fields, nil, &leaves)
	want := map[string]any{
		"metadata": map[string]any{"labels": map[string]any{"a": "1"}},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "fn", "image": "img:1",
				"env":   []any{map[string]any{"name": "POD", "valueFrom": map[string]any{}}},
				"ports": []any{map[string]any{"containerPort": int64(8080), "protocol": "TCP"}}}},
			"finalizers": []any{"b"},
		}}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("the owned values (-want +got):\n%s", d)
	}
	wantLeaves := []ownedLeaf{{
		Path:  []any{"spec", "template", "spec", "containers", 0, "env", 0, "valueFrom", "fieldRef"},
		Value: map[string]any{"apiVersion": "v1", "fieldPath": "metadata.name"},
	}}
	if d := cmp.Diff(wantLeaves, leaves); d != "" {
		t.Errorf("the leaves (-want +got):\n%s", d)
	}

	// The applied configuration that made these fields: the leaf's default (apiVersion) is
	// not in it, and it is still up to date; a different fieldPath is not.
	applied := map[string]any{
		"apiVersion": "apps/v1", "kind": "StatefulSet",
		"metadata": map[string]any{"name": "x", "labels": map[string]any{"a": "1"}},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "fn", "image": "img:1", "resources": map[string]any{},
				"env":   []any{map[string]any{"name": "POD", "valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "metadata.name"}}}},
				"ports": []any{map[string]any{"containerPort": int64(8080), "protocol": "TCP"}}}},
			"finalizers": []any{"b"},
		}}},
	}
	digest := appliedDigest(got.(map[string]any))
	// Leaf paths index the owned values; in the applied configuration the container is the first too.
	rest, ok := withoutLeaves(applied, leaves)
	if !ok || appliedDigest(rest) != digest {
		t.Errorf("the configuration that made the owned values does not match them (covers %v)", ok)
	}
	applied["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["env"].([]any)[0].(map[string]any)["valueFrom"] =
		map[string]any{"fieldRef": map[string]any{"fieldPath": "metadata.namespace"}}
	if _, ok := withoutLeaves(applied, leaves); ok {
		t.Error("a changed fieldRef still matches the owned leaf")
	}
}
