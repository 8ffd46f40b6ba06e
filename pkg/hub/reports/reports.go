// Package reports decodes what the agents report about one migration on
// their ManagedClusterAddOn (docs/protocol.md, "Uplink"): one condition per
// migration and role, reason = phase, message = pkg/apis/uplink.Message.
package reports

import (
	"encoding/json"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

// Report is one side's decoded condition.
type Report struct {
	// Phase is the condition's reason (a SourcePhase or DestinationPhase).
	Phase string
	// Healthy is the condition's status.
	Healthy bool
	uplink.Message
	// At is the condition's last transition time.
	At time.Time
	// DecodeError is set when the message is not the agreed JSON.
	DecodeError error
}

// Failed tells whether the side reports a failure.
func (r *Report) Failed() bool {
	return r != nil && (!r.Healthy || r.Phase == string(replv1.SourceFailed))
}

// Error is the reported error, or a generic one.
func (r *Report) Error() string {
	switch {
	case r == nil:
		return ""
	case r.Message.Error != "":
		return r.Message.Error
	case r.DecodeError != nil:
		return "undecodable report: " + r.DecodeError.Error()
	}
	return "phase " + r.Phase
}

// HookStatus is the side's reported hook, nil when none (or no report).
func (r *Report) HookStatus() *replv1.HookStatus {
	if r == nil {
		return nil
	}
	return r.Hook
}

// Find decodes the condition of migrationID and role ("source" or
// "destination") among conds; nil when the agent reported nothing (yet).
func Find(conds []metav1.Condition, migrationID, role string) *Report {
	c := meta.FindStatusCondition(conds, uplink.ConditionType(migrationID, role))
	if c == nil {
		return nil
	}
	r := &Report{Phase: c.Reason, Healthy: c.Status == metav1.ConditionTrue, At: c.LastTransitionTime.Time}
	if c.Message != "" {
		r.DecodeError = json.Unmarshal([]byte(c.Message), &r.Message)
	}
	return r
}

// MigrationIDs returns the migration IDs with a condition in conds.
func MigrationIDs(conds []metav1.Condition) []string {
	var out []string
	for _, c := range conds {
		rest, ok := strings.CutPrefix(c.Type, uplink.ConditionTypePrefix)
		if !ok {
			continue
		}
		for _, suffix := range []string{"-" + uplink.RoleSource, "-" + uplink.RoleDestination} {
			if id, ok := strings.CutSuffix(rest, suffix); ok && id != "" {
				out = append(out, id)
				break
			}
		}
	}
	return out
}

// ChangedIDs lists the migrations whose report differs between two
// versions of one ManagedClusterAddOn's conditions (added, removed or
// rewritten): a cluster that is the source of many migrations carries all
// their reports, and one agent report must not wake every one of them.
func ChangedIDs(old, cur []metav1.Condition) []string {
	before := map[string]metav1.Condition{}
	for _, c := range old {
		before[c.Type] = c
	}
	var changed []metav1.Condition
	for _, c := range cur {
		o, ok := before[c.Type]
		delete(before, c.Type)
		if !ok || o.Status != c.Status || o.Reason != c.Reason || o.Message != c.Message || !o.LastTransitionTime.Equal(&c.LastTransitionTime) {
			changed = append(changed, c)
		}
	}
	for _, c := range before { // removed
		changed = append(changed, c)
	}
	return MigrationIDs(changed)
}

// SourceAtLeast tells whether the source reached phase p (in the source's order).
func SourceAtLeast(r *Report, p replv1.SourcePhase) bool {
	return r != nil && r.Healthy && uplink.SourceRank(replv1.SourcePhase(r.Phase)) >= uplink.SourceRank(p)
}

// DestinationAtLeast tells whether the destination reached phase p.
func DestinationAtLeast(r *Report, p replv1.DestinationPhase) bool {
	return r != nil && r.Healthy && uplink.DestinationRank(replv1.DestinationPhase(r.Phase)) >= uplink.DestinationRank(p)
}
