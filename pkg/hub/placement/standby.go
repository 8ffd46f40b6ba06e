package placement

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/credentials"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
	"github.com/stateful-migration/stateful-migration/pkg/hub/migration"
)

// keepStandby keeps the standby spec.standby asks for (docs/dr.md): one
// standby Migration from the cluster the app runs on to the standby
// cluster. While a move is active, a standby is kept replicating from the
// cluster the app leaves, but one on the move's destination is removed
// once the move's source has answered: its receivers hold the PVCs the move
// writes into (once they are gone, the move reuses them and copies only
// what differs). Until then the move may be one from a cluster that died
// before OCM said so, and the standby is what a failover needs. After the move,
// a standby whose pair is no longer the one wanted is deleted (its
// finalizer cleans both clusters) and the wanted one created. A standby
// that failed blocks a new one of the same pair, as a failed move does:
// deleting it retries. A standby is renewed before its per-migration
// credentials expire (credentials.Validity): it is replaced by a new one,
// whose receivers reuse its PVCs and its last point, so only what changed
// since is copied again.
func (r *Reconciler) keepStandby(ctx context.Context, s *state) (bool, error) {
	sb := s.policy.Spec.Standby
	if sb == nil && len(s.standbys) == 0 {
		return false, nil
	}
	if active := s.active(); len(active) > 0 {
		err := r.standbysDuringMove(ctx, s, active)
		return err != nil, err
	}
	src, dst, err := r.wantedStandby(ctx, s)
	if err != nil {
		return true, err
	}
	var kept *migrationv1alpha1.Migration
	for i := range s.standbys {
		m := &s.standbys[i]
		if m.Spec.SourceCluster == src && m.Spec.DestinationCluster == dst {
			kept = m
			continue
		}
		if err := r.removeStandby(ctx, s, m, "the policy now wants "+wanted(src, dst)); err != nil {
			return true, err
		}
	}
	if dst == "" {
		return false, nil
	}
	return false, r.tendStandby(ctx, s, kept, src, dst)
}

// standbysDuringMove removes a standby on a move's destination once the
// move's source answered; the others keep replicating.
func (r *Reconciler) standbysDuringMove(ctx context.Context, s *state, active []migrationv1alpha1.Migration) error {
	for i := range s.standbys {
		m := &s.standbys[i]
		for _, mv := range active {
			if m.Spec.DestinationCluster == mv.Spec.DestinationCluster && !awaitsSource(&mv) {
				if err := r.removeStandby(ctx, s, m, "the move "+mv.Name+" writes there"); err != nil {
					return err
				}
			}
		}
	}
	if s.policy.Spec.Standby != nil {
		s.setStandby(metav1.ConditionFalse, migrationv1alpha1.ReasonStandbyWaitingForMove, "A move is in progress: "+names(active))
	}
	return nil
}

// wantedStandby is the pair the policy asks for now, none (and the
// condition saying why) when there is no cluster to keep it on.
func (r *Reconciler) wantedStandby(ctx context.Context, s *state) (src, dst string, err error) {
	sb := s.policy.Spec.Standby
	switch {
	case sb == nil:
		return "", "", nil
	case len(s.actual) != 1:
		s.setStandby(metav1.ConditionFalse, migrationv1alpha1.ReasonStandbyAppNotOnOneSite,
			fmt.Sprintf("A standby is kept for an app on one cluster; Placement %s decides %v", s.placement.Name, s.actual))
		return "", "", nil
	}
	candidates, err := decision.StandbyClusters(ctx, r.Client, s.policy)
	if err != nil {
		return "", "", err
	}
	if dst = s.pickStandby(s.actual[0], candidates); dst != "" {
		return s.actual[0], dst, nil
	}
	if sb.ClusterName != "" {
		s.setStandby(metav1.ConditionFalse, migrationv1alpha1.ReasonStandbyOnAppCluster,
			fmt.Sprintf("The app runs on the standby cluster %s: no standby is kept there", sb.ClusterName))
	} else {
		s.setStandby(metav1.ConditionFalse, migrationv1alpha1.ReasonStandbyNoCluster,
			fmt.Sprintf("Placement %s decides %v: no cluster other than the app's (%s) to keep the standby on", sb.PlacementRef.Name, candidates, s.actual[0]))
	}
	return "", "", nil
}

// tendStandby creates the wanted standby, renews it when its credentials
// near their end, and says how it is.
func (r *Reconciler) tendStandby(ctx context.Context, s *state, kept *migrationv1alpha1.Migration, src, dst string) error {
	switch {
	case kept == nil:
		m, err := r.create(ctx, s, src, dst, true)
		if err != nil {
			return err
		}
		s.standbys = append(s.standbys, *m)
		s.setStandby(metav1.ConditionTrue, migrationv1alpha1.ReasonStandbyKept, fmt.Sprintf("Standby %s: %s -> %s", m.Name, src, dst))
	case kept.DeletionTimestamp.IsZero() && time.Since(kept.CreationTimestamp.Time) >= r.renewAfter():
		if err := r.removeStandby(ctx, s, kept, fmt.Sprintf("renewing its credentials (valid %s)", credentials.Validity)); err != nil {
			return err
		}
		s.setStandby(metav1.ConditionTrue, migrationv1alpha1.ReasonStandbyKept, fmt.Sprintf("Standby %s: %s -> %s, being renewed", kept.Name, src, dst))
	case kept.CurrentPhase().IsFinished():
		s.setStandby(metav1.ConditionFalse, migrationv1alpha1.ReasonStandbyFailed, fmt.Sprintf(
			"Standby %s ended %s (%s): delete it to retry", kept.Name, kept.CurrentPhase(), kept.Status.Message))
	default:
		s.setStandby(metav1.ConditionTrue, migrationv1alpha1.ReasonStandbyKept, fmt.Sprintf("Standby %s: %s -> %s (%s)",
			kept.Name, src, dst, kept.CurrentPhase()))
		if kept.DeletionTimestamp.IsZero() {
			s.requeueAfter = max(time.Second, time.Until(kept.CreationTimestamp.Add(r.renewAfter())))
		}
	}
	return nil
}

// pickStandby chooses the standby's cluster among candidates (sorted): the
// one a live standby from src already uses while it stays a candidate, so
// that a change of the standby Placement's other decisions moves nothing,
// else the first that is not src.
func (s *state) pickStandby(src string, candidates []string) string {
	for _, m := range s.standbys {
		if m.Spec.SourceCluster == src && m.DeletionTimestamp.IsZero() && slices.Contains(candidates, m.Spec.DestinationCluster) &&
			m.Spec.DestinationCluster != src {
			return m.Spec.DestinationCluster
		}
	}
	for _, c := range candidates {
		if c != src {
			return c
		}
	}
	return ""
}

func (r *Reconciler) renewAfter() time.Duration {
	if r.StandbyRenewAfter > 0 {
		return r.StandbyRenewAfter
	}
	return credentials.Validity - 24*time.Hour
}

// removeStandby deletes a standby Migration; its finalizer cleans both clusters.
func (r *Reconciler) removeStandby(ctx context.Context, s *state, m *migrationv1alpha1.Migration, why string) error {
	if !m.DeletionTimestamp.IsZero() {
		return nil
	}
	if err := r.Delete(ctx, m); client.IgnoreNotFound(err) != nil {
		return err
	}
	klog.FromContext(ctx).Info("Standby removed", "migration", m.Name, "source", m.Spec.SourceCluster, "destination", m.Spec.DestinationCluster, "why", why)
	r.Recorder.Eventf(s.policy, m, corev1.EventTypeNormal, "StandbyRemoved", "DeleteMigration",
		"Standby %s (%s -> %s) removed: %s", m.Name, m.Spec.SourceCluster, m.Spec.DestinationCluster, why)
	return nil
}

func wanted(src, dst string) string {
	if dst == "" {
		return "none"
	}
	return src + " -> " + dst
}

func (s *state) setStandby(status metav1.ConditionStatus, reason, msg string) {
	s.standby = &metav1.Condition{Type: migrationv1alpha1.ConditionStandby, Status: status, Reason: reason, Message: msg}
}

// failover turns the move src -> dst into a failover when src is lost (its
// ManagedCluster not Available) and a standby src -> dst holds a point:
// the standby is marked for the sequencing controller, and no move is
// created (its source could never send). It returns the standby marked.
func (r *Reconciler) failover(ctx context.Context, s *state, src, dst string) (*migrationv1alpha1.Migration, error) {
	sb, err := r.lostWithStandby(ctx, s, src, dst)
	if sb == nil || err != nil {
		return nil, err
	}
	patch := client.MergeFrom(sb.DeepCopy())
	if sb.Annotations == nil {
		sb.Annotations = map[string]string{}
	}
	sb.Annotations[migrationv1alpha1.FailoverAnnotation] = "true"
	if err := r.Patch(ctx, sb, patch); err != nil {
		return nil, err
	}
	s.standbys = slices.DeleteFunc(s.standbys, func(m migrationv1alpha1.Migration) bool { return m.UID == sb.UID })
	klog.FromContext(ctx).Info("Failover", "migration", sb.Name, "lost", src, "standby", dst)
	r.Recorder.Eventf(s.placement, sb, corev1.EventTypeWarning, "Failover", "Failover",
		"Placement moved the app from %s, which is not Available, to %s: failing over to standby %s", src, dst, sb.Name)
	return sb, nil
}

// awaitsSource reports that a move has not yet heard from its source
// cluster: it waits for the size of the source PVCs (or has not started).
func awaitsSource(m *migrationv1alpha1.Migration) bool {
	switch m.CurrentPhase() {
	case migrationv1alpha1.PhasePending:
		return true
	case migrationv1alpha1.PhasePreparing:
		return m.Status.Reason == migration.ReasonStarted || m.Status.Reason == migration.ReasonWaitingForSourceVolumes
	}
	return false
}

// lostWithStandby returns the live standby from src (to dst, or to any
// cluster when dst is "") if src is lost: OCM reports it not Available
// (False, or Unknown once its lease lapsed). Otherwise a change away from
// src is a planned move, and the standby makes way.
func (r *Reconciler) lostWithStandby(ctx context.Context, s *state, src, dst string) (*migrationv1alpha1.Migration, error) {
	var sb *migrationv1alpha1.Migration
	for i := range s.standbys {
		m := &s.standbys[i]
		if m.Spec.SourceCluster == src && (dst == "" || m.Spec.DestinationCluster == dst) &&
			m.DeletionTimestamp.IsZero() && !m.CurrentPhase().IsFinished() {
			sb = m
		}
	}
	if sb == nil {
		return nil, nil
	}
	if lost, err := decision.Lost(ctx, r.APIReader, src); !lost || err != nil {
		return nil, err
	}
	return sb, nil
}
