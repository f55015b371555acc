package validate_test

import (
	"context"
	"os"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/testenv"
	"github.com/millrace-dev/millrace/controllers/validate"
	vt "github.com/millrace-dev/millrace/controllers/validate/validatetest"
)

var apiServer client.Client

func TestMain(m *testing.M) {
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		// The API server tests are the point of this package; never pass without them.
		os.Stderr.WriteString("start envtest: " + err.Error() + "\n")
		os.Exit(1)
	}
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	apiServer, err = client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		os.Stderr.WriteString("stop envtest: " + err.Error() + "\n")
	}
	os.Exit(code)
}

// TestAPIServerRejectsInvalidPipelines applies each invalid Pipeline to a real API server and
// checks the message names the field, then checks that the offline Schema check gives the very same
// errors.
func TestAPIServerRejectsInvalidPipelines(t *testing.T) {
	ctx := context.Background()
	for _, tc := range vt.InvalidCases() {
		t.Run(tc.Reason, func(t *testing.T) {
			err := apiServer.Create(ctx, tc.Pipeline.DeepCopy(), client.DryRunAll)
			if err == nil {
				t.Fatalf("%s: the API server accepted the Pipeline", tc.Reason)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("%s: want an Invalid error, got %v", tc.Reason, err)
			}
			if !strings.Contains(err.Error(), tc.Want) {
				t.Errorf("%s: API server message\n  %s\ndoes not contain\n  %s", tc.Reason, err, tc.Want)
			}
			offline := validate.Schema(ctx, tc.Pipeline, nil)
			if len(offline) == 0 {
				t.Fatalf("%s: validate.Schema accepted what the API server rejected: %v", tc.Reason, err)
			}
			if got := offline.ToAggregate().Error(); !strings.Contains(err.Error(), got) {
				t.Errorf("%s: offline and API server messages differ\n  offline: %s\n  server:  %s", tc.Reason, got, err)
			}
		})
	}
}

func TestAPIServerRejectsInvalidUpdates(t *testing.T) {
	ctx := context.Background()
	for i, tc := range vt.InvalidUpdates() {
		t.Run(tc.Reason, func(t *testing.T) {
			old := tc.Old.DeepCopy()
			old.Name = old.Name + "-update-" + string(rune('a'+i))
			if err := apiServer.Create(ctx, old); err != nil {
				t.Fatalf("create the old Pipeline: %v", err)
			}
			t.Cleanup(func() { _ = apiServer.Delete(ctx, old) })
			updated := tc.New.DeepCopy()
			updated.Name = old.Name
			updated.ResourceVersion = old.ResourceVersion
			err := apiServer.Update(ctx, updated)
			if err == nil {
				t.Fatalf("%s: the API server accepted the update", tc.Reason)
			}
			if !strings.Contains(err.Error(), tc.Want) {
				t.Errorf("%s: API server message\n  %s\ndoes not contain\n  %s", tc.Reason, err, tc.Want)
			}
			offline := validate.Schema(ctx, tc.New, tc.Old)
			if got := offline.ToAggregate(); got == nil || !strings.Contains(err.Error(), got.Error()) {
				t.Errorf("%s: offline and API server messages differ\n  offline: %v\n  server:  %s", tc.Reason, got, err)
			}
		})
	}
}

func TestAPIServerAcceptsValidPipelines(t *testing.T) {
	ctx := context.Background()
	for name, p := range vt.ValidPipelines() {
		t.Run(name, func(t *testing.T) {
			if err := apiServer.Create(ctx, p.DeepCopy(), client.DryRunAll); err != nil {
				t.Errorf("%s: the API server rejected a valid Pipeline: %v", name, err)
			}
			if errs := validate.Pipeline(ctx, p, nil); len(errs) > 0 {
				t.Errorf("%s: validate.Pipeline rejected a valid Pipeline: %v", name, errs)
			}
		})
	}
}

func TestAPIServerAcceptsValidUpdates(t *testing.T) {
	ctx := context.Background()
	p := vt.Pipeline()
	p.Name = "grows"
	if err := apiServer.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = apiServer.Delete(ctx, p) })
	p.Spec.Streams[0].Partitions = 12
	p.Spec.Entities[0].Replicas = ptr.To[int32](4)
	if err := apiServer.Update(ctx, p); err != nil {
		t.Fatalf("growing partitions must be allowed: %v", err)
	}
}

func TestDefaultMatchesAPIServer(t *testing.T) {
	ctx := context.Background()
	p := vt.Pipeline()
	p.Name = "defaults"
	stored := p.DeepCopy()
	if err := apiServer.Create(ctx, stored); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = apiServer.Delete(ctx, stored) })
	offline, err := validate.Default(p)
	if err != nil {
		t.Fatal(err)
	}
	if !equalSpecs(t, offline.Spec, stored.Spec) {
		t.Errorf("validate.Default differs from the API server's defaults")
	}
}
