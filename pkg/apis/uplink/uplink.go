// Package uplink is the contract between the hub and its agents beyond the
// CRDs: the conditions an agent keeps per migration on its
// ManagedClusterAddOn (docs/protocol.md, "Uplink"), the message they carry,
// the roles, the order of phases, and the addon's names. Hub and agent both
// import it; neither imports the other.
package uplink

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

const (
	// AddonName is the name of the ClusterManagementAddOn and of every
	// ManagedClusterAddOn the agents report on.
	AddonName = "stateful-migration"
	// DefaultAgentNamespace is where the agent runs unless an
	// AddOnDeploymentConfig (and so its ManagedClusterAddOn) says otherwise.
	DefaultAgentNamespace = "open-cluster-management-agent-addon"
	// ConditionTypePrefix prefixes the agent's per-migration conditions on its
	// ManagedClusterAddOn: <prefix><migrationID>-source|-destination.
	ConditionTypePrefix = "migration.open-cluster-management.io/"
)

// Roles: a side of a migration, in condition types and the works' role label.
const (
	RoleSource      = "source"
	RoleDestination = "destination"
)

// ConditionType is the ManagedClusterAddOn condition type of a migration's role.
func ConditionType(migrationID, role string) string {
	return ConditionTypePrefix + migrationID + "-" + role
}

// Message is the compact JSON carried in the condition message.
type Message struct {
	BytesTotal  int64 `json:"bytesTotal"`
	BytesCopied int64 `json:"bytesCopied"`
	LagBytes    int64 `json:"lagBytes"`
	LagSeconds  int64 `json:"lagSeconds"`
	Throughput  int64 `json:"throughput"`
	// EstimatedFinalSyncMillis (source): final sync and verification, signal included.
	EstimatedFinalSyncMillis int64 `json:"estimatedFinalSyncMillis,omitempty"`
	// FinalSyncCold (source): a final sync ran in a restarted sender.
	FinalSyncCold bool `json:"finalSyncCold,omitempty"`
	// FinalPassFull, UnseenChange (source): see ReplicationSourceStatus.
	FinalPassFull    bool              `json:"finalPassFull,omitempty"`
	UnseenChange     string            `json:"unseenChange,omitempty"`
	Protected        *bool             `json:"protected,omitempty"`
	PodsUsingVolumes *int32            `json:"podsUsingVolumes,omitempty"`
	Endpoints        map[string]string `json:"endpoints,omitempty"`
	Digest           string            `json:"digest,omitempty"`
	// MovedOut (source): every PVC is labelled moved-out (after hubVerified).
	MovedOut bool `json:"movedOut,omitempty"`
	// HubVerified (destination): the agent has hubVerified, so it hands the
	// PVCs to the app when removed. AppReady: every PVC is mounted by a
	// Ready app pod; AppWaiting lists the PVCs that are not yet.
	HubVerified bool     `json:"hubVerified,omitempty"`
	AppReady    bool     `json:"appReady,omitempty"`
	AppWaiting  []string `json:"appWaiting,omitempty"`
	// Hook (source: pre-quiesce, destination: post-launch) over the
	// namespaces that run it; nil when the spec asks for none.
	Hook  *replv1.HookStatus `json:"hook,omitempty"`
	Error string             `json:"error,omitempty"`
	// Point (a standby's destination): once every volume committed a pass,
	// the oldest of their points, with the digest over all of them.
	Point *Point `json:"point,omitempty"`
}

// Point is a standby's recovery point over all its volumes.
type Point struct {
	Time   metav1.Time `json:"time"`
	Digest string      `json:"digest"`
	// Exact: every volume's point is an instant of its source.
	Exact bool `json:"exact,omitempty"`
}

// CombineDigests is the digest over several volumes: the volume's own digest
// for one, else SHA-256 over the sorted "<key>=<digest>\n" lines. Both sides
// compute it the same way over the same keys (namespace/pvcName).
func CombineDigests(d map[string]string) string {
	if len(d) == 1 {
		for _, v := range d {
			return v
		}
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, d[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

var sourceRank = map[replv1.SourcePhase]int{
	replv1.SourceFailed: 0, replv1.SourcePending: 1, replv1.SourceInitialSync: 2,
	replv1.SourceSyncing: 3, replv1.SourceFinalSync: 4, replv1.SourceVerified: 5, "": 1,
}

var destinationRank = map[replv1.DestinationPhase]int{
	replv1.DestinationFailed: 0, replv1.DestinationPreparing: 1, replv1.DestinationReady: 2,
	replv1.DestinationReceiving: 3, replv1.DestinationVerified: 4, "": 1,
}

// SourceRank orders source phases: Failed lowest, no phase yet as Pending.
func SourceRank(p replv1.SourcePhase) int { return sourceRank[p] }

// DestinationRank orders destination phases the same way.
func DestinationRank(p replv1.DestinationPhase) int { return destinationRank[p] }
