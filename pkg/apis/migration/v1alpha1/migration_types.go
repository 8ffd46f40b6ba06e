package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// MigrationPhase is the step a Migration is at (docs/protocol.md, "Sequencing").
// +kubebuilder:validation:Enum=Pending;Preparing;InitialSync;Syncing;Quiescing;FinalSync;FailingOver;Launching;Completed;Failed;RollingBack;RolledBack
type MigrationPhase string

const (
	PhasePending     MigrationPhase = "Pending"
	PhasePreparing   MigrationPhase = "Preparing"
	PhaseInitialSync MigrationPhase = "InitialSync"
	PhaseSyncing     MigrationPhase = "Syncing"
	PhaseQuiescing   MigrationPhase = "Quiescing"
	PhaseFinalSync   MigrationPhase = "FinalSync"
	// PhaseFailingOver: a standby whose source cluster is lost is promoted
	// (docs/dr.md): the lost cluster is out of the decision, the standby's
	// volumes are rolled back to their last point and checked.
	PhaseFailingOver MigrationPhase = "FailingOver"
	PhaseLaunching   MigrationPhase = "Launching"
	PhaseCompleted   MigrationPhase = "Completed"
	PhaseFailed      MigrationPhase = "Failed"
	PhaseRollingBack MigrationPhase = "RollingBack"
	PhaseRolledBack  MigrationPhase = "RolledBack"
)

// IsFinished is true once the sequencing controller has nothing left to do.
func (p MigrationPhase) IsFinished() bool {
	return p == PhaseCompleted || p == PhaseFailed || p == PhaseRolledBack
}

// HoldsApp is true in the phases where the app runs on neither cluster or is
// being moved back: un-enrolling then would let the scheduler start it on
// unverified data.
func (p MigrationPhase) HoldsApp() bool {
	switch p {
	case PhaseQuiescing, PhaseFinalSync, PhaseFailingOver, PhaseLaunching, PhaseRollingBack:
		return true
	}
	return false
}

// MigrationSpec is one (source -> destination) move, written once by the hub.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable"
// +kubebuilder:validation:XValidation:rule="self.sourceCluster != self.destinationCluster",message="sourceCluster and destinationCluster must differ"
type MigrationSpec struct {
	// PolicyName is the MigrationPolicy, in this namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	PolicyName string `json:"policyName"`
	// PlacementName is the enrolled Placement, in this namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	PlacementName string `json:"placementName"`
	// SourceCluster is the ManagedCluster the app leaves.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	SourceCluster string `json:"sourceCluster"`
	// DestinationCluster is the ManagedCluster the app moves to.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	DestinationCluster string `json:"destinationCluster"`
	// Standby makes this a disaster-recovery standby (the policy's
	// spec.standby): it replicates to DestinationCluster, committing each
	// pass whole there, and never cuts over; the app stays where it runs.
	// +optional
	Standby bool `json:"standby,omitempty"`
}

// Progress of the copy, summarised from the agents' reports.
type Progress struct {
	// +optional
	// +kubebuilder:validation:Minimum=0
	BytesTotal int64 `json:"bytesTotal,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	BytesCopied int64 `json:"bytesCopied,omitempty"`
	// Percent of BytesTotal copied.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percent int32 `json:"percent,omitempty"`
	// LagBytes not yet copied to the destination.
	// +optional
	// +kubebuilder:validation:Minimum=0
	LagBytes int64 `json:"lagBytes,omitempty"`
	// LagSeconds: age of the oldest change not yet copied.
	// +optional
	// +kubebuilder:validation:Minimum=0
	LagSeconds int64 `json:"lagSeconds,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	ThroughputBytesPerSecond int64 `json:"throughputBytesPerSecond,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	FilesTotal int64 `json:"filesTotal,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	FilesCopied int64 `json:"filesCopied,omitempty"`
	// LastReportTime of the agent report this summarises.
	// +optional
	LastReportTime *metav1.Time `json:"lastReportTime,omitempty"`
	// Copied, Lag and Rate restate the figures above in human units for
	// kubectl get ("620MiB/650MiB", "30MiB 2s", "95MiB/s").
	// +optional
	Copied string `json:"copied,omitempty"`
	// +optional
	Lag string `json:"lag,omitempty"`
	// +optional
	Rate string `json:"rate,omitempty"`
}

// Timings of the cutover; Downtime = Termination + FinalSync + Launch.
type Timings struct {
	// QuiesceStart: the old cluster was dropped from the decision.
	// +optional
	QuiesceStart *metav1.Time `json:"quiesceStart,omitempty"`
	// LaunchStart: the new cluster was added to the decision.
	// +optional
	LaunchStart *metav1.Time `json:"launchStart,omitempty"`
	// Termination is T_term: last source pod gone - quiesce start.
	// +optional
	Termination *metav1.Duration `json:"termination,omitempty"`
	// FinalSync is T_copy: the final sync and its verification.
	// +optional
	FinalSync *metav1.Duration `json:"finalSync,omitempty"`
	// Launch is T_launch: app Available - launch start.
	// +optional
	Launch *metav1.Duration `json:"launch,omitempty"`
	// Downtime is T_down, the sum of the three.
	// +optional
	Downtime *metav1.Duration `json:"downtime,omitempty"`
	// Summary restates them rounded, for kubectl get:
	// "3.2s (term 0.5s, copy 0.7s, launch 2.0s)".
	// +optional
	Summary string `json:"summary,omitempty"`
}

// HooksStatus is what became of the policy's hooks in the current attempt.
type HooksStatus struct {
	// PreQuiesce ran on the source, before the app was stopped there (its
	// time is not in the downtime: the app served meanwhile).
	// +optional
	PreQuiesce *replv1.HookStatus `json:"preQuiesce,omitempty"`
	// PostLaunch ran on the destination; T_launch ends when it succeeds.
	// +optional
	PostLaunch *replv1.HookStatus `json:"postLaunch,omitempty"`
}

// Condition types of a Migration, owned by the sequencing controller.
const (
	// ConditionSucceeded is True once Completed, False once Failed or RolledBack.
	ConditionSucceeded = "Succeeded"
	// ConditionAdmitted is True once an attempt passed the hub's checks
	// (created by its policy, source actual, destination desired, clusters
	// bound, volume namespaces owned), False with the reason when refused.
	ConditionAdmitted = "Admitted"
	// ConditionFinalSyncInRunningSender is True when the final sync ran in
	// the sender that had tracked every change since the initial copy (it
	// costs what changed), False (reason SenderRestarted) when that sender
	// was lost and a new one rescanned and rehashed the whole volume while
	// the app was down.
	ConditionFinalSyncInRunningSender = "FinalSyncInRunningSender"
)

// MigrationStatus is written by the hub sequencing controller.
type MigrationStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase of the move; empty means Pending.
	// +optional
	Phase MigrationPhase `json:"phase,omitempty"`
	// PhaseTransitionTime is when Phase last changed (phase timeouts count from it).
	// +optional
	PhaseTransitionTime *metav1.Time `json:"phaseTransitionTime,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Reason is a CamelCase word for the last failure or wait.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message is for humans.
	// +optional
	Message string `json:"message,omitempty"`
	// Attempts started so far.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Attempts int32 `json:"attempts,omitempty"`
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// +optional
	Progress Progress `json:"progress,omitempty"`
	// +optional
	Timings Timings `json:"timings,omitempty"`
	// Hooks: what became of the policy's hooks in this attempt.
	// +optional
	Hooks HooksStatus `json:"hooks,omitempty"`
	// Digest of the verified tree, equal on source and destination.
	// +optional
	Digest string `json:"digest,omitempty"`
	// CredentialsFingerprint is the SHA-256 of the CA the hub minted for
	// this migration: a credentials Secret holding another CA is refused.
	// +optional
	CredentialsFingerprint string `json:"credentialsFingerprint,omitempty"`
	// Standby is a standby's last point and its recovery point objective.
	// +optional
	Standby *StandbyStatus `json:"standby,omitempty"`
	// Failover of a standby, once it began.
	// +optional
	Failover *FailoverStatus `json:"failover,omitempty"`
	// Source is what this attempt asked of the source's agent and keeps
	// asking, whatever the agents report later.
	// +optional
	Source *SourceRequest `json:"source,omitempty"`
}

// SourceRequest is what an attempt asked of the source's agent.
type SourceRequest struct {
	// Endpoints are the receivers the senders were pointed at
	// ("<namespace>/<pvc>" → "host:port"), recorded once the destination
	// reported one for every volume.
	// +optional
	Endpoints map[string]string `json:"endpoints,omitempty"`
	// Released: releaseSource was asked (sourceDataPolicy Delete, after the
	// app ran on the destination); never taken back.
	// +optional
	Released bool `json:"released,omitempty"`
}

// FailoverAnnotation on a standby Migration, set by the placement
// controller when the Placement moves the app from its cluster, lost, to
// the standby's: the sequencing controller fails over to the standby.
const FailoverAnnotation = "migration.open-cluster-management.io/failover"

// FailoverStatus records a failover: the point the app restarted from.
type FailoverStatus struct {
	// FencedCluster is the lost cluster, removed from the decision.
	FencedCluster string `json:"fencedCluster"`
	// PointTime and PointDigest: the standby's point the app starts from.
	// +optional
	PointTime *metav1.Time `json:"pointTime,omitempty"`
	// +optional
	PointDigest string `json:"pointDigest,omitempty"`
	// PointExact: each volume holds what its source held at one instant
	// (else each file as it was at some instant of the last pass).
	// +optional
	PointExact bool `json:"pointExact,omitempty"`
	// RPOSeconds: the age of that point when the failover began.
	// +optional
	// +kubebuilder:validation:Minimum=0
	RPOSeconds int64 `json:"rpoSeconds,omitempty"`
}

// StandbyStatus is what a failover to a standby would start from now.
type StandbyStatus struct {
	// PointTime is when the standby last committed a whole pass of every
	// volume (the oldest of the volumes' points).
	// +optional
	PointTime *metav1.Time `json:"pointTime,omitempty"`
	// PointDigest is the digest of that point over all volumes.
	// +optional
	PointDigest string `json:"pointDigest,omitempty"`
	// PointExact: each volume's point is what its source held at one
	// instant; false, each file is as it was at some instant of the pass
	// (MigrationPolicy spec.standby.points).
	// +optional
	PointExact bool `json:"pointExact,omitempty"`
	// RPOSeconds is the age of that point when last observed: the writes
	// a failover then would lose.
	// +optional
	// +kubebuilder:validation:Minimum=0
	RPOSeconds int64 `json:"rpoSeconds,omitempty"`
	// LagBytes is what the source has not sent yet.
	// +optional
	// +kubebuilder:validation:Minimum=0
	LagBytes int64 `json:"lagBytes,omitempty"`
}

// Migration records one move of an enrolled app from one cluster to another.
// The policy controller creates it (Pending); the sequencing controller drives it.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mig,categories=ocm
// +kubebuilder:printcolumn:name="SOURCE",type=string,JSONPath=`.spec.sourceCluster`
// +kubebuilder:printcolumn:name="DESTINATION",type=string,JSONPath=`.spec.destinationCluster`
// +kubebuilder:printcolumn:name="PHASE",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="PROGRESS",type=integer,JSONPath=`.status.progress.percent`,description="percent of bytes copied"
// +kubebuilder:printcolumn:name="COPIED",type=string,JSONPath=`.status.progress.copied`,description="bytes copied of the total"
// +kubebuilder:printcolumn:name="LAG",type=string,JSONPath=`.status.progress.lag`,description="not yet copied, and the age of the oldest change"
// +kubebuilder:printcolumn:name="DOWNTIME",type=string,JSONPath=`.status.timings.summary`
// +kubebuilder:printcolumn:name="REASON",type=string,JSONPath=`.status.reason`,priority=1
// +kubebuilder:printcolumn:name="RATE",type=string,JSONPath=`.status.progress.rate`,priority=1
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type Migration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MigrationSpec   `json:"spec"`
	Status MigrationStatus `json:"status,omitempty"`
}

// CurrentPhase treats an empty phase as Pending.
func (m *Migration) CurrentPhase() MigrationPhase {
	if m.Status.Phase == "" {
		return PhasePending
	}
	return m.Status.Phase
}

// MigrationList is a list of Migration.
// +kubebuilder:object:root=true
type MigrationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Migration `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Migration{}, &MigrationList{})
}
