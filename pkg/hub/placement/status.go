package placement

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
)

// PlacementConditionManaged is set on an enrolled Placement so that its
// users see who writes its decisions now that the scheduler does not.
const PlacementConditionManaged = "MigrationPolicyEnrolled"

// mirrorPlacementStatus keeps the user's Placement status meaningful: the
// scheduler's verdict on its spec (from the companion, which has the same
// spec) and the count of actual clusters.
func (r *Reconciler) mirrorPlacementStatus(ctx context.Context, s *state) (bool, error) {
	conds := []metav1.Condition{{
		Type:    PlacementConditionManaged,
		Status:  metav1.ConditionTrue,
		Reason:  "Enrolled",
		Message: fmt.Sprintf("Decisions are written by MigrationPolicy %s; the scheduler's choice is in Placement %s", s.policy.Name, s.companion.Name),
	}}
	for _, t := range []string{clusterv1beta1.PlacementConditionSatisfied, clusterv1beta1.PlacementConditionMisconfigured} {
		if c := meta.FindStatusCondition(s.companion.Status.Conditions, t); c != nil {
			conds = append(conds, metav1.Condition{Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message})
		}
	}
	if err := decision.SetCondition(ctx, r.Client, s.placement, conds...); err != nil {
		return true, err
	}
	if int(s.placement.Status.NumberOfSelectedClusters) != len(s.actual) {
		// First enrolment of a Placement whose decisions the scheduler wrote
		// keeps its status; otherwise rewrite it from actual.
		return false, decision.SetActualClusters(ctx, r.Client, s.placement, s.actual)
	}
	return false, nil
}

// writeStatus records desired, actual and conditions on the policy.
func (r *Reconciler) writeStatus(ctx context.Context, s *state) error {
	// Compare with the API server, not the cache: a cached policy that does not
	// show our previous write yet would make a needed write look like a no-op,
	// and our own status writes trigger no new reconcile.
	p := &migrationv1alpha1.MigrationPolicy{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(s.policy), p); err != nil {
		return client.IgnoreNotFound(err)
	}
	before := p.DeepCopy()
	gen := s.policy.Generation // the spec this reconcile acted on
	p.Status.ObservedGeneration = gen
	setCondition(&p.Status.Conditions, s.enrolled, gen)
	if s.converged != nil {
		setCondition(&p.Status.Conditions, *s.converged, gen)
	}
	if s.standby != nil {
		setCondition(&p.Status.Conditions, *s.standby, gen)
	} else if s.policy.Spec.Standby == nil {
		meta.RemoveStatusCondition(&p.Status.Conditions, migrationv1alpha1.ConditionStandby)
	}
	if s.companion != nil {
		p.Status.DesiredPlacement = s.companion.Name
		p.Status.DesiredClusters = s.desired
		p.Status.ActualClusters = s.actual
		p.Status.ActiveMigrations = nil
		for _, m := range s.active() {
			p.Status.ActiveMigrations = append(p.Status.ActiveMigrations, m.Name)
		}
		slices.Sort(p.Status.ActiveMigrations)
	}
	if equality.Semantic.DeepEqual(before.Status, p.Status) {
		return nil
	}
	return client.IgnoreNotFound(r.Status().Patch(ctx, p, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})))
}

func setCondition(conds *[]metav1.Condition, c metav1.Condition, gen int64) {
	c.ObservedGeneration = gen
	meta.SetStatusCondition(conds, c)
}
