package pipeline

import (
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/render"
)

// Scheme holds the typed kinds the operator reads or writes, and no others: a smaller scheme is
// a smaller operator. Composed operators' kinds (ScaledObject, ServiceMonitor, KafkaTopic reads)
// are handled as unstructured objects, so the operator starts whether or not their CRDs exist.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv1.AddToScheme, coordinationv1.AddToScheme,
		apiextensionsv1.AddToScheme, v1alpha1.AddToScheme, strimzi.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// CacheOptions make the cache hold only Millrace's own children of the kinds every cluster has
// many of (StatefulSets, ConfigMaps, Services, ControllerRevisions), selected by the managed-by
// label, so the operator's memory grows with its Pipelines rather than with the cluster. An empty
// namespace watches all namespaces.
func CacheOptions(namespace string) cache.Options {
	ours := labels.SelectorFromSet(labels.Set{render.LabelManagedBy: render.ValueManagedBy})
	o := cache.Options{
		// Managed fields are often the larger part of an object and the operator never reads
		// them: server-side apply computes ownership on the server.
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.StatefulSet{}:        {Label: ours},
			&corev1.ConfigMap{}:          {Label: ours},
			&corev1.Service{}:            {Label: ours},
			&appsv1.ControllerRevision{}: {Label: ours},
		},
	}
	if namespace != "" {
		o.DefaultNamespaces = map[string]cache.Config{namespace: {}}
	}
	return o
}
