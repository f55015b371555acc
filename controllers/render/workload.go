package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// Container, volume and port names of an executor pod.
const (
	ContainerFunction = "function"
	ContainerIO       = "io"
	ContainerState    = "state"

	PortMetrics      = "metrics"
	PortStateMetrics = "state-metrics"

	volumeSockets     = "sockets"
	volumeConfig      = "config"
	volumeTmp         = "tmp"
	volumeState       = "state"
	volumeCredentials = "kafka-credentials"
	volumeClusterCA   = "kafka-cluster-ca"
)

// entityObjects renders the ConfigMap, Service, StatefulSet and (when KEDA scales the entity)
// ScaledObject of entity e.
func entityObjects(p *v1alpha1.Pipeline, e *v1alpha1.Entity, cfg *config.Executor, f Facts) ([]client.Object, error) {
	cm, err := configMap(p, e, cfg)
	if err != nil {
		return nil, err
	}
	sts, err := statefulSet(p, e, cfg, f)
	if err != nil {
		return nil, err
	}
	objs := []client.Object{cm, service(p, e), sts}
	if kedaScaled(e, f) {
		objs = append(objs, scaledObject(p, e, cfg, f))
	}
	return objs, nil
}

func configMap(p *v1alpha1.Pipeline, e *v1alpha1.Entity, cfg *config.Executor) (*corev1.ConfigMap, error) {
	b, err := config.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("marshal executor config: %w", err)
	}
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: objectMeta(p, ConfigMapName(p, e.Name), EntityLabels(p, e.Name)),
		Data:       map[string]string{config.FileName: string(b)},
	}, nil
}

// service is the headless Service of an entity: the StatefulSet's pod DNS domain, and what the
// ServiceMonitor scrapes. Not-ready pods are published so that their metrics, which explain why
// they are not ready, are still scraped.
func service(p *v1alpha1.Pipeline, e *v1alpha1.Entity) *corev1.Service {
	ports := []corev1.ServicePort{{
		Name: PortMetrics, Port: config.DefaultMetricsPort, TargetPort: intstr.FromString(PortMetrics), Protocol: corev1.ProtocolTCP,
	}}
	if stateEnabled(e) {
		ports = append(ports, corev1.ServicePort{
			Name: PortStateMetrics, Port: config.DefaultStateMetricsPort, TargetPort: intstr.FromString(PortStateMetrics), Protocol: corev1.ProtocolTCP,
		})
	}
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(p, ServiceName(p, e.Name), EntityLabels(p, e.Name)),
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			Selector:                 SelectorLabels(p, e.Name),
			Ports:                    ports,
			PublishNotReadyAddresses: true,
		},
	}
}

func statefulSet(p *v1alpha1.Pipeline, e *v1alpha1.Entity, cfg *config.Executor, f Facts) (*appsv1.StatefulSet, error) {
	tmpl := podTemplate(p, e, f)
	hash, err := podTemplateHash(tmpl, cfg)
	if err != nil {
		return nil, err
	}
	tmpl.Annotations[AnnotationPodTemplateHash] = hash
	meta := objectMeta(p, StatefulSetName(p, e.Name), EntityLabels(p, e.Name))
	if n, ok := keptReplicas(e, f); ok {
		meta.Annotations = map[string]string{AnnotationKeptReplicas: strconv.Itoa(int(n))}
	}
	if kedaScaled(e, f) {
		meta.Annotations = map[string]string{AnnotationAutoscaled: "true"}
	}
	if e.Removal.Retires() {
		b, err := json.Marshal(e.Removal)
		if err != nil {
			return nil, fmt.Errorf("encode the removal policy: %w", err)
		}
		if meta.Annotations == nil {
			meta.Annotations = map[string]string{}
		}
		meta.Annotations[AnnotationRemoval] = string(b)
	}
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: meta,
		Spec: appsv1.StatefulSetSpec{
			Replicas:    statefulSetReplicas(p, e, f),
			Selector:    &metav1.LabelSelector{MatchLabels: SelectorLabels(p, e.Name)},
			ServiceName: ServiceName(p, e.Name),
			// Executors do not depend on each other's start order; Parallel lets a scale-up
			// (or a rollout of many pods) happen at once instead of one pod at a time.
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Template:            tmpl,
		},
	}, nil
}

// podTemplateHash hashes everything whose change requires new pods: the pod template and the
// executor configuration, except the parts the executor hot-reloads from the mounted ConfigMap
// (the user config, the Static map with its generation, the inputs' start positions, which
// apply only when the group first reads an input, and the heirs of dropped inputs, which only the
// background deletion of their offsets reads). Putting it on the pod template turns
// such a change into a rollout; leaving the hot-reloaded parts out keeps them from causing one.
func podTemplateHash(tmpl corev1.PodTemplateSpec, cfg *config.Executor) (string, error) {
	restart := *cfg
	restart.UserConfig = nil
	restart.Heirs = nil
	restart.Assignment = config.Assignment{Mode: cfg.Assignment.Mode}
	restart.Inputs = slices.Clone(cfg.Inputs)
	for i := range restart.Inputs {
		restart.Inputs[i].Start = nil
	}
	b, err := json.Marshal(struct {
		Template corev1.PodTemplateSpec `json:"template"`
		Executor config.Executor        `json:"executor"`
	}{tmpl, restart})
	if err != nil {
		return "", fmt.Errorf("hash pod template: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16], nil
}

// podTemplate is an executor pod: the user's function as the main container, and the I/O
// sidecar (and the state sidecar when the entity has state) as native sidecars, i.e. init
// containers that keep running. Native sidecars start before the function and stop after it,
// so the function never runs without its I/O and records in flight are committed on shutdown.
func podTemplate(p *v1alpha1.Pipeline, e *v1alpha1.Entity, f Facts) corev1.PodTemplateSpec {
	ioImage := f.Images.IOSidecar
	if ioImage == "" {
		ioImage = DefaultIOSidecarImage
	}
	stateImage := f.Images.StateSidecar
	if stateImage == "" {
		stateImage = DefaultStateSidecarImage
	}
	auth := authType(p)

	volumes := []corev1.Volume{
		{Name: volumeSockets, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: volumeConfig, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: ConfigMapName(p, e.Name)},
		}}},
		{Name: volumeTmp, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	common := []corev1.VolumeMount{
		{Name: volumeSockets, MountPath: config.DefaultSocketDir},
		{Name: volumeConfig, MountPath: ConfigDir, ReadOnly: true},
		{Name: volumeTmp, MountPath: "/tmp"},
	}
	kafkaMounts := append([]corev1.VolumeMount(nil), common...)
	if auth != v1alpha1.AuthNone {
		volumes = append(volumes, corev1.Volume{Name: volumeCredentials, VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: credentialsSecretName(p)},
		}})
		kafkaMounts = append(kafkaMounts, corev1.VolumeMount{Name: volumeCredentials, MountPath: CredentialsDir, ReadOnly: true})
	}
	if useTLS(p, f) && caDir(p) == ClusterCADir {
		volumes = append(volumes, corev1.Volume{Name: volumeClusterCA, VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{
				SecretName: clusterCASecretName(p),
				Items:      []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
			},
		}})
		kafkaMounts = append(kafkaMounts, corev1.VolumeMount{Name: volumeClusterCA, MountPath: ClusterCADir, ReadOnly: true})
	}

	var sidecars []corev1.Container
	if stateEnabled(e) {
		// The state sidecar starts first: the I/O sidecar needs restored state before it
		// hands records to the function.
		mounts := append([]corev1.VolumeMount(nil), kafkaMounts...)
		if e.State.Backend == v1alpha1.StatePebble {
			volumes = append(volumes, corev1.Volume{Name: volumeState, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
			mounts = append(mounts, corev1.VolumeMount{Name: volumeState, MountPath: StateDir})
		}
		sidecars = append(sidecars, sidecar(ContainerState, stateImage, PortStateMetrics, config.DefaultStateMetricsPort, mounts))
	}
	sidecars = append(sidecars, sidecar(ContainerIO, ioImage, PortMetrics, config.DefaultMetricsPort, kafkaMounts))

	function := corev1.Container{
		Name:    ContainerFunction,
		Image:   e.Image,
		Command: append([]string(nil), e.Command...),
		// The user's variables come first: ours come last and win, since the runtime relies on
		// them.
		Env:             append(append([]corev1.EnvVar(nil), e.Env...), runtimeEnv()...),
		Resources:       *e.Resources.DeepCopy(),
		VolumeMounts:    common,
		SecurityContext: restrictedContainer(),
	}
	function.Env = append(function.Env, corev1.EnvVar{
		Name: EnvFunctionSocket, Value: path.Join(config.DefaultSocketDir, config.DefaultFunctionSocket),
	})

	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{
			Labels: EntityLabels(p, e.Name),
			Annotations: map[string]string{
				// kubectl logs and exec pick the function by default, not a sidecar.
				"kubectl.kubernetes.io/default-container": ContainerFunction,
			},
		},
		Spec: corev1.PodSpec{
			InitContainers: sidecars,
			Containers:     []corev1.Container{function},
			Volumes:        volumes,
			// Executors never call the Kubernetes API.
			AutomountServiceAccountToken: ptr.To(false),
			// Service environment variables are noise for executors, and can collide with the
			// user's own variables.
			EnableServiceLinks: ptr.To(false),
			// No runAsUser, runAsGroup or fsGroup: OpenShift's restricted-v2 SCC assigns them
			// from the namespace's range and rejects fixed ones. runAsNonRoot keeps the
			// restricted Pod Security Standard satisfied; elsewhere the images' numeric USER
			// (65532) applies, and the kubelet refuses an image whose user is root.
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
		},
	}
}

// sidecar is a native sidecar of the executor pod, probed on its metrics port.
func sidecar(name, image, portName string, port int32, mounts []corev1.VolumeMount) corev1.Container {
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString(portName)}},
			PeriodSeconds: 10,
		}
	}
	return corev1.Container{
		Name:          name,
		Image:         image,
		RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		Env:           runtimeEnv(),
		Ports:         []corev1.ContainerPort{{Name: portName, ContainerPort: port, Protocol: corev1.ProtocolTCP}},
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("50m"),
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		}},
		ReadinessProbe:  probe("/readyz"),
		LivenessProbe:   probe("/healthz"),
		VolumeMounts:    mounts,
		SecurityContext: restrictedContainer(),
	}
}

// runtimeEnv is what every container of an executor pod is told: who it is (the pod name
// carries the StatefulSet ordinal, which selects the Static partitions) and where its
// configuration is.
func runtimeEnv() []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: EnvConfigFile, Value: path.Join(ConfigDir, config.FileName)},
	}
}

// restrictedContainer is a container security context that meets the "restricted" Pod Security
// Standard, so executors run in namespaces that enforce it.
func restrictedContainer() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}
