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
	active := s.active()
	locked := sets.New[string]()
	for _, m := range active {
		locked.Insert(m.Spec.SourceCluster, m.Spec.DestinationCluster)
	}
	desired, actual := sets.New(s.desired...), sets.New(s.actual...)
	removed := sets.List(actual.Difference(desired).Difference(locked))
	added := sets.List(desired.Difference(actual).Difference(locked))
	n := min(len(removed), len(added))

	var blocked []string
	for i := range n {
		if m, err := r.failover(ctx, s, removed[i], added[i]); err != nil {
			return true, err
		} else if m != nil {
			s.migrations = append(s.migrations, *m)
			active = append(active, *m)
			continue
		}
		if m := s.previous(removed[i], added[i]); m != nil {
			blocked = append(blocked, fmt.Sprintf("%s (%s)", m.Name, m.CurrentPhase()))
			continue
		}
		m, err := r.createMigration(ctx, s, removed[i], added[i])
		if err != nil {
			return true, err
		}
		s.migrations = append(s.migrations, *m)
		active = append(active, *m)
	}

	extraAdd, extraRemove := added[n:], removed[n:]
	// A failover that could not promote its standby leaves volumes that are
	// not its point there: adding that cluster would start the app on them.
	extraAdd = slices.DeleteFunc(slices.Clone(extraAdd), func(c string) bool {
		if m := s.failedFailover(c); m != nil {
			blocked = append(blocked, fmt.Sprintf("%s (failover to %s: %s)", m.Name, c, m.Status.Reason))
			return true
		}
		return false
	})
	// OCM taints a lost cluster and the scheduler drops it: removing it here
	// would remove its standby too, and with it the point to fail over to.
	var held []migrationv1alpha1.Migration
	var removable []string
	for _, c := range extraRemove {
		sb, err := r.lostWithStandby(ctx, s, c, "")
		if err != nil {
			return true, err
		}
		if sb != nil {
			held = append(held, *sb)
		} else {
			removable = append(removable, c)
		}
	}
	extraRemove = removable
	waiting := len(extraAdd)+len(extraRemove) > 0 && len(active) > 0
	if !waiting && len(extraAdd)+len(extraRemove) > 0 {
		next := actual.Clone().Insert(extraAdd...).Delete(extraRemove...)
		if err := decision.SetActualClusters(ctx, r.Client, s.placement, sets.List(next)); err != nil {
			return true, err
		}
		klog.FromContext(ctx).Info("Applied change without data to move", "added", extraAdd, "removed", extraRemove)
		r.Recorder.Eventf(s.placement, s.policy, corev1.EventTypeNormal, "ActualUpdated", "UpdateDecision",
			"Added %v, removed %v: no data to move", extraAdd, extraRemove)
		s.actual = sets.List(next)
	}

	switch {
	case len(active) > 0:
		s.setConverged(metav1.ConditionFalse, migrationv1alpha1.ReasonMigrationInProgress,
			"Migrations in progress: "+names(active))
	case len(blocked) > 0:
		s.setConverged(metav1.ConditionFalse, migrationv1alpha1.ReasonMigrationBlocked,
			fmt.Sprintf("Moves not retried after they ended unsuccessfully: %s; delete the Migration to retry, or edit the Placement", strings.Join(blocked, ", ")))
	case len(held) > 0:
		s.setConverged(metav1.ConditionFalse, migrationv1alpha1.ReasonWaitingForFailover, heldMessage(s, held))
	case waiting:
		s.setConverged(metav1.ConditionFalse, migrationv1alpha1.ReasonWaitingForMigration,
			"Changes without data to move wait for active migrations")
	case !slices.Equal(sets.List(desired), s.actual):
		s.setConverged(metav1.ConditionFalse, migrationv1alpha1.ReasonMigrationInProgress, "Actual clusters differ from desired")
	default:
		s.setConverged(metav1.ConditionTrue, migrationv1alpha1.ReasonActualMatchesDesired, "")
	}
	return false, nil
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
