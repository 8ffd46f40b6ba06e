package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Condition types on the replication objects themselves.
const (
	// ConditionReady: the object's work is progressing (False with a reason on failure).
	ConditionReady = "Ready"
	// ConditionVolumesProtected (source): every source PV is Retain and every
	// source PVC carries the protection finalizer.
	ConditionVolumesProtected = "VolumesProtected"
	// ConditionVolumesInUse (source): some pod other than the movers mounts a source PVC.
	ConditionVolumesInUse = "VolumesInUse"
)

// Outcome points at the status fields every replication object's controller
// sets around its own steps: the error the user reads, the conditions and
// the generation they describe.
// +kubebuilder:object:generate=false
type Outcome struct {
	LastError          *string
	Conditions         *[]metav1.Condition
	ObservedGeneration *int64
}

// Outcome of a ReplicationSource.
func (r *ReplicationSource) Outcome() Outcome {
	return Outcome{&r.Status.LastError, &r.Status.Conditions, &r.Status.ObservedGeneration}
}

// Outcome of a ReplicationDestination.
func (r *ReplicationDestination) Outcome() Outcome {
	return Outcome{&r.Status.LastError, &r.Status.Conditions, &r.Status.ObservedGeneration}
}

// ID of the migration a ReplicationSource serves.
func (r *ReplicationSource) ID() string { return r.Spec.MigrationID }

// ID of the migration a ReplicationDestination serves.
func (r *ReplicationDestination) ID() string { return r.Spec.MigrationID }
