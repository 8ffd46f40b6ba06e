// Package work builds the two ManifestWorks of one migration
// (docs/protocol.md, "Downlink") and reads back what the work agent reports
// in them: the source PVCs' size, class, access mode and volume mode (status
// feedback of read-only manifests) and whether a work was applied.
package work

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	workv1 "open-cluster-management.io/api/work/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/hub/credentials"
)

// Labels on the hub ManifestWorks.
const (
	// MigrationIDLabel carries the migration ID, which maps a work back to its Migration.
	MigrationIDLabel = "migration.open-cluster-management.io/migration-id"
	// RoleLabel is "source" or "destination".
	RoleLabel = "migration.open-cluster-management.io/role"
)

// MigrationID is the ID both agents know a migration by: the first 8
// characters of the Migration's UID (a DNS label, stable across restarts).
func MigrationID(m *migrationv1alpha1.Migration) string {
	uid := string(m.UID)
	return uid[:min(8, len(uid))]
}

// DestinationName and SourceName are the ManifestWork names, in the cluster namespaces.
func DestinationName(id string) string { return "smig-" + id + "-dst" }

// SourceName is the source ManifestWork's name.
func SourceName(id string) string { return "smig-" + id + "-src" }

// TLSSecretName is the spoke Secret with the pair each side gets.
func TLSSecretName(id string) string { return "smig-" + id + "-tls" }

// RoleBindingName is the per-namespace RoleBinding granting the agent the replicator role.
func RoleBindingName(id string) string { return "smig-" + id + "-replicator" }

// SecretReaderName is the per-namespace Role (and its RoleBinding) letting
// the agent read this migration's TLS Secret, and no other Secret.
func SecretReaderName(id string) string { return "smig-" + id + "-tls-reader" }

// ReplicationName is the name of the ReplicationSource/Destination in each app namespace.
func ReplicationName(id string) string { return "smig-" + id }

// Volume is one PVC that travels, as resolved on the source cluster.
type Volume struct {
	Namespace        string
	PVCName          string
	Capacity         resource.Quantity
	AccessModes      []corev1.PersistentVolumeAccessMode
	VolumeMode       *corev1.PersistentVolumeMode
	StorageClassName *string
}

// Key is "<namespace>/<pvc>", the key of the destination's endpoints map.
func (v Volume) Key() string { return v.Namespace + "/" + v.PVCName }

// VolumeRef names one PVC.
type VolumeRef struct{ Namespace, PVCName string }

// Key is "<namespace>/<pvc>".
func (v VolumeRef) Key() string { return v.Namespace + "/" + v.PVCName }

// Common is what both works need.
type Common struct {
	Migration   *migrationv1alpha1.Migration
	ID          string
	Cluster     string
	AgentNS     string
	Credentials credentials.Pair
	// MoverResources of the mover pods (the policy's; nil: derived by the agent).
	MoverResources *corev1.ResourceRequirements
	// RunsHook: this side runs one of the policy's hooks, so the agent may
	// exec in the app's pods of the migration's namespaces.
	RunsHook bool
}

// DestinationSpec describes the destination work.
type DestinationSpec struct {
	Common
	Volumes            []Volume
	EndpointType       replv1.EndpointType
	ServiceAnnotations map[string]string
	FinalSync          bool
	HubVerified        bool // the hub compared both digests: the app starts there
	PostLaunchHook     *replv1.Hook
	Standby            bool // a disaster-recovery standby: each pass committed whole
	ExactPoints        bool // the standby commits only passes read at one instant
	PerFileAfter       *metav1.Duration
	Promote            bool // fail over to the standby: roll back to its point, check it
}

// SourceSpec describes the source work. Without Endpoints it only carries
// the credentials, the RoleBindings and the read-only PVC probes; with them,
// the ReplicationSources too.
type SourceSpec struct {
	Common
	Volumes       []VolumeRef
	Endpoints     map[string]string
	FinalSync     bool
	QuiesceStart  *metav1.Time // with FinalSync: when the app was told to stop
	ReleaseSource bool
	FullVerify    bool
	HubVerified   bool         // the hub compared both digests: the app leaves for good
	PreQuiesce    *replv1.Hook // set once the hub asks for it to run
}

// Destination builds the destination ManifestWork. Namespaces are orphaned
// on deletion: they may hold the app afterwards, and we never delete them.
func Destination(s DestinationSpec) (*workv1.ManifestWork, error) {
	w := newWork(s.Common, DestinationName(s.ID), uplink.RoleDestination)
	byNS := map[string][]replv1.DestinationVolume{}
	var namespaces []string
	for _, v := range s.Volumes {
		if _, ok := byNS[v.Namespace]; !ok {
			namespaces = append(namespaces, v.Namespace)
		}
		byNS[v.Namespace] = append(byNS[v.Namespace], replv1.DestinationVolume{
			PVCName: v.PVCName, Capacity: v.Capacity, AccessModes: v.AccessModes,
			VolumeMode: v.VolumeMode, StorageClassName: v.StorageClassName,
		})
	}
	slices.Sort(namespaces)
	var objs []runtime.Object
	orphan := &workv1.SelectivelyOrphan{}
	for _, ns := range namespaces {
		objs = append(objs, &corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: ns},
		})
		orphan.OrphaningRules = append(orphan.OrphaningRules, workv1.OrphaningRule{Resource: "namespaces", Name: ns})
		objs = append(objs, tlsSecret(s.ID, ns, s.Credentials))
		objs = append(objs, agentRBAC(s.Common, ns)...)
		objs = append(objs, &replv1.ReplicationDestination{
			TypeMeta:   metav1.TypeMeta{APIVersion: replv1.GroupVersion.String(), Kind: "ReplicationDestination"},
			ObjectMeta: metav1.ObjectMeta{Name: ReplicationName(s.ID), Namespace: ns},
			Spec: replv1.ReplicationDestinationSpec{
				MigrationID:        s.ID,
				Volumes:            byNS[ns],
				EndpointType:       s.EndpointType,
				ServiceAnnotations: s.ServiceAnnotations,
				TLSSecretName:      TLSSecretName(s.ID),
				FinalSync:          s.FinalSync,
				HubVerified:        s.HubVerified,
				Standby:            s.Standby,
				ExactPoints:        s.Standby && s.ExactPoints,
				PerFileAfter:       s.PerFileAfter,
				Promote:            s.Promote,
				MoverResources:     s.MoverResources,
				PostLaunchHook:     s.PostLaunchHook,
			},
		})
	}
	w.Spec.DeleteOption = &workv1.DeleteOption{
		PropagationPolicy: workv1.DeletePropagationPolicyTypeSelectivelyOrphan,
		SelectivelyOrphan: orphan,
	}
	return w, setManifests(w, objs)
}

// Source builds the source ManifestWork.
func Source(s SourceSpec) (*workv1.ManifestWork, error) {
	w := newWork(s.Common, SourceName(s.ID), uplink.RoleSource)
	byNS := map[string][]replv1.SourceVolume{}
	var namespaces []string
	for _, v := range s.Volumes {
		if _, ok := byNS[v.Namespace]; !ok {
			namespaces = append(namespaces, v.Namespace)
		}
		byNS[v.Namespace] = append(byNS[v.Namespace], replv1.SourceVolume{PVCName: v.PVCName, Destination: s.Endpoints[v.Key()]})
	}
	slices.Sort(namespaces)
	var objs []runtime.Object
	for _, ns := range namespaces {
		objs = append(objs, tlsSecret(s.ID, ns, s.Credentials))
		objs = append(objs, agentRBAC(s.Common, ns)...)
		if s.Endpoints != nil {
			vols := byNS[ns]
			objs = append(objs, &replv1.ReplicationSource{
				TypeMeta:   metav1.TypeMeta{APIVersion: replv1.GroupVersion.String(), Kind: "ReplicationSource"},
				ObjectMeta: metav1.ObjectMeta{Name: ReplicationName(s.ID), Namespace: ns},
				Spec: replv1.ReplicationSourceSpec{
					MigrationID:      s.ID,
					Volumes:          vols,
					TLSSecretName:    TLSSecretName(s.ID),
					ServerName:       replv1.DefaultServerName,
					FinalSync:        s.FinalSync,
					QuiesceStartTime: quiesceStart(s),
					ReleaseSource:    s.ReleaseSource,
					FullVerify:       s.FullVerify,
					HubVerified:      s.HubVerified,
					MoverResources:   s.MoverResources,
					PreQuiesceHook:   s.PreQuiesce,
				},
			})
		}
	}
	// Read-only probes of the app's PVCs: the work agent neither changes
	// nor deletes them, and feeds back what the destination needs to know.
	for _, v := range s.Volumes {
		objs = append(objs, &corev1.PersistentVolumeClaim{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
			ObjectMeta: metav1.ObjectMeta{Name: v.PVCName, Namespace: v.Namespace},
		})
		w.Spec.ManifestConfigs = append(w.Spec.ManifestConfigs, workv1.ManifestConfigOption{
			ResourceIdentifier: workv1.ResourceIdentifier{Resource: "persistentvolumeclaims", Name: v.PVCName, Namespace: v.Namespace},
			UpdateStrategy:     &workv1.UpdateStrategy{Type: workv1.UpdateStrategyTypeReadOnly},
			FeedbackRules: []workv1.FeedbackRule{{Type: workv1.JSONPathsType, JsonPaths: []workv1.JsonPath{
				{Name: FeedbackRequest, Path: ".spec.resources.requests.storage"},
				{Name: FeedbackCapacity, Path: ".status.capacity.storage"},
				{Name: FeedbackStorageClass, Path: ".spec.storageClassName"},
				{Name: FeedbackVolumeMode, Path: ".spec.volumeMode"},
				{Name: FeedbackAccessMode, Path: ".spec.accessModes[0]"},
				{Name: FeedbackPhase, Path: ".status.phase"},
			}}},
		})
	}
	return w, setManifests(w, objs)
}

// Feedback names of the PVC probes.
const (
	FeedbackRequest      = "request"
	FeedbackCapacity     = "capacity"
	FeedbackStorageClass = "storageClassName"
	FeedbackVolumeMode   = "volumeMode"
	FeedbackAccessMode   = "accessMode"
	FeedbackPhase        = "phase"
)

func newWork(c Common, name, role string) *workv1.ManifestWork {
	return &workv1.ManifestWork{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: c.Cluster,
			Labels: map[string]string{
				MigrationIDLabel:                 c.ID,
				RoleLabel:                        role,
				migrationv1alpha1.ManagedByLabel: migrationv1alpha1.ManagedByValue,
			},
			Annotations: map[string]string{
				migrationv1alpha1.PolicyAnnotation:               c.Migration.Namespace + "/" + c.Migration.Spec.PolicyName,
				"migration.open-cluster-management.io/migration": c.Migration.Namespace + "/" + c.Migration.Name,
			},
		},
	}
}

func tlsSecret(id, ns string, p credentials.Pair) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: TLSSecretName(id), Namespace: ns, Labels: map[string]string{replv1.MigrationIDLabel: id}},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			replv1.TLSCAKey:   p.CA,
			replv1.TLSCertKey: p.Cert,
			replv1.TLSKeyKey:  p.Key,
		},
	}
}

// HookExecName is the per-namespace Role (and RoleBinding) letting the
// agent exec in the app's pods, shipped only to a side that runs a hook.
func HookExecName(id string) string { return "smig-" + id + "-hook-exec" }

// agentRBAC grants the agent, in one app namespace for this migration, the
// replicator ClusterRole, `get` on the migration's TLS Secret by name and,
// on a side that runs a hook, pods/exec.
func agentRBAC(c Common, ns string) []runtime.Object {
	id, agentNS := c.ID, c.AgentNS
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{replv1.MigrationIDLabel: id}}
	}
	agent := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: replv1.AgentServiceAccount, Namespace: agentNS}}
	bindingKind := metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "RoleBinding"}
	objs := []runtime.Object{
		&rbacv1.RoleBinding{
			TypeMeta: bindingKind, ObjectMeta: meta(RoleBindingName(id)), Subjects: agent,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: replv1.ReplicatorClusterRole},
		},
		&rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "Role"},
			ObjectMeta: meta(SecretReaderName(id)),
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{TLSSecretName(id)}}},
		},
		&rbacv1.RoleBinding{
			TypeMeta: bindingKind, ObjectMeta: meta(SecretReaderName(id)), Subjects: agent,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: SecretReaderName(id)},
		},
	}
	if c.RunsHook {
		// get: the WebSocket form of exec is a GET (kubectl since 1.30).
		objs = append(objs, &rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "Role"},
			ObjectMeta: meta(HookExecName(id)),
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create", "get"}}},
		}, &rbacv1.RoleBinding{
			TypeMeta: bindingKind, ObjectMeta: meta(HookExecName(id)), Subjects: agent,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: HookExecName(id)},
		})
	}
	return objs
}

func setManifests(w *workv1.ManifestWork, objs []runtime.Object) error {
	for _, o := range objs {
		raw, err := json.Marshal(o)
		if err != nil {
			return err
		}
		w.Spec.Workload.Manifests = append(w.Spec.Workload.Manifests, workv1.Manifest{RawExtension: runtime.RawExtension{Raw: raw}})
	}
	return nil
}

// SpecHashAnnotation records the hash of the spec the hub last wrote, so an
// unchanged spec is never rewritten (the API server normalises manifests).
const SpecHashAnnotation = "migration.open-cluster-management.io/spec-hash"

// SetSpecHash stamps w with the hash of its spec.
func SetSpecHash(w *workv1.ManifestWork) error {
	raw, err := json.Marshal(w.Spec)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(raw)
	if w.Annotations == nil {
		w.Annotations = map[string]string{}
	}
	w.Annotations[SpecHashAnnotation] = hex.EncodeToString(sum[:16])
	return nil
}

func quiesceStart(s SourceSpec) *metav1.Time {
	if !s.FinalSync {
		return nil
	}
	return s.QuiesceStart
}
