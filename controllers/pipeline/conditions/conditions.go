// Package conditions sets the conditions of a Pipeline's status through one helper, so that every
// condition carries the generation it describes and a transition time that only moves when the
// status really changes.
package conditions

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Set records a condition, stamping observedGeneration. LastTransitionTime moves only when the
// condition's status changes, so a condition never flaps on reconciles that change nothing.
func Set(conds *[]metav1.Condition, generation int64, condType string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: generation,
	})
}

// True sets a True condition.
func True(conds *[]metav1.Condition, generation int64, condType, reason, message string) {
	Set(conds, generation, condType, metav1.ConditionTrue, reason, message)
}

// False sets a False condition.
func False(conds *[]metav1.Condition, generation int64, condType, reason, message string) {
	Set(conds, generation, condType, metav1.ConditionFalse, reason, message)
}

// IsTrue reports whether condType is True.
func IsTrue(conds []metav1.Condition, condType string) bool {
	return meta.IsStatusConditionTrue(conds, condType)
}

// Get returns the condition of condType, or nil.
func Get(conds []metav1.Condition, condType string) *metav1.Condition {
	return meta.FindStatusCondition(conds, condType)
}
