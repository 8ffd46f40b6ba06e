package migration

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
	"github.com/stateful-migration/stateful-migration/pkg/hub/reports"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

// Reasons of a failover (docs/dr.md).
const (
	ReasonNoPoint       = "StandbyHasNoPoint"
	ReasonPromoting     = "PromotingStandby"
	ReasonPromoteFailed = "PromoteFailed"
	ReasonPointMismatch = "PointMismatch"
)

// beginFailover records what the failover starts from and enters
// FailingOver; a standby without a committed point has nothing to start
// the app on, and says so.
func (r *Reconciler) beginFailover(s *state) ctrl.Result {
	st := s.m.Status.Standby
	if st == nil || st.PointTime == nil {
		s.progressing(ReasonNoPoint, fmt.Sprintf("Failover to %s asked, but the standby has committed no whole pass yet: nothing to start the app on",
			s.m.Spec.DestinationCluster))
		return ctrl.Result{RequeueAfter: standbyPoll}
	}
	s.m.Status.Failover = &migrationv1alpha1.FailoverStatus{FencedCluster: s.m.Spec.SourceCluster, PointTime: st.PointTime,
		PointDigest: st.PointDigest, PointExact: st.PointExact, RPOSeconds: max(0, int64(s.now.Sub(st.PointTime.Time).Seconds()))}
	r.Recorder.Eventf(s.m, nil, corev1.EventTypeWarning, "FailoverStarted", "Failover",
		"Cluster %s lost: failing over to the standby on %s, from its point of %s, %s (RPO %ds)", s.m.Spec.SourceCluster,
		s.m.Spec.DestinationCluster, st.PointTime.UTC().Format("2006-01-02T15:04:05Z"), pointKind(st.PointExact), s.m.Status.Failover.RPOSeconds)
	r.transition(s, migrationv1alpha1.PhaseFailingOver, ReasonPromoting, fmt.Sprintf("Removing %s from Placement %s; promoting the standby on %s",
		s.m.Spec.SourceCluster, s.m.Spec.PlacementName, s.m.Spec.DestinationCluster))
	return ctrl.Result{}
}

// failingOver fences the lost cluster out of the decision (OCM then
// deletes the app's ManifestWork there: a returning work agent removes the
// app instead of running it), asks the standby's agent to promote, and
// launches once the promoted digest is the point's. The lost cluster's
// replication work stays until its returning agent has labelled the stale
// PVCs moved-out (markFencedSource).
func (r *Reconciler) failingOver(ctx context.Context, s *state) (ctrl.Result, error) {
	f := s.m.Status.Failover
	if err := r.setActual(ctx, s, "", f.FencedCluster); err != nil && !errors.Is(err, decision.ErrSchedulingEnabled) {
		return ctrl.Result{}, err
	}
	if err := r.ensurePromoted(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	switch {
	case s.dst.Failed():
		msg := fmt.Sprintf("The standby on %s could not be promoted: %s; the app runs nowhere: repair the volumes or bring %s back and edit the Placement",
			s.m.Spec.DestinationCluster, s.dst.Error(), f.FencedCluster)
		return r.endFailover(s, ReasonPromoteFailed, msg)
	case !reports.DestinationAtLeast(s.dst, replv1.DestinationVerified):
		s.progressing(ReasonPromoting, fmt.Sprintf("Promoting the standby on %s to its point of %s (%s)", s.m.Spec.DestinationCluster,
			f.PointTime.UTC().Format("2006-01-02T15:04:05Z"), describe("destination", s.dst)))
		return requeue(pollLimit), nil
	case s.dst.Digest != f.PointDigest:
		return r.endFailover(s, ReasonPointMismatch, fmt.Sprintf("The promoted volumes' digest %q is not the point's %q: not starting the app on them",
			s.dst.Digest, f.PointDigest))
	}
	now := metav1.NewTime(s.now)
	s.m.Status.Timings.LaunchStart = &now
	s.m.Status.Digest = s.dst.Digest
	r.transition(s, migrationv1alpha1.PhaseLaunching, ReasonWaitingForApp, fmt.Sprintf("Standby promoted to its point (digest %s, RPO %ds); adding %s to Placement %s",
		short(f.PointDigest), f.RPOSeconds, s.m.Spec.DestinationCluster, s.m.Spec.PlacementName))
	return ctrl.Result{}, nil
}

// ensurePromoted keeps the standby's destination work asking for the
// promotion (and, once the digest is checked, hubVerified).
func (r *Reconciler) ensurePromoted(ctx context.Context, s *state) error {
	if s.dstWork != nil && !s.dstWork.DeletionTimestamp.IsZero() {
		return nil
	}
	return r.rewriteDestination(ctx, s, false)
}

// markFencedSource tells the lost cluster's agent, through the standby's
// source work, that the app left it for good (hubVerified): when the
// cluster returns, its agent labels the stale PVCs moved-out, so that a
// failback reuses them and copies only what differs. The work stays until
// the agent has done so (keepFencedSource), however long the cluster is
// gone: removed earlier, the agent would find it deleted unlabelled, as
// after a rollback, and a failback would refuse the PVCs.
func (r *Reconciler) markFencedSource(ctx context.Context, s *state) error {
	if !replicating(s) {
		return nil
	}
	return r.ensureReplicating(ctx, s, srcReplicate)
}

// keepFencedSource: the source work of a failover waits for its returning
// agent to label the PVCs moved-out before it is removed (unless the
// Migration itself is being deleted).
func keepFencedSource(s *state) bool {
	return s.m.Status.Failover != nil && s.hubVerified() && s.m.DeletionTimestamp.IsZero() &&
		s.srcWork != nil && work.HasReplication(s.srcWork) && (s.src == nil || !s.src.MovedOut)
}

// endFailover ends a failover that cannot start the app: there is no
// source to go back to, so it fails for good, leaving the volumes as they
// are for the user to inspect.
func (r *Reconciler) endFailover(s *state, reason, msg string) (ctrl.Result, error) {
	now := metav1.NewTime(s.now)
	s.m.Status.CompletionTime = &now
	r.Recorder.Eventf(s.m, nil, corev1.EventTypeWarning, reason, "Failover", msg)
	r.transition(s, migrationv1alpha1.PhaseFailed, reason, msg)
	s.setSucceeded(metav1.ConditionFalse, reason, msg)
	return ctrl.Result{}, nil
}

// lostBeforeItAnswered explains why a move whose source never answered
// ends: its cluster is lost and a standby of the same pair holds a point.
// The Placement edit was made before OCM said so, and a move from a dead
// cluster would only wait for its Prepare timeout; ended, it leaves the
// edit to the placement controller, which fails over to the standby.
func (r *Reconciler) lostBeforeItAnswered(ctx context.Context, s *state) (string, error) {
	if s.m.Spec.Standby {
		return "", nil
	}
	lost, err := decision.Lost(ctx, r.APIReader, s.m.Spec.SourceCluster)
	if !lost || err != nil {
		return "", err
	}
	var l migrationv1alpha1.MigrationList
	if err := r.List(ctx, &l, client.InNamespace(s.m.Namespace),
		client.MatchingLabels{migrationv1alpha1.PolicyLabel: s.m.Spec.PolicyName}); err != nil {
		return "", err
	}
	for _, sb := range l.Items {
		if sb.Spec.Standby && sb.Spec.SourceCluster == s.m.Spec.SourceCluster && sb.Spec.DestinationCluster == s.m.Spec.DestinationCluster &&
			sb.DeletionTimestamp.IsZero() && sb.Status.Standby != nil && sb.Status.Standby.PointTime != nil {
			return fmt.Sprintf("Cluster %s was lost before it answered; the standby %s on %s holds a point of %s: it fails over instead",
				s.m.Spec.SourceCluster, sb.Name, s.m.Spec.DestinationCluster, sb.Status.Standby.PointTime.UTC().Format("2006-01-02T15:04:05Z")), nil
		}
	}
	return "", nil
}
