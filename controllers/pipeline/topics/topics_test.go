package topics

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

func TestEnsureCreatesGrowsNeverShrinks(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	bootstrap := strings.Join(cluster.ListenAddrs(), ",")
	a := NewAdmin()
	defer a.Close()
	ctx := context.Background()

	cases := []struct {
		reason string
		spec   Spec
		want   int32
	}{
		{reason: "a missing topic is created", spec: Spec{Name: "t1", Partitions: 2}, want: 2},
		{reason: "more partitions are added", spec: Spec{Name: "t1", Partitions: 4}, want: 4},
		{reason: "fewer partitions never shrink the topic", spec: Spec{Name: "t1", Partitions: 1}, want: 4},
	}
	for _, c := range cases {
		if _, err := a.Ensure(ctx, Cluster{Bootstrap: bootstrap}, []Spec{c.spec}); err != nil {
			t.Fatalf("%s: %v", c.reason, err)
		}
		got, err := a.Exists(ctx, Cluster{Bootstrap: bootstrap}, "t1")
		if err != nil {
			t.Fatal(err)
		}
		if got["t1"] != c.want {
			t.Errorf("%s: partitions = %d, want %d", c.reason, got["t1"], c.want)
		}
	}
	if err := a.Delete(ctx, Cluster{Bootstrap: bootstrap}, "t1", "never-existed"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	got, _ := a.Exists(ctx, Cluster{Bootstrap: bootstrap}, "t1")
	if _, ok := got["t1"]; ok {
		t.Error("t1 still exists after Delete")
	}
}
