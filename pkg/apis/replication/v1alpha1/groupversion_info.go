// Package v1alpha1 is the spoke API of stateful-migration: the replication
// tasks the hub sends to a managed cluster's agent through ManifestWork
// (docs/protocol.md). ReplicationDestination prepares and receives a copy,
// ReplicationSource protects and sends the app's volumes.
// +kubebuilder:object:generate=true
// +groupName=replication.migration.open-cluster-management.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "replication.migration.open-cluster-management.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Names shared by the agent, the hub and the mover pods.
const (
	// Finalizer is set by the agent on ReplicationSources and
	// ReplicationDestinations so that it can clean up and withdraw its
	// ManagedClusterAddOn condition before the object goes.
	Finalizer = "replication.migration.open-cluster-management.io/cleanup"
	// PVCProtectionFinalizer is set on each source PVC while a
	// ReplicationSource needs its data.
	PVCProtectionFinalizer = "replication.migration.open-cluster-management.io/source-protection"
	// OriginalReclaimPolicyAnnotation on a source PV remembers the reclaim
	// policy it had before the agent set Retain.
	OriginalReclaimPolicyAnnotation = "replication.migration.open-cluster-management.io/original-reclaim-policy"
	// MovedOutLabel (value: the migration ID) is set on a source PVC once the
	// hub compared both digests (spec.hubVerified): the app has left this
	// cluster. A later migration back here reuses such a PVC as its
	// destination, so only what changed since is copied. A source removed
	// before that (rollback, failure) never keeps it.
	MovedOutLabel = "replication.migration.open-cluster-management.io/moved-out"
	// FinishAnnotation on a continuous sender pod asks it to finish: final
	// sync and verification. The value is the quiesce start (RFC 3339) or
	// "now"; the pod sees it through a downward API file within a second,
	// which needs no right beyond patching the agent's own pods.
	FinishAnnotation = "replication.migration.open-cluster-management.io/finish"
	// MigrationIDLabel is set on every object the agent creates. On a
	// destination PVC it stays until the hub verified the data: then the
	// agent removes it (the PVC is the app's). A PVC whose label names a
	// migration with no ReplicationDestination here is a leftover of a failed
	// attempt, which a later migration may reuse (never while a pod uses it).
	MigrationIDLabel = "replication.migration.open-cluster-management.io/migration-id"
	// RoleLabel is "receiver" or "sender" on mover pods.
	RoleLabel = "replication.migration.open-cluster-management.io/role"
	// VolumeLabel names the PVC a mover pod serves.
	VolumeLabel = "replication.migration.open-cluster-management.io/pvc"
	// ManagedByLabel / ManagedByValue mark objects the agent created.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "stateful-migration-agent"

	// TLS secret keys (a kubernetes.io/tls Secret plus the CA).
	TLSCAKey   = "ca.crt"
	TLSCertKey = "tls.crt"
	TLSKeyKey  = "tls.key"
	// DefaultServerName is the DNS name the hub puts in the receiver
	// certificate; the sender expects it whatever address it dials.
	DefaultServerName = "stateful-migration-receiver"
	// ReplicatorClusterRole is what the hub binds, per app namespace and
	// migration, to the agent's ServiceAccount (RoleBinding smig-<id>-replicator).
	ReplicatorClusterRole = "stateful-migration-replicator"
	// AgentServiceAccount is the agent's ServiceAccount, in its install namespace.
	AgentServiceAccount = "stateful-migration-agent"
	// ReceiverPort is the port each receiver pod listens on.
	ReceiverPort = 8443
)
