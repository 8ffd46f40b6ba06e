package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DestinationPhase is where a ReplicationDestination is.
// +kubebuilder:validation:Enum=Preparing;Ready;Receiving;Verified;Failed
type DestinationPhase string

const (
	DestinationPreparing DestinationPhase = "Preparing"
	DestinationReady     DestinationPhase = "Ready"
	DestinationReceiving DestinationPhase = "Receiving"
	DestinationVerified  DestinationPhase = "Verified"
	DestinationFailed    DestinationPhase = "Failed"
)

// EndpointType is how the receivers are exposed to the source cluster.
// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
type EndpointType string

const (
	EndpointClusterIP    EndpointType = "ClusterIP"
	EndpointNodePort     EndpointType = "NodePort"
	EndpointLoadBalancer EndpointType = "LoadBalancer"
)

// DestinationVolume is one PVC to create and fill.
type DestinationVolume struct {
	// PVCName is the PVC's name, the same as on the source cluster.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	PVCName string `json:"pvcName"`
	// Capacity is the requested size (at least the source PVC's request).
	Capacity resource.Quantity `json:"capacity"`
	// AccessModes of the PVC, as on the source.
	// +kubebuilder:validation:MinItems=1
	AccessModes []corev1.PersistentVolumeAccessMode `json:"accessModes"`
	// VolumeMode is Filesystem (default) or Block.
	// +kubebuilder:validation:Enum=Filesystem;Block
	// +kubebuilder:default=Filesystem
	// +optional
	VolumeMode *corev1.PersistentVolumeMode `json:"volumeMode,omitempty"`
	// StorageClassName is the destination storage class (already mapped by
	// the hub). Unset means the cluster's default class.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`
}

// ReplicationDestinationSpec is written by the hub.
// +kubebuilder:validation:XValidation:rule="self.migrationID == oldSelf.migrationID",message="migrationID is immutable"
// +kubebuilder:validation:XValidation:rule="!has(self.promote) || !self.promote || (has(self.standby) && self.standby)",message="promote needs standby"
// +kubebuilder:validation:XValidation:rule="self.volumes == oldSelf.volumes",message="volumes are immutable"
// +kubebuilder:validation:XValidation:rule="(has(self.standby) && self.standby) == (has(oldSelf.standby) && oldSelf.standby)",message="standby is immutable"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.promote) || !oldSelf.promote || (has(self.promote) && self.promote)",message="promote cannot be withdrawn"
type ReplicationDestinationSpec struct {
	// MigrationID identifies the migration (the hub's Migration UID prefix).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	MigrationID string `json:"migrationID"`
	// Volumes to create and receive, in this namespace.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=map
	// +listMapKey=pvcName
	Volumes []DestinationVolume `json:"volumes"`
	// EndpointType is the Service type exposing the receivers.
	// +kubebuilder:default=ClusterIP
	// +optional
	EndpointType EndpointType `json:"endpointType,omitempty"`
	// ServiceAnnotations are set on each receiver's Service (e.g. an
	// internal load balancer), from the MigrationPolicy's endpoint.
	// +optional
	ServiceAnnotations map[string]string `json:"serviceAnnotations,omitempty"`
	// TLSSecretName is the Secret (in this namespace) with ca.crt, tls.crt
	// and tls.key: the CA and the receiver's server pair.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	TLSSecretName string `json:"tlsSecretName"`
	// MoverImage overrides the mover image (default: the agent's image).
	// +optional
	MoverImage string `json:"moverImage,omitempty"`
	// FinalSync is set by the hub when the final sync starts: the agent then
	// reads its receivers' progress every 100 ms, so the verified digest
	// reaches the hub at once.
	// +optional
	FinalSync bool `json:"finalSync,omitempty"`
	// HubVerified is set by the hub once it compared both sides' digests and
	// they matched: the app is starting here. The agent then reports whether
	// the app's pods that mount the PVCs are Ready, and at removal hands the
	// PVCs to the app (drops its migration-ID label). Without it, a removed
	// destination leaves its PVCs labelled: a leftover a later migration
	// may reuse (docs/protocol.md, "PVC lifecycle").
	// +optional
	HubVerified bool `json:"hubVerified,omitempty"`
	// MoverResources of the receiver pods; unset parts are derived from the
	// volume's size.
	// +optional
	MoverResources *corev1.ResourceRequirements `json:"moverResources,omitempty"`
	// PostLaunchHook runs in the app's Ready pods once spec.hubVerified is
	// set and AppReady, and again every few seconds until it succeeds: its
	// success is what "the app is back" means.
	// +optional
	PostLaunchHook *Hook `json:"postLaunchHook,omitempty"`
	// Standby makes the PVCs a disaster-recovery standby: each pass is
	// applied under an undo log and committed whole, so that they always
	// hold the last complete pass, reported as status.volumes[].point
	// (mover receive --points; docs/dr.md).
	// +optional
	Standby bool `json:"standby,omitempty"`
	// ExactPoints (standby) commits only passes the source's sender read at
	// one instant, keeping the last such point (mover receive
	// --exact-points); PerFileAfter then commits any pass once the point is
	// this old (--per-file-after).
	// +optional
	ExactPoints bool `json:"exactPoints,omitempty"`
	// +optional
	PerFileAfter *metav1.Duration `json:"perFileAfter,omitempty"`
	// Promote fails over to this standby: the agent stops the receivers,
	// rolls each volume back to its last committed point and checks it
	// against the point's digest (mover promote), then reports that digest
	// as the volume's. With hubVerified it hands the PVCs to the app, as
	// after a move. It needs standby and cannot be withdrawn.
	// +optional
	Promote bool `json:"promote,omitempty"`
}

// VolumePoint is the last pass a standby volume committed whole.
type VolumePoint struct {
	// Time the pass was committed.
	Time metav1.Time `json:"time"`
	// Digest of the volume as that pass left it.
	Digest string `json:"digest"`
	// Exact: the volume holds what the source held at one instant; else
	// each file as it was at some instant of the pass.
	// +optional
	Exact bool `json:"exact,omitempty"`
}

// DestinationVolumeStatus is one volume's progress.
type DestinationVolumeStatus struct {
	PVCName string `json:"pvcName"`
	// Endpoint is "host:port" the source sends this volume to.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
	// Phase of this volume's receiver.
	// +optional
	Phase DestinationPhase `json:"phase,omitempty"`
	// BytesReceived is file data received so far.
	// +optional
	BytesReceived int64 `json:"bytesReceived,omitempty"`
	// Digest of the verified tree after the final sync.
	// +optional
	Digest string `json:"digest,omitempty"`
	// AppPod is a Ready pod of the app (not a mover) that mounts this
	// PVC, once spec.hubVerified is set.
	// +optional
	AppPod string `json:"appPod,omitempty"`
	// Point is the last committed pass of a standby volume (spec.standby).
	// +optional
	Point *VolumePoint `json:"point,omitempty"`
}

// ReplicationDestinationStatus is written by the agent.
type ReplicationDestinationStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Phase DestinationPhase `json:"phase,omitempty"`
	// BytesReceived over all volumes.
	// +optional
	BytesReceived int64 `json:"bytesReceived,omitempty"`
	// Digest over all volumes, set once every volume is Verified: the
	// volume's mover digest for one volume, else the SHA-256 of the sorted
	// "<pvcName>=<digest>\n" lines.
	// +optional
	Digest string `json:"digest,omitempty"`
	// AppReady: with spec.hubVerified, every PVC is mounted by a Ready pod
	// of the app. It is what "the app is Available on the destination"
	// means to the hub: T_launch ends and source data may be released.
	// +optional
	AppReady bool `json:"appReady,omitempty"`
	// LastError is the reason of the Failed phase, or a transient problem.
	// +optional
	LastError string `json:"lastError,omitempty"`
	// PostLaunchHook is what became of spec.postLaunchHook.
	// +optional
	PostLaunchHook *HookStatus `json:"postLaunchHook,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=pvcName
	Volumes []DestinationVolumeStatus `json:"volumes,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// ReplicationDestination prepares PVCs on the destination cluster and
// receives their data from the source cluster's movers.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=rdst,categories=stateful-migration
// +kubebuilder:printcolumn:name="MIGRATION",type=string,JSONPath=`.spec.migrationID`
// +kubebuilder:printcolumn:name="PHASE",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="ENDPOINT",type=string,JSONPath=`.status.endpoint`
// +kubebuilder:printcolumn:name="RECEIVED",type=integer,JSONPath=`.status.bytesReceived`
// +kubebuilder:printcolumn:name="DIGEST",type=string,JSONPath=`.status.digest`,priority=1
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type ReplicationDestination struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ReplicationDestinationSpec   `json:"spec"`
	Status ReplicationDestinationStatus `json:"status,omitempty"`
}

// ReplicationDestinationList is a list of ReplicationDestinations.
// +kubebuilder:object:root=true
type ReplicationDestinationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ReplicationDestination `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ReplicationDestination{}, &ReplicationDestinationList{})
}
