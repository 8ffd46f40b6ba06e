package placement

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
)

// observe reads migrations, then actual, both from the API server: the
// sequencing controller writes actual before it marks a Migration Completed,
// so reading in this order never sees a finished move as still to do.
func (r *Reconciler) observe(ctx context.Context, s *state) (bool, error) {
	var l migrationv1alpha1.MigrationList
	if err := r.APIReader.List(ctx, &l, client.InNamespace(s.policy.Namespace),
		client.MatchingLabels{migrationv1alpha1.PolicyLabel: s.policy.Name}); err != nil {
		return true, err
	}
	// Only the policy's own Migrations count: a Migration merely labelled
	// with its name must not block or fake a move.
	s.migrations, s.standbys = nil, nil
	for _, m := range l.Items {
		switch owner := metav1.GetControllerOf(&m); {
		case owner == nil || owner.UID != s.policy.UID:
		case m.Spec.Standby && m.Annotations[migrationv1alpha1.FailoverAnnotation] != "true":
			s.standbys = append(s.standbys, m)
		default:
			s.migrations = append(s.migrations, m)
		}
	}
	var err error
	if s.actual, err = decision.Clusters(ctx, r.APIReader, s.placement.Namespace, s.placement.Name); err != nil {
		return true, err
	}
	if s.desired, err = decision.Clusters(ctx, r.Client, s.companion.Namespace, s.companion.Name); err != nil {
		return true, err
	}
	// A new or just-edited companion has no or stale decisions; acting on an
	// empty desired set would remove the app everywhere.
	scheduled, err := decision.HasDecisions(ctx, r.Client, s.companion.Namespace, s.companion.Name)
	if err != nil {
		return true, err
	}
	s.desiredKnown = scheduled && !s.companionChanged &&
		meta.FindStatusCondition(s.companion.Status.Conditions, clusterv1beta1.PlacementConditionSatisfied) != nil
	return false, nil
}

// converge pairs each removed cluster with an added one and records a
// Migration for the pair. Unpaired changes carry no data and go straight to
// actual, but only while no migration of this policy is active: mid-move an
// unpaired addition is usually the user re-targeting that move, which is the
// sequencing controller's call, not ours. Clusters of active migrations are
// never touched here.
func (r *Reconciler) converge(ctx context.Context, s *state) (bool, error) {
	if !s.desiredKnown {
		s.setConverged(metav1.ConditionFalse, migrationv1alpha1.ReasonSchedulingPending,
			fmt.Sprintf("Waiting for the scheduler to decide Placement %s", s.companion.Name))
		return false, nil
	}
	c := s.changes()
	if err := r.pair(ctx, s, c); err != nil {
		return true, err
	}
	if err := r.unpaired(ctx, s, c); err != nil {
		return true, err
	}
	status, reason, msg := c.outcome(s)
	s.setConverged(status, reason, msg)
	return false, nil
}

// changes is what converge found between desired and actual, and what it
// did about it.
type changes struct {
	active         []migrationv1alpha1.Migration
	removed, added []string                      // outside active migrations, sorted
	blocked        []string                      // pairs not retried, and why
	held           []migrationv1alpha1.Migration // standbys of lost clusters kept decided
	waiting        bool                          // unpaired changes wait for active migrations
}

func (s *state) changes() *changes {
	c := &changes{active: s.active()}
	locked := sets.New[string]()
	for _, m := range c.active {
		locked.Insert(m.Spec.SourceCluster, m.Spec.DestinationCluster)
	}
	desired, actual := sets.New(s.desired...), sets.New(s.actual...)
	c.removed = sets.List(actual.Difference(desired).Difference(locked))
	c.added = sets.List(desired.Difference(actual).Difference(locked))
	return c
}

// pair fails over, or records a move, for each removed cluster paired with
// an added one, unless an unsuccessful move of that pair blocks it.
func (r *Reconciler) pair(ctx context.Context, s *state, c *changes) error {
	for i := range min(len(c.removed), len(c.added)) {
		src, dst := c.removed[i], c.added[i]
		m, err := r.failover(ctx, s, src, dst)
		if err != nil {
			return err
		}
		if m == nil {
			if prev := s.previous(src, dst); prev != nil {
				c.blocked = append(c.blocked, fmt.Sprintf("%s (%s)", prev.Name, prev.CurrentPhase()))
				continue
			}
			if m, err = r.createMigration(ctx, s, src, dst); err != nil {
				return err
			}
		}
		s.migrations = append(s.migrations, *m)
		c.active = append(c.active, *m)
	}
	return nil
}

// unpaired applies the changes left without a partner straight to actual,
// when no migration is active, except an addition a failed failover left
// unsafe and the removal of a lost cluster whose standby holds the point.
func (r *Reconciler) unpaired(ctx context.Context, s *state, c *changes) error {
	n := min(len(c.removed), len(c.added))
	// A failover that could not promote its standby leaves volumes that are
	// not its point there: adding that cluster would start the app on them.
	var add []string
	for _, cl := range c.added[n:] {
		if m := s.failedFailover(cl); m != nil {
			c.blocked = append(c.blocked, fmt.Sprintf("%s (failover to %s: %s)", m.Name, cl, m.Status.Reason))
			continue
		}
		add = append(add, cl)
	}
	// OCM taints a lost cluster and the scheduler drops it: removing it here
	// would remove its standby too, and with it the point to fail over to.
	var remove []string
	for _, cl := range c.removed[n:] {
		sb, err := r.lostWithStandby(ctx, s, cl, "")
		if err != nil {
			return err
		}
		if sb != nil {
			c.held = append(c.held, *sb)
		} else {
			remove = append(remove, cl)
		}
	}
	if len(add)+len(remove) == 0 {
		return nil
	}
	if c.waiting = len(c.active) > 0; c.waiting {
		return nil
	}
	next := sets.New(s.actual...).Insert(add...).Delete(remove...)
	if err := decision.SetActualClusters(ctx, r.Client, s.placement, sets.List(next)); err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Applied change without data to move", "added", add, "removed", remove)
	r.Recorder.Eventf(s.placement, s.policy, corev1.EventTypeNormal, "ActualUpdated", "UpdateDecision",
		"Added %v, removed %v: no data to move", add, remove)
	s.actual = sets.List(next)
	return nil
}

// outcome is the Converged condition after converge.
func (c *changes) outcome(s *state) (metav1.ConditionStatus, string, string) {
	switch {
	case len(c.active) > 0:
		return metav1.ConditionFalse, migrationv1alpha1.ReasonMigrationInProgress, "Migrations in progress: " + names(c.active)
	case len(c.blocked) > 0:
		return metav1.ConditionFalse, migrationv1alpha1.ReasonMigrationBlocked,
			fmt.Sprintf("Moves not retried after they ended unsuccessfully: %s; delete the Migration to retry, or edit the Placement", strings.Join(c.blocked, ", "))
	case len(c.held) > 0:
		return metav1.ConditionFalse, migrationv1alpha1.ReasonWaitingForFailover, heldMessage(s, c.held)
	case c.waiting:
		return metav1.ConditionFalse, migrationv1alpha1.ReasonWaitingForMigration, "Changes without data to move wait for active migrations"
	case !slices.Equal(sets.List(sets.New(s.desired...)), s.actual):
		return metav1.ConditionFalse, migrationv1alpha1.ReasonMigrationInProgress, "Actual clusters differ from desired"
	}
	return metav1.ConditionTrue, migrationv1alpha1.ReasonActualMatchesDesired, ""
}

func heldMessage(s *state, held []migrationv1alpha1.Migration) string {
	var out []string
	for _, m := range held {
		out = append(out, fmt.Sprintf("%s is not Available; the app stays decided there while standby %s keeps its last point on %s: select %s in Placement %s to fail over, or wait for %s to return",
			m.Spec.SourceCluster, m.Name, m.Spec.DestinationCluster, m.Spec.DestinationCluster, s.placement.Name, m.Spec.SourceCluster))
	}
	return strings.Join(out, "; ")
}

// failedFailover returns a failover to cluster that ended without starting
// the app there.
func (s *state) failedFailover(cluster string) *migrationv1alpha1.Migration {
	for i := range s.migrations {
		m := &s.migrations[i]
		if m.Status.Failover != nil && m.Spec.DestinationCluster == cluster && m.CurrentPhase() == migrationv1alpha1.PhaseFailed {
			return m
		}
	}
	return nil
}

// previous returns an unsuccessful Migration of the same pair. It blocks a new
// one so that a failing move is not retried forever by creating objects.
func (s *state) previous(src, dst string) *migrationv1alpha1.Migration {
	for i := range s.migrations {
		m := &s.migrations[i]
		if m.Spec.SourceCluster == src && m.Spec.DestinationCluster == dst && m.CurrentPhase() != migrationv1alpha1.PhaseCompleted {
			return m
		}
	}
	return nil
}

func (r *Reconciler) createMigration(ctx context.Context, s *state, src, dst string) (*migrationv1alpha1.Migration, error) {
	return r.create(ctx, s, src, dst, false)
}

func (r *Reconciler) create(ctx context.Context, s *state, src, dst string, standby bool) (*migrationv1alpha1.Migration, error) {
	prefix := fmt.Sprintf("%s-%s-to-%s-", s.placement.Name, src, dst)
	if standby {
		prefix = fmt.Sprintf("%s-standby-%s-", s.placement.Name, dst)
	}
	if len(prefix) > 200 {
		prefix = s.policy.Name[:min(len(s.policy.Name), 200)] + "-"
	}
	m := &migrationv1alpha1.Migration{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: prefix,
			Namespace:    s.policy.Namespace,
			Labels: map[string]string{
				migrationv1alpha1.PolicyLabel:    s.policy.Name,
				migrationv1alpha1.PlacementLabel: s.placement.Name,
				migrationv1alpha1.ManagedByLabel: migrationv1alpha1.ManagedByValue,
			},
		},
		Spec: migrationv1alpha1.MigrationSpec{
			PolicyName:         s.policy.Name,
			PlacementName:      s.placement.Name,
			SourceCluster:      src,
			DestinationCluster: dst,
			Standby:            standby,
		},
	}
	if err := controllerutil.SetControllerReference(s.policy, m, r.Scheme()); err != nil {
		return nil, err
	}
	if err := r.Create(ctx, m); err != nil {
		return nil, fmt.Errorf("creating migration %s -> %s: %w", src, dst, err)
	}
	before := m.DeepCopy()
	now := metav1.Now()
	m.Status.Phase = migrationv1alpha1.PhasePending
	m.Status.PhaseTransitionTime = &now
	m.Status.Reason = "Detected"
	m.Status.Message = fmt.Sprintf("Placement %s moved from %s to %s", s.placement.Name, src, dst)
	if standby {
		m.Status.Message = fmt.Sprintf("Standby of Placement %s (on %s) kept on %s", s.placement.Name, src, dst)
	}
	// Best effort: an empty phase already reads as Pending. Optimistic lock:
	// the sequencing controller may already have moved the new Migration on,
	// and this write must not set it back to Pending.
	if err := r.Status().Patch(ctx, m, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		klog.FromContext(ctx).Error(err, "setting Pending", "migration", m.Name)
	}
	klog.FromContext(ctx).Info("Migration detected", "migration", m.Name, "source", src, "destination", dst)
	msg := fmt.Sprintf("Migration %s created: %s -> %s", m.Name, src, dst)
	r.Recorder.Eventf(s.policy, m, corev1.EventTypeNormal, "MigrationDetected", "CreateMigration", msg)
	r.Recorder.Eventf(s.placement, m, corev1.EventTypeNormal, "MigrationDetected", "CreateMigration", msg)
	return m, nil
}

func names(ms []migrationv1alpha1.Migration) string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s (%s -> %s, %s)", m.Name, m.Spec.SourceCluster, m.Spec.DestinationCluster, m.CurrentPhase()))
	}
	return strings.Join(out, ", ")
}
