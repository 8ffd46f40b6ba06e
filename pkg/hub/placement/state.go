package placement

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
)

// state is what one reconcile learns, step by step.
type state struct {
	policy    *migrationv1alpha1.MigrationPolicy
	placement *clusterv1beta1.Placement
	companion *clusterv1beta1.Placement

	// companionChanged: its spec was written now, so its decisions are stale.
	companionChanged bool
	desiredKnown     bool
	desired, actual  []string
	migrations       []migrationv1alpha1.Migration // moves
	standbys         []migrationv1alpha1.Migration // spec.standby: never moves, never locks a cluster

	enrolled  metav1.Condition
	converged *metav1.Condition
	standby   *metav1.Condition
	// requeueAfter: look again then, without an event (a standby's renewal).
	requeueAfter time.Duration
}

func newState(p *migrationv1alpha1.MigrationPolicy) *state {
	return &state{
		policy: p,
		enrolled: metav1.Condition{
			Type:   migrationv1alpha1.ConditionEnrolled,
			Status: metav1.ConditionFalse,
			Reason: "Enrolling",
		},
	}
}

func (s *state) setEnrolled(status metav1.ConditionStatus, reason, msg string) {
	s.enrolled = metav1.Condition{Type: migrationv1alpha1.ConditionEnrolled, Status: status, Reason: reason, Message: msg}
}

func (s *state) setConverged(status metav1.ConditionStatus, reason, msg string) {
	s.converged = &metav1.Condition{Type: migrationv1alpha1.ConditionConverged, Status: status, Reason: reason, Message: msg}
}

// policyKey is the value of PolicyAnnotation for this policy.
func (s *state) policyKey() string {
	return s.policy.Namespace + "/" + s.policy.Name
}

// active returns the migrations still being sequenced.
func (s *state) active() []migrationv1alpha1.Migration {
	var out []migrationv1alpha1.Migration
	for _, m := range s.migrations {
		if !m.CurrentPhase().IsFinished() {
			out = append(out, m)
		}
	}
	return out
}
