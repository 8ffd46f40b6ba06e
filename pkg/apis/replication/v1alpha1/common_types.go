package v1alpha1

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
