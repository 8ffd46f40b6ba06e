package migration

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	workv1 "open-cluster-management.io/api/work/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
	"github.com/stateful-migration/stateful-migration/pkg/hub/reports"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

func (r *Reconciler) preparing(ctx context.Context, s *state) (ctrl.Result, error) {
	if s.policy == nil {
		return r.failBeforeQuiesce(ctx, s, ReasonPolicyNotFound, "MigrationPolicy deleted", true)
	}
	left, expired := s.timeout(s.policy.Spec.Timeouts.Prepare, s.m.Status.PhaseTransitionTime.Time)
	switch {
	case s.dst.Failed():
		return r.failBeforeQuiesce(ctx, s, ReasonDestinationFailed, "Destination "+s.m.Spec.DestinationCluster+": "+s.dst.Error(), false)
	case s.src.Failed():
		return r.failBeforeQuiesce(ctx, s, ReasonSourceFailed, "Source "+s.m.Spec.SourceCluster+": "+s.src.Error(), false)
	case expired:
		return r.failBeforeQuiesce(ctx, s, ReasonPrepareTimeout, fmt.Sprintf("Destination not ready within %s: %s",
			s.policy.Spec.Timeouts.Prepare.Duration, s.m.Status.Message), false)
	}
	creds, err := r.creds.Ensure(ctx, r.Client, r.APIReader, s.m)
	if err != nil {
		return ctrl.Result{}, err
	}
	refs := volumeRefs(s.policy)
	src, err := r.ensureSourceWork(ctx, s, creds.Client, srcProbe)
	if err != nil {
		return ctrl.Result{}, err
	}
	dst, pendingVols, err := r.destinationWork(s, src, creds.Server, false)
	if err != nil {
		return r.failBeforeQuiesce(ctx, s, ReasonWaitingForSourceVolumes, err.Error(), false)
	}
	if len(pendingVols) > 0 {
		if lost, err := r.lostBeforeItAnswered(ctx, s); lost != "" || err != nil {
			if err != nil {
				return ctrl.Result{}, err
			}
			return r.failBeforeQuiesce(ctx, s, ReasonSourceLost, lost, true)
		}
		s.progressing(ReasonWaitingForSourceVolumes, fmt.Sprintf("Waiting for cluster %s to report the size of PVCs %v; check that they exist",
			s.m.Spec.SourceCluster, pendingVols))
		return requeue(left), nil
	}
	if _, err := r.ensureWork(ctx, dst, s.dstWork); err != nil {
		return ctrl.Result{}, err
	}
	endpoints, missing := destinationEndpoints(s.dst, refs)
	if !reports.DestinationAtLeast(s.dst, replv1.DestinationReady) || len(missing) > 0 {
		s.progressing(ReasonWaitingForDestination, fmt.Sprintf("Waiting for cluster %s to report receivers for %v (%s)",
			s.m.Spec.DestinationCluster, missing, describe("destination", s.dst)))
		return requeue(left), nil
	}
	r.transition(s, migrationv1alpha1.PhaseInitialSync, ReasonInitialSync,
		fmt.Sprintf("Destination ready at %v; copying from %s while the app runs", endpoints, s.m.Spec.SourceCluster))
	return ctrl.Result{}, nil
}

func (r *Reconciler) initialSync(ctx context.Context, s *state) (ctrl.Result, error) {
	if res, done, err := r.replicate(ctx, s, s.policy.Spec.Timeouts.InitialSync, ReasonInitialSyncTimeout); done {
		return res, err
	}
	if !reports.SourceAtLeast(s.src, replv1.SourceSyncing) {
		s.progressing(ReasonInitialSync, fmt.Sprintf("Initial copy: %d of %d bytes (%s)", s.m.Status.Progress.BytesCopied,
			s.m.Status.Progress.BytesTotal, describe("source", s.src)))
		return requeue(leftInPhase(s, s.policy.Spec.Timeouts.InitialSync)), nil
	}
	r.transition(s, migrationv1alpha1.PhaseSyncing, ReasonCatchingUp, "Initial copy done; copying changes continuously")
	return ctrl.Result{}, nil
}

func (r *Reconciler) syncing(ctx context.Context, s *state) (ctrl.Result, error) {
	if s.m.Spec.Standby { // no catch-up deadline: a standby replicates for as long as it is kept
		if s.m.Annotations[migrationv1alpha1.FailoverAnnotation] == "true" {
			return r.beginFailover(s), nil
		}
		if res, done, err := r.replicate(ctx, s, nil, ""); done {
			return res, err
		}
		// The policy's points may have changed: its receivers follow.
		if err := r.rewriteDestination(ctx, s, false); err != nil {
			return ctrl.Result{}, err
		}
		return r.standby(s), nil
	}
	if res, done, err := r.replicate(ctx, s, s.policy.Spec.Timeouts.CatchUp, ReasonCatchUpTimeout); done {
		return res, err
	}
	if s.placement == nil || !decision.IsSchedulingDisabled(s.placement) {
		return r.failBeforeQuiesce(ctx, s, ReasonPlacementNotEnrolled,
			fmt.Sprintf("Placement %s is gone or no longer enrolled: its decisions cannot be sequenced", s.m.Spec.PlacementName), false)
	}
	ok, why := cutoverAllowed(s.policy, s.src)
	if res, done, err := r.preQuiesceHook(ctx, s, ok); done {
		return res, err
	}
	if !ok {
		s.progressing(ReasonCatchingUp, why)
		return requeue(leftInPhase(s, s.policy.Spec.Timeouts.CatchUp)), nil
	}
	now := metav1.NewTime(s.now)
	s.m.Status.Timings.QuiesceStart = &now
	r.transition(s, migrationv1alpha1.PhaseQuiescing, ReasonWaitingForAppToStop,
		fmt.Sprintf("%s; removing %s from Placement %s", why, s.m.Spec.SourceCluster, s.m.Spec.PlacementName))
	return ctrl.Result{}, nil
}

// replicate is the common part of InitialSync and Syncing: fail on a
// report or a timeout, keep the source work in step, mirror progress.
func (r *Reconciler) replicate(ctx context.Context, s *state, timeout *metav1.Duration, timeoutReason string) (ctrl.Result, bool, error) {
	if s.policy == nil {
		res, err := r.failBeforeQuiesce(ctx, s, ReasonPolicyNotFound, "MigrationPolicy deleted", true)
		return res, true, err
	}
	if _, expired := s.timeout(timeout, s.m.Status.PhaseTransitionTime.Time); expired {
		res, err := r.failBeforeQuiesce(ctx, s, timeoutReason, fmt.Sprintf("Phase %s overran %s: %s", s.m.CurrentPhase(), timeout.Duration, s.m.Status.Message), false)
		return res, true, err
	}
	if s.src.Failed() || s.dst.Failed() {
		reason, msg := ReasonSourceFailed, "Source "+s.m.Spec.SourceCluster+": "+s.src.Error()
		if s.dst.Failed() {
			reason, msg = ReasonDestinationFailed, "Destination "+s.m.Spec.DestinationCluster+": "+s.dst.Error()
		}
		res, err := r.failBeforeQuiesce(ctx, s, reason, msg, false)
		return res, true, err
	}
	if err := r.ensureReplicating(ctx, s, srcReplicate); err != nil {
		return ctrl.Result{}, true, err
	}
	s.mirror()
	return ctrl.Result{}, false, nil
}

// replicating: both works still carry their replication objects, so
// cleanup (deleteWorks) has not begun; rewriting them now would undo it.
func replicating(s *state) bool {
	for _, w := range []*workv1.ManifestWork{s.srcWork, s.dstWork} {
		if w == nil || !w.DeletionTimestamp.IsZero() || !work.HasReplication(w) {
			return false
		}
	}
	return true
}

// cutoverAllowed applies the policy's cutover bounds to the source report.
func cutoverAllowed(p *migrationv1alpha1.MigrationPolicy, src *reports.Report) (bool, string) {
	if src == nil || src.DecodeError != nil {
		return false, "Waiting for a readable source report"
	}
	if !reports.SourceAtLeast(src, replv1.SourceSyncing) {
		return false, describe("source", src)
	}
	if src.Protected == nil || !*src.Protected {
		return false, "Waiting for the source volumes to be protected (PV Retain and PVC finalizer)"
	}
	maxLag := int64(64 << 20)
	if p.Spec.Cutover.MaxLagBytes != nil {
		maxLag = *p.Spec.Cutover.MaxLagBytes
	}
	maxEst := 10 * time.Second
	if p.Spec.Cutover.MaxEstimatedFinalSync != nil {
		maxEst = p.Spec.Cutover.MaxEstimatedFinalSync.Duration
	}
	// The agent's estimate covers the final pass, verification and the
	// signal to the sender; lag over throughput is the floor when it has none.
	est := time.Duration(src.EstimatedFinalSyncMillis) * time.Millisecond
	switch {
	case src.LagBytes == 0:
	case src.Throughput <= 0 && est == 0:
		return false, fmt.Sprintf("Lag %d bytes and no throughput measured yet", src.LagBytes)
	case src.Throughput > 0:
		est = max(est, time.Duration(float64(src.LagBytes)/float64(src.Throughput)*float64(time.Second)))
	}
	if src.LagBytes > maxLag || est > maxEst {
		return false, fmt.Sprintf("Lag %d bytes (bound %d), estimated final sync %s (bound %s)", src.LagBytes, maxLag, est.Round(time.Millisecond), maxEst)
	}
	return true, fmt.Sprintf("Lag %d bytes, estimated final sync %s within bounds", src.LagBytes, est.Round(time.Millisecond))
}
