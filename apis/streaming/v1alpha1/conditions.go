package v1alpha1

// Condition types of a Pipeline.
const (
	// ConditionReady is True when every other condition is healthy and processing runs.
	ConditionReady = "Ready"
	// ConditionTopicsReady is True when every stream's topic exists as specified.
	ConditionTopicsReady = "TopicsReady"
	// ConditionExecutorsReady is True when every entity's executors are ready.
	ConditionExecutorsReady = "ExecutorsReady"
	// ConditionAutoscalingReady is True when KEDA scales every autoscaled entity.
	ConditionAutoscalingReady = "AutoscalingReady"
	// ConditionMonitoringReady is True when the Prometheus Operator objects are applied.
	ConditionMonitoringReady = "MonitoringReady"
	// ConditionDegraded is True when the pipeline runs with less than it was asked for.
	ConditionDegraded = "Degraded"
	// ConditionConfigApplied is True when every running pod of every entity applied the
	// entity's current executor.json; False with ConfigPending while a hot change is on its way
	// (the kubelet updates mounted ConfigMaps within about a minute), False with ConfigNotApplied
	// once it has not reached every pod within the operator's bound.
	ConditionConfigApplied = "ConfigApplied"
	// ConditionRetiring is True while entities removed from the spec carry out their removal
	// policy (spec.entities[].removal: drain their inputs, delete their consumer group) before
	// their children are deleted; set from the first retirement on, False once none is left.
	ConditionRetiring = "Retiring"
)

// Condition reasons. A reason names the cause; the message says what to do next.
const (
	ReasonReconciled           = "Reconciled"
	ReasonConfigApplied        = "ConfigApplied"
	ReasonConfigPending        = "ConfigPending"
	ReasonConfigNotApplied     = "ConfigNotApplied"
	ReasonInvalidSpec          = "InvalidSpec"
	ReasonTopicsPending        = "TopicsPending"
	ReasonTopicsFailed         = "TopicsFailed"
	ReasonTopicsNotManaged     = "TopicsNotManaged"
	ReasonStrimziNotInstalled  = "StrimziNotInstalled"
	ReasonKafkaNotFound        = "KafkaNotFound"
	ReasonBootstrapUnknown     = "BootstrapAddressUnknown"
	ReasonExecutorsPending     = "ExecutorsPending"
	ReasonKEDANotInstalled     = "KEDANotInstalled"
	ReasonKEDANotRunning       = "KEDANotRunning"
	ReasonAutoscalingPending   = "AutoscalingPending"
	ReasonAutoscalingNotUsed   = "AutoscalingNotUsed"
	ReasonPrometheusNotFound   = "PrometheusOperatorNotInstalled"
	ReasonMonitoringDisabled   = "MonitoringDisabled"
	ReasonSuspended            = "Suspended"
	ReasonApplyFailed          = "ApplyFailed"
	ReasonRolledBack           = "RolledBack"
	ReasonRollbackFailed       = "RollbackFailed"
	ReasonAsExpected           = "AsExpected"
	ReasonDependenciesDegraded = "DependenciesDegraded"
	ReasonDeletionBlocked      = "DeletionBlocked"
	ReasonRetiring             = "Retiring"
	ReasonRetired              = "Retired"
	// ReasonKafkaAdminFailed: in topics: Direct mode, the operator's own Kafka admin client has
	// no usable credentials, or the broker refuses to authenticate or authorize it.
	ReasonKafkaAdminFailed = "KafkaAdminFailed"
)

// Annotations and labels of the API.
const (
	// AnnotationRollbackTo, set on a Pipeline to a revision number, asks the operator to restore
	// the spec of that ControllerRevision. The operator removes the annotation when done and
	// records the restored spec as a new revision.
	AnnotationRollbackTo = "streaming.millrace.dev/rollback-to"

	LabelPipeline = "streaming.millrace.dev/pipeline"
	LabelEntity   = "streaming.millrace.dev/entity"
	LabelStream   = "streaming.millrace.dev/stream"
)
