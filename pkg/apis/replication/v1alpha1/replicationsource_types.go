package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SourcePhase is where a ReplicationSource is.
// +kubebuilder:validation:Enum=Pending;InitialSync;Syncing;FinalSync;Verified;Failed
type SourcePhase string

const (
	SourcePending     SourcePhase = "Pending"
	SourceInitialSync SourcePhase = "InitialSync"
	SourceSyncing     SourcePhase = "Syncing"
	SourceFinalSync   SourcePhase = "FinalSync"
	SourceVerified    SourcePhase = "Verified"
	SourceFailed      SourcePhase = "Failed"
)

// SourceVolume is one PVC to replicate.
type SourceVolume struct {
	// PVCName is the app's PVC in this namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	PVCName string `json:"pvcName"`
	// Destination is "host:port" of this volume's receiver (set by the hub
	// once the destination reports it). Until it is set the agent only
	// protects the volume.
	// +optional
	// +kubebuilder:validation:MaxLength=300
	Destination string `json:"destination,omitempty"`
}

// ReplicationSourceSpec is written by the hub.
// +kubebuilder:validation:XValidation:rule="self.migrationID == oldSelf.migrationID",message="migrationID is immutable"
// +kubebuilder:validation:XValidation:rule="self.volumes.map(v, v.pvcName) == oldSelf.volumes.map(v, v.pvcName)",message="the set of volumes is immutable"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.finalSync) || !oldSelf.finalSync || (has(self.finalSync) && self.finalSync)",message="finalSync cannot be withdrawn"
type ReplicationSourceSpec struct {
	// MigrationID identifies the migration (the hub's Migration UID prefix).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	MigrationID string `json:"migrationID"`
	// Volumes to protect and replicate, in this namespace.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=pvcName
	Volumes []SourceVolume `json:"volumes"`
	// TLSSecretName is the Secret (in this namespace) with ca.crt, tls.crt
	// and tls.key: the CA and the sender's client pair.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	TLSSecretName string `json:"tlsSecretName"`
	// ServerName is the name expected in the receiver certificate.
	// +kubebuilder:default=stateful-migration-receiver
	// +optional
	ServerName string `json:"serverName,omitempty"`
	// FinalSync asks for the final sync: once no pod but the movers uses the
	// volumes, the agent tells the running continuous sender to finish
	// (final sync and verification in the process that has tracked every
	// change since the initial copy).
	// +optional
	FinalSync bool `json:"finalSync,omitempty"`
	// QuiesceStartTime is when the hub stopped the app (set with
	// finalSync): the final sync rereads every file changed since, whatever
	// the sender's cached sums say.
	// +optional
	QuiesceStartTime *metav1.Time `json:"quiesceStartTime,omitempty"`
	// BandwidthLimit caps the wire in bytes/s, with an optional K, M or G
	// (powers of 1024) suffix; "0" or unset means none.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]+[KMG]?$`
	BandwidthLimit string `json:"bandwidthLimit,omitempty"`
	// Compress the data on the wire (zstd).
	// +optional
	Compress bool `json:"compress,omitempty"`
	// FullVerify makes the final sync reread every byte on both sides.
	// +optional
	FullVerify bool `json:"fullVerify,omitempty"`
	// MoverResources of the sender pods; unset parts are derived from the
	// volume's size.
	// +optional
	MoverResources *corev1.ResourceRequirements `json:"moverResources,omitempty"`
	// ReleaseSource, when true at deletion, restores each PV's original
	// reclaim policy (so that a Delete policy can then reclaim it). Left
	// false, PVs stay Retain after cleanup: nothing is released silently.
	// +optional
	ReleaseSource bool `json:"releaseSource,omitempty"`
	// HubVerified is set by the hub once it compared both sides' digests and
	// they matched: the app is leaving this cluster for good. Only then does
	// the agent label the PVCs moved-out (reusable by a migration back); a
	// source removed without it drops any moved-out label of this migration.
	// +optional
	HubVerified bool `json:"hubVerified,omitempty"`
	// MoverImage overrides the mover image (default: the agent's image).
	// +optional
	MoverImage string `json:"moverImage,omitempty"`
	// PreQuiesceHook, once set, is run once in the app's pods (the hub sets
	// it when the copy has caught up, before it stops the app here).
	// +optional
	PreQuiesceHook *Hook `json:"preQuiesceHook,omitempty"`
}

// SourceVolumeStatus is one volume's protection and progress.
type SourceVolumeStatus struct {
	PVCName string `json:"pvcName"`
	// PersistentVolumeName is the PV bound to the PVC.
	// +optional
	PersistentVolumeName string `json:"persistentVolumeName,omitempty"`
	// OriginalReclaimPolicy is the PV's reclaim policy before protection.
	// +optional
	OriginalReclaimPolicy corev1.PersistentVolumeReclaimPolicy `json:"originalReclaimPolicy,omitempty"`
	// Protected is true once the PV is Retain and the PVC has the finalizer.
	// +optional
	Protected bool `json:"protected,omitempty"`
	// Node the sender runs on (the app pod's node for RWO volumes).
	// +optional
	Node string `json:"node,omitempty"`
	// +optional
	Phase SourcePhase `json:"phase,omitempty"`
	// +optional
	BytesTotal int64 `json:"bytesTotal,omitempty"`
	// +optional
	BytesCopied int64 `json:"bytesCopied,omitempty"`
	// +optional
	LagBytes int64 `json:"lagBytes,omitempty"`
	// +optional
	Digest string `json:"digest,omitempty"`
	// FinalSyncCold is true when the final sync ran in a sender that had
	// not caught up before it was asked to finish (its pod or node
	// restarted): it rescanned and rehashed the whole volume.
	// +optional
	FinalSyncCold bool `json:"finalSyncCold,omitempty"`
	// FinalPassFull is true when the final pass scanned the whole volume
	// instead of what inotify reported changed (a filesystem it does not
	// see whole, events lost, a full verification, or UnseenChange).
	// +optional
	FinalPassFull bool `json:"finalPassFull,omitempty"`
	// UnseenChange is a path a periodic rescan found changed with no
	// inotify event for it: from then on every final pass scans it all.
	// +optional
	UnseenChange string `json:"unseenChange,omitempty"`
}

// ReplicationSourceStatus is written by the agent.
type ReplicationSourceStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Phase SourcePhase `json:"phase,omitempty"`
	// Protected is true once every volume is protected.
	// +optional
	Protected bool `json:"protected,omitempty"`
	// PodsUsingVolumes counts pods, other than the movers, that mount a
	// source PVC and have not terminated.
	// +optional
	PodsUsingVolumes int32 `json:"podsUsingVolumes"`
	// +optional
	BytesTotal int64 `json:"bytesTotal,omitempty"`
	// +optional
	BytesCopied int64 `json:"bytesCopied,omitempty"`
	// LagBytes is what the destination does not have yet.
	// +optional
	LagBytes int64 `json:"lagBytes,omitempty"`
	// LagSeconds is how old the destination's copy is, rounded up.
	// +optional
	LagSeconds int64 `json:"lagSeconds,omitempty"`
	// Throughput in bytes/s over all volumes.
	// +optional
	Throughput int64 `json:"throughput,omitempty"`
	// EstimatedFinalSyncMillis is the senders' estimate of the final sync
	// and its verification (the slowest volume), plus the time to signal them.
	// +optional
	EstimatedFinalSyncMillis int64 `json:"estimatedFinalSyncMillis,omitempty"`
	// FinalPassFull and UnseenChange: of any volume (SourceVolumeStatus).
	// +optional
	FinalPassFull bool `json:"finalPassFull,omitempty"`
	// +optional
	UnseenChange string `json:"unseenChange,omitempty"`
	// FinalSyncCold: a volume's final sync ran in a restarted sender.
	// +optional
	FinalSyncCold bool `json:"finalSyncCold,omitempty"`
	// Digest over all volumes after the verified final sync (same rule as
	// the destination's).
	// +optional
	Digest string `json:"digest,omitempty"`
	// MovedOut: with spec.hubVerified, every PVC carries the moved-out label.
	// +optional
	MovedOut bool `json:"movedOut,omitempty"`
	// +optional
	LastError string `json:"lastError,omitempty"`
	// PreQuiesceHook is what became of spec.preQuiesceHook.
	// +optional
	PreQuiesceHook *HookStatus `json:"preQuiesceHook,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=pvcName
	Volumes []SourceVolumeStatus `json:"volumes,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ReplicationSource protects the app's volumes on the source cluster and
// sends them to the destination.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rsrc,categories=stateful-migration
// +kubebuilder:printcolumn:name="MIGRATION",type=string,JSONPath=`.spec.migrationID`
// +kubebuilder:printcolumn:name="PHASE",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="PROTECTED",type=boolean,JSONPath=`.status.protected`
// +kubebuilder:printcolumn:name="COPIED",type=integer,JSONPath=`.status.bytesCopied`
// +kubebuilder:printcolumn:name="LAG",type=integer,JSONPath=`.status.lagBytes`
// +kubebuilder:printcolumn:name="FINAL",type=boolean,JSONPath=`.spec.finalSync`
// +kubebuilder:printcolumn:name="DIGEST",type=string,JSONPath=`.status.digest`,priority=1
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type ReplicationSource struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ReplicationSourceSpec   `json:"spec"`
	Status ReplicationSourceStatus `json:"status,omitempty"`
}

// ReplicationSourceList is a list of ReplicationSources.
// +kubebuilder:object:root=true
type ReplicationSourceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ReplicationSource `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ReplicationSource{}, &ReplicationSourceList{})
}
