package v1alpha1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// EndpointType is how the destination's receiver is exposed to the source mover.
// +kubebuilder:validation:Enum=LoadBalancer;NodePort;ClusterIP
type EndpointType string

const (
	EndpointLoadBalancer EndpointType = "LoadBalancer"
	EndpointNodePort     EndpointType = "NodePort"
	EndpointClusterIP    EndpointType = "ClusterIP"
)

// Verification says what the final sync rereads to prove both sides equal.
// +kubebuilder:validation:Enum=Changed;Full
type Verification string

const (
	// VerifyChanged rereads what may have changed since it was last hashed
	// (the default: the downtime follows what changed).
	VerifyChanged Verification = "Changed"
	// VerifyFull rereads every byte on both sides while the app is down:
	// it also catches what no timestamp shows (a write through mmap to an
	// already dirty page, corruption below the filesystem), at the cost of
	// a downtime that grows with the volume.
	VerifyFull Verification = "Full"
)

// SourceDataPolicy says what happens to the source volumes after a successful move.
// +kubebuilder:validation:Enum=Retain;Delete
type SourceDataPolicy string

const (
	SourceDataRetain SourceDataPolicy = "Retain"
	SourceDataDelete SourceDataPolicy = "Delete"
)

// PlacementRef names a Placement in the policy's namespace.
type PlacementRef struct {
	// Name of the Placement.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// VolumeSelection names PVCs of one namespace on the source cluster. The
// namespace must be one the app's ManifestWorkReplicaSets deliver into
// (docs/tenancy.md). PVCs are named, not selected by label: the hub cannot
// list PVCs on a managed cluster, and a move must not pick up a PVC nobody
// named.
type VolumeSelection struct {
	// Namespace of the PVCs on the managed clusters.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`

	// Names of PVCs.
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Names []string `json:"names"`
}

// StorageClassMapping maps a source storage class to a destination one.
type StorageClassMapping struct {
	// Source storage class name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Source string `json:"source"`
	// Destination storage class name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Destination string `json:"destination"`
}

// Endpoint says how the destination receiver is reached.
type Endpoint struct {
	// Type of the receiver's Service. NodePort is the default because it works
	// wherever the clusters' nodes can reach each other (kind, bare metal, one
	// cloud VPC) without a load-balancer implementation or a multi-cluster
	// network; ClusterIP only suits flat multi-cluster networks (Submariner,
	// Cilium cluster mesh); LoadBalancer needs a provider. Traffic is mutual TLS
	// with per-migration credentials whatever the type.
	// +kubebuilder:default=NodePort
	// +optional
	Type EndpointType `json:"type,omitempty"`

	// ServiceAnnotations are added to the receiver's Service, e.g. to ask a
	// cloud provider for an internal load balancer. Keys under our own
	// prefix are refused: they would be ours to set.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('migration.open-cluster-management.io/') && !k.startsWith('replication.migration.open-cluster-management.io/'))",message="keys under migration.open-cluster-management.io/ are reserved"
	ServiceAnnotations map[string]string `json:"serviceAnnotations,omitempty"`
}

// Cutover bounds when the app may be stopped on the source.
type Cutover struct {
	// MaxLagBytes: the app is stopped only when the bytes not yet copied are at most this.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=67108864
	// +optional
	MaxLagBytes *int64 `json:"maxLagBytes,omitempty"`

	// MaxEstimatedFinalSync: the app is stopped only when the final sync is
	// estimated (lag / throughput) to take at most this.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="must not be negative"
	// +kubebuilder:default="10s"
	// +optional
	MaxEstimatedFinalSync *metav1.Duration `json:"maxEstimatedFinalSync,omitempty"`
}

// Timeouts bound each phase; a phase that overruns fails the attempt.
// Zero means no limit.
type Timeouts struct {
	// Prepare: destination namespace, PVCs, receiver and endpoint ready.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="must not be negative"
	// +kubebuilder:default="10m"
	// +optional
	Prepare *metav1.Duration `json:"prepare,omitempty"`
	// InitialSync: the first full copy, while the app runs.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="must not be negative"
	// +kubebuilder:default="24h"
	// +optional
	InitialSync *metav1.Duration `json:"initialSync,omitempty"`
	// CatchUp: from initial sync done until lag is under the cutover bounds.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="must not be negative"
	// +kubebuilder:default="1h"
	// +optional
	CatchUp *metav1.Duration `json:"catchUp,omitempty"`
	// FinalSync: from quiesce start until the destination is verified
	// (includes waiting for the app's pods to go away on the source).
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="must not be negative"
	// +kubebuilder:default="10m"
	// +optional
	FinalSync *metav1.Duration `json:"finalSync,omitempty"`
	// Launch: from launch start until the app is Available on the destination.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="must not be negative"
	// +kubebuilder:default="10m"
	// +optional
	Launch *metav1.Duration `json:"launch,omitempty"`
}

// MigrationPolicySpec enrols one Placement.
// +kubebuilder:validation:XValidation:rule="!has(self.standby) || !has(self.standby.placementRef) || self.standby.placementRef.name != self.placementRef.name",message="standby.placementRef must not be the app's Placement"
type MigrationPolicySpec struct {
	// PlacementRef is the user's Placement, in this namespace. Immutable:
	// delete the policy (un-enrol) and create another to govern a different one.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="placementRef is immutable"
	PlacementRef PlacementRef `json:"placementRef"`

	// Volumes are the PVCs that travel with the app.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Volumes []VolumeSelection `json:"volumes"`

	// StorageClassMapping maps source classes to destination classes; an
	// unmapped class is kept as is.
	// +optional
	// +listType=map
	// +listMapKey=source
	// +kubebuilder:validation:MaxItems=64
	StorageClassMapping []StorageClassMapping `json:"storageClassMapping,omitempty"`

	// Endpoint exposes the destination receiver.
	// +kubebuilder:default={}
	// +optional
	Endpoint Endpoint `json:"endpoint,omitempty"`

	// Cutover bounds lag before the app is stopped on the source.
	// +kubebuilder:default={}
	// +optional
	Cutover Cutover `json:"cutover,omitempty"`

	// Timeouts per phase.
	// +kubebuilder:default={}
	// +optional
	Timeouts Timeouts `json:"timeouts,omitempty"`

	// MaxAttempts of one migration before it stays Failed.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=3
	// +optional
	MaxAttempts int32 `json:"maxAttempts,omitempty"`

	// SourceDataPolicy: what happens to the source PVCs once the app is
	// Available on the destination. Retain keeps them (safe default).
	// +kubebuilder:default=Retain
	// +optional
	SourceDataPolicy SourceDataPolicy `json:"sourceDataPolicy,omitempty"`

	// Verification: Changed (default) rereads only what may have changed;
	// Full rereads both volumes whole during the downtime (see docs/mover.md).
	// +kubebuilder:default=Changed
	// +optional
	Verification Verification `json:"verification,omitempty"`

	// MoverResources are the requests and limits of the mover pods on both
	// clusters. What is left unset is derived from the volume's size: the
	// mover's memory is bounded by it (docs/mover.md, "Memory").
	// +optional
	MoverResources *corev1.ResourceRequirements `json:"moverResources,omitempty"`

	// Hooks run commands in the app's pods around the cutover.
	// +optional
	Hooks Hooks `json:"hooks,omitempty"`

	// Standby keeps a disaster-recovery standby of the app's volumes on
	// another cluster while the app runs (docs/dr.md): a Migration with
	// spec.standby that replicates continuously and never cuts over.
	// +optional
	Standby *Standby `json:"standby,omitempty"`
}

// Standby names where a policy keeps its standby: one cluster by name, or
// the clusters a Placement decides.
// +kubebuilder:validation:XValidation:rule="has(self.clusterName) != has(self.placementRef)",message="set one of clusterName and placementRef"
// +kubebuilder:validation:XValidation:rule="!has(self.perFileAfter) || (has(self.points) && self.points == 'Exact')",message="perFileAfter needs points: Exact"
type Standby struct {
	// ClusterName is the ManagedCluster that holds the standby; never the
	// app's own (a standby there is not kept).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	ClusterName string `json:"clusterName,omitempty"`
	// PlacementRef is a Placement of this namespace (not the app's) whose
	// decisions are the clusters a standby may be kept on: the first of
	// them, in name order, that the app does not run on (the one in use is
	// kept while it stays decided). With two or more clusters decided, a
	// failover onto one is followed by a new standby on another.
	// +optional
	PlacementRef *PlacementRef `json:"placementRef,omitempty"`
	// Points says which passes become the standby's point. Exact (the
	// default): only a pass nothing wrote to while it ran, an instant the
	// source really held; an app that writes through every pass keeps its
	// last exact point until perFileAfter. Latest: every pass, so the point
	// is seconds old, but a pass reads files one after another while the
	// app writes, so each file is as it was at some instant of the pass,
	// not all at the same one. status.standby.pointExact tells which the
	// point is (docs/dr.md).
	// +kubebuilder:validation:Enum=Latest;Exact
	// +kubebuilder:default=Exact
	// +optional
	Points StandbyPoints `json:"points,omitempty"`
	// PerFileAfter, with points Exact, takes any pass once the exact point
	// is this old, bounding the RPO of an app that never pauses (and of a
	// volume whose writers the sender cannot all see, e.g. NFS, where no
	// pass is exact). Unset: 5m, the age StatefulMigrationStandbyRPOHigh
	// warns at. 0s: exact points only, however old.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="must not be negative"
	// +optional
	PerFileAfter *metav1.Duration `json:"perFileAfter,omitempty"`
}

// StandbyPoints is which passes a standby keeps as its point.
type StandbyPoints string

const (
	StandbyPointsLatest StandbyPoints = "Latest"
	StandbyPointsExact  StandbyPoints = "Exact"
)

// DefaultPerFileAfter is perFileAfter when unset.
const DefaultPerFileAfter = 5 * time.Minute

// ExactPoints says whether the standby keeps exact points, and the age at
// which it takes any pass instead (0: never).
func (s *Standby) ExactPoints() (bool, time.Duration) {
	if s.Points == StandbyPointsLatest {
		return false, 0
	}
	if s.PerFileAfter == nil {
		return true, DefaultPerFileAfter
	}
	return true, s.PerFileAfter.Duration
}

// Hooks are the app's own steps in a move (docs/hooks.md), as Velero hooks,
// Stork rules or Ramen recipes serve. Each runs in the pods of the policy's
// volume namespaces that mount a moved PVC (narrowed by its selector).
type Hooks struct {
	// PreQuiesce runs on the source once the copy has caught up, while the
	// app still serves, before the app is stopped there: a CHECKPOINT or a
	// flush that makes the app's shutdown (and so the downtime) short. The
	// cutover bounds are checked again after it. If it fails or overruns,
	// the attempt fails with the app still running where it was (retried
	// up to maxAttempts).
	// +optional
	PreQuiesce *replv1.Hook `json:"preQuiesce,omitempty"`
	// PostLaunch runs on the destination once the app's pods there are
	// Ready, and again every few seconds until it succeeds: its success is
	// what "the app is back" means. Until then the Migration is not
	// Completed and no source data is released; past timeouts.launch it says
	// PostLaunchCheckFailed and keeps waiting.
	// +optional
	PostLaunch *replv1.Hook `json:"postLaunch,omitempty"`
}

// Condition types and reasons of a MigrationPolicy.
const (
	// ConditionEnrolled: the Placement's decisions are written by this policy.
	ConditionEnrolled = "Enrolled"
	// ConditionConverged: actual clusters equal desired clusters.
	ConditionConverged = "Converged"
	// ConditionStandby: the standby spec.standby asks for is kept (its
	// Migration named in the message); absent without spec.standby.
	ConditionStandby = "Standby"

	ReasonEnrolled                 = "Enrolled"
	ReasonPlacementNotFound        = "PlacementNotFound"
	ReasonPlacementAlreadyEnrolled = "PlacementAlreadyEnrolled"
	ReasonUnenrolling              = "Unenrolling"
	ReasonUnenrolBlocked           = "UnenrolBlockedByMigration"
	ReasonVolumeNamespaceNotOwned  = "VolumeNamespaceNotOwned"
	// ReasonDataAtRisk: the app's ManifestWorkReplicaSet would let OCM delete
	// a moved PVC (or its namespace) from the old cluster, or could not
	// adopt the PVC pre-created on the new one; the message has the fix.
	ReasonDataAtRisk = "DataAtRisk"

	ReasonActualMatchesDesired = "ActualMatchesDesired"
	ReasonSchedulingPending    = "SchedulingPending"
	ReasonMigrationInProgress  = "MigrationInProgress"
	ReasonMigrationBlocked     = "MigrationBlocked"
	ReasonWaitingForMigration  = "WaitingForMigration"
	// ReasonWaitingForFailover: the app's cluster is lost (not Available)
	// and its standby holds a point: the app stays decided there (the
	// scheduler dropping it does not remove the standby) until the
	// Placement selects the standby's cluster (failover) or it returns.
	ReasonWaitingForFailover = "WaitingForFailover"

	ReasonStandbyKept            = "StandbyKept"
	ReasonStandbyOnAppCluster    = "StandbyOnAppCluster"
	ReasonStandbyWaitingForMove  = "StandbyWaitingForMove"
	ReasonStandbyFailed          = "StandbyFailed"
	ReasonStandbyAppNotOnOneSite = "StandbyNeedsOneCluster"
	// ReasonStandbyNoCluster: spec.standby.placementRef decides no cluster
	// the app does not run on (or the Placement does not exist).
	ReasonStandbyNoCluster = "StandbyNoCluster"
)

// MigrationPolicyStatus is what the hub observed and did.
type MigrationPolicyStatus struct {
	// ObservedGeneration is the spec generation last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Enrolled, Converged.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// DesiredPlacement is the companion Placement the scheduler fills.
	// +optional
	DesiredPlacement string `json:"desiredPlacement,omitempty"`

	// DesiredClusters are the companion Placement's decisions.
	// +optional
	// +listType=set
	DesiredClusters []string `json:"desiredClusters,omitempty"`

	// ActualClusters are the user's Placement's decisions.
	// +optional
	// +listType=set
	ActualClusters []string `json:"actualClusters,omitempty"`

	// ActiveMigrations are the names of Migrations not yet Completed.
	// +optional
	// +listType=set
	ActiveMigrations []string `json:"activeMigrations,omitempty"`
}

// MigrationPolicy enrols a Placement: while it exists, the app's clusters
// change only through migrations that carry its volumes along.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mpol,categories=ocm
// +kubebuilder:printcolumn:name="PLACEMENT",type=string,JSONPath=`.spec.placementRef.name`
// +kubebuilder:printcolumn:name="ENROLLED",type=string,JSONPath=`.status.conditions[?(@.type=="Enrolled")].status`
// +kubebuilder:printcolumn:name="CONVERGED",type=string,JSONPath=`.status.conditions[?(@.type=="Converged")].reason`
// +kubebuilder:printcolumn:name="ACTUAL",type=string,JSONPath=`.status.actualClusters`
// +kubebuilder:printcolumn:name="DESIRED",type=string,JSONPath=`.status.desiredClusters`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type MigrationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MigrationPolicySpec   `json:"spec"`
	Status MigrationPolicyStatus `json:"status,omitempty"`
}

// MigrationPolicyList is a list of MigrationPolicy.
// +kubebuilder:object:root=true
type MigrationPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MigrationPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MigrationPolicy{}, &MigrationPolicyList{})
}
