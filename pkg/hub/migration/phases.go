package migration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	workv1 "open-cluster-management.io/api/work/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/credentials"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
	"github.com/stateful-migration/stateful-migration/pkg/hub/progress"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

// Reasons a user sees in status.reason and the Progressing condition.
const (
	ReasonPolicyNotFound          = "PolicyNotFound"
	ReasonRetryWait               = "RetryBackoff"
	ReasonWaitingForCleanup       = "WaitingForPreviousAttemptCleanup"
	ReasonStarted                 = "AttemptStarted"
	ReasonWaitingForSourceVolumes = "WaitingForSourceVolumes"
	ReasonWaitingForDestination   = "WaitingForDestination"
	ReasonDestinationFailed       = "DestinationFailed"
	ReasonSourceFailed            = "SourceFailed"
	ReasonPrepareTimeout          = "PrepareTimeout"
	ReasonSourceLost              = "SourceLostBeforeCopy"
	ReasonInitialSyncTimeout      = "InitialSyncTimeout"
	ReasonCatchUpTimeout          = "CatchUpTimeout"
	ReasonFinalSyncTimeout        = "FinalSyncTimeout"
	ReasonInitialSync             = "InitialSyncInProgress"
	ReasonCatchingUp              = "CatchingUp"
	ReasonPlacementNotEnrolled    = "PlacementNotEnrolled"
	ReasonWaitingForAppToStop     = "WaitingForAppToStop"
	ReasonFinalSync               = "FinalSyncInProgress"
	ReasonDigestMismatch          = "DigestMismatch"
	ReasonWaitingForApp           = "WaitingForAppAvailable"
	ReasonAppNotAvailable         = "AppNotAvailableInTime"
	ReasonReleasingSource         = "ReleasingSourceData"
	ReasonHandingOver             = "HandingOverVolumes"
	ReasonCompleted               = "Completed"
	ReasonAppAvailabilityUnknown  = "CompletedAppAvailabilityUnknown"
)

// pollLimit bounds how long a waiting step sleeps without an event.
const pollLimit = 30 * time.Second

func (r *Reconciler) pending(ctx context.Context, s *state) (ctrl.Result, error) {
	m := s.m
	if s.policy == nil {
		return r.failBeforeQuiesce(ctx, s, ReasonPolicyNotFound, fmt.Sprintf("MigrationPolicy %s not found", m.Spec.PolicyName), true)
	}
	if m.Status.Attempts > 0 {
		if left := r.backoff(m.Status.Attempts) - s.inPhase(); left > 0 {
			return ctrl.Result{RequeueAfter: left}, nil
		}
		// The previous attempt must be gone from both clusters, reports
		// included, before a new one starts under the same migration ID.
		if s.srcWork != nil || s.dstWork != nil || s.src != nil || s.dst != nil {
			// Reason and message keep the failure; the condition says what we wait for.
			setCond(m, ConditionProgressing, metav1.ConditionTrue, ReasonWaitingForCleanup, fmt.Sprintf(
				"Waiting for the agents to remove attempt %d (%s, %s)", m.Status.Attempts, describe("source", s.src), describe("destination", s.dst)))
			return ctrl.Result{RequeueAfter: pollLimit}, r.deleteWorks(ctx, s)
		}
	}
	reason, msg, err := r.admit(ctx, s)
	if err != nil {
		return ctrl.Result{}, err
	}
	if reason != "" {
		r.refuse(s, reason, msg)
		return ctrl.Result{}, nil
	}
	setCond(m, migrationv1alpha1.ConditionAdmitted, metav1.ConditionTrue, ReasonAdmitted,
		fmt.Sprintf("Created by MigrationPolicy %s; %s runs the app, the scheduler chose %s", s.policy.Name, m.Spec.SourceCluster, m.Spec.DestinationCluster))
	m.Status.Attempts++
	m.Status.Hooks = migrationv1alpha1.HooksStatus{}
	if m.Status.StartTime == nil {
		now := metav1.NewTime(s.now)
		m.Status.StartTime = &now
	}
	r.transition(s, migrationv1alpha1.PhasePreparing, ReasonStarted,
		fmt.Sprintf("Attempt %d/%d: preparing %s to receive the volumes", m.Status.Attempts, maxAttempts(s.policy), m.Spec.DestinationCluster))
	return ctrl.Result{}, nil
}

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
	creds, err := credentials.Ensure(ctx, r.Client, r.APIReader, s.m)
	if err != nil {
		return ctrl.Result{}, err
	}
	refs := volumeRefs(s.policy)
	src, err := r.ensureSourceWork(ctx, s, creds.Client, nil, false, false)
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
		s.wait(ReasonWaitingForSourceVolumes, fmt.Sprintf("Waiting for cluster %s to report the size of PVCs %v; check that they exist",
			s.m.Spec.SourceCluster, pendingVols))
		return requeue(left), nil
	}
	if _, err := r.ensureWork(ctx, dst, s.dstWork); err != nil {
		return ctrl.Result{}, err
	}
	endpoints, missing := destinationEndpoints(s.dst, refs)
	if !progress.DestinationAtLeast(s.dst, replv1.DestinationReady) || len(missing) > 0 {
		s.wait(ReasonWaitingForDestination, fmt.Sprintf("Waiting for cluster %s to report receivers for %v (%s)",
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
	if !progress.SourceAtLeast(s.src, replv1.SourceSyncing) {
		s.wait(ReasonInitialSync, fmt.Sprintf("Initial copy: %d of %d bytes (%s)", s.m.Status.Progress.BytesCopied,
			s.m.Status.Progress.BytesTotal, describe("source", s.src)))
		return requeue(remaining(s, s.policy.Spec.Timeouts.InitialSync)), nil
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
		s.wait(ReasonCatchingUp, why)
		return requeue(remaining(s, s.policy.Spec.Timeouts.CatchUp)), nil
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
	if err := r.ensureReplicating(ctx, s, false, false); err != nil {
		return ctrl.Result{}, true, err
	}
	s.mirror()
	return ctrl.Result{}, false, nil
}

func (r *Reconciler) quiescing(ctx context.Context, s *state) (ctrl.Result, error) {
	if err := r.setActual(ctx, s, "", s.m.Spec.SourceCluster); err != nil {
		if errors.Is(err, decision.ErrSchedulingEnabled) {
			return r.rollback(s, ReasonPlacementNotEnrolled, err.Error())
		}
		return ctrl.Result{}, err
	}
	if res, done := r.afterQuiesceChecks(s); done {
		return res, nil
	}
	// Ask for the final sync now: the agent starts it the moment no pod uses
	// the volumes, which it sees before this controller does.
	if err := r.askFinalSync(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	s.mirror()
	if s.src == nil || s.src.Protected == nil || !*s.src.Protected || s.src.PodsUsingVolumes == nil || *s.src.PodsUsingVolumes > 0 {
		pods := "unknown"
		if s.src != nil && s.src.PodsUsingVolumes != nil {
			pods = fmt.Sprint(*s.src.PodsUsingVolumes)
		}
		s.wait(ReasonWaitingForAppToStop, fmt.Sprintf("Waiting for the app to stop on %s: %s pod(s) still use its volumes",
			s.m.Spec.SourceCluster, pods))
		return requeue(remaining2(s, s.policy.Spec.Timeouts.FinalSync, s.m.Status.Timings.QuiesceStart)), nil
	}
	s.m.Status.Timings.Termination = &metav1.Duration{Duration: s.now.Sub(s.m.Status.Timings.QuiesceStart.Time)}
	r.transition(s, migrationv1alpha1.PhaseFinalSync, ReasonFinalSync,
		fmt.Sprintf("App stopped on %s after %s; final sync", s.m.Spec.SourceCluster, s.m.Status.Timings.Termination.Duration))
	return ctrl.Result{}, nil
}

// afterQuiesceChecks rolls back on a failure report or the final-sync timeout.
func (r *Reconciler) afterQuiesceChecks(s *state) (ctrl.Result, bool) {
	switch {
	case s.policy == nil:
		res, _ := r.rollback(s, ReasonPolicyNotFound, "MigrationPolicy deleted")
		return res, true
	case s.src.Failed():
		res, _ := r.rollback(s, ReasonSourceFailed, "Source "+s.m.Spec.SourceCluster+": "+s.src.Error())
		return res, true
	case s.dst.Failed():
		res, _ := r.rollback(s, ReasonDestinationFailed, "Destination "+s.m.Spec.DestinationCluster+": "+s.dst.Error())
		return res, true
	}
	if _, expired := s.timeout(s.policy.Spec.Timeouts.FinalSync, s.m.Status.Timings.QuiesceStart.Time); expired {
		res, _ := r.rollback(s, ReasonFinalSyncTimeout, fmt.Sprintf("Data not verified within %s of stopping the app: %s",
			s.policy.Spec.Timeouts.FinalSync.Duration, s.m.Status.Message))
		return res, true
	}
	return ctrl.Result{}, false
}

// destinationWork builds the destination work from the PVC sizes the source
// work's probes report; final tells the agent the final sync has started.
func (r *Reconciler) destinationWork(s *state, src *workv1.ManifestWork, server credentials.Pair, final bool) (*workv1.ManifestWork, []string, error) {
	refs := volumeRefs(s.policy)
	vols, pending, err := work.ProbedVolumes(src, refs, classMap(s.policy))
	if err != nil || len(pending) > 0 {
		return nil, pending, err
	}
	spec := work.DestinationSpec{
		Common:             r.common(s, s.m.Spec.DestinationCluster, agentNamespace(s.dstAddon), server, s.policy.Spec.Hooks.PostLaunch != nil),
		Volumes:            vols,
		EndpointType:       replv1.EndpointType(s.policy.Spec.Endpoint.Type),
		ServiceAnnotations: s.policy.Spec.Endpoint.ServiceAnnotations,
		FinalSync:          final,
		HubVerified:        s.hubVerified(),
		PostLaunchHook:     s.policy.Spec.Hooks.PostLaunch,
		Standby:            s.m.Spec.Standby,
		Promote:            s.m.Status.Failover != nil,
	}
	if sb := s.policy.Spec.Standby; s.m.Spec.Standby && sb != nil {
		exact, after := sb.ExactPoints()
		spec.ExactPoints = exact
		if after > 0 {
			spec.PerFileAfter = &metav1.Duration{Duration: after}
		}
	}
	w, err := work.Destination(spec)
	return w, nil, err
}

// askFinalSync asks both sides for the final sync: finalSync and the quiesce
// start on the ReplicationSource, finalSync on the ReplicationDestination,
// so that its agent watches the receivers closely.
func (r *Reconciler) askFinalSync(ctx context.Context, s *state) error {
	if err := r.ensureReplicating(ctx, s, true, false); err != nil {
		return err
	}
	return r.rewriteDestination(ctx, s, true)
}

// rewriteDestination brings the destination work in step with the
// Migration: final sync asked (final), hubVerified, promotion.
func (r *Reconciler) rewriteDestination(ctx context.Context, s *state, final bool) error {
	if s.srcWork == nil || s.dstWork == nil {
		return nil
	}
	creds, err := credentials.Ensure(ctx, r.Client, r.APIReader, s.m)
	if err != nil {
		return err
	}
	dst, pending, err := r.destinationWork(s, s.srcWork, creds.Server, final)
	if err != nil || len(pending) > 0 {
		return err
	}
	_, err = r.ensureWork(ctx, dst, s.dstWork)
	return err
}

func (r *Reconciler) finalSync(ctx context.Context, s *state) (ctrl.Result, error) {
	if err := r.setActual(ctx, s, "", s.m.Spec.SourceCluster); err != nil && !errors.Is(err, decision.ErrSchedulingEnabled) {
		return ctrl.Result{}, err
	}
	if res, done := r.afterQuiesceChecks(s); done {
		return res, nil
	}
	if err := r.askFinalSync(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	s.mirror()
	r.noteColdFinalSync(s)
	srcOK := progress.SourceAtLeast(s.src, replv1.SourceVerified)
	dstOK := progress.DestinationAtLeast(s.dst, replv1.DestinationVerified)
	if !srcOK || !dstOK {
		s.wait(ReasonFinalSync, fmt.Sprintf("Final sync: %s, %s", describe("source", s.src), describe("destination", s.dst)))
		return requeue(remaining2(s, s.policy.Spec.Timeouts.FinalSync, s.m.Status.Timings.QuiesceStart)), nil
	}
	if s.src.Digest == "" || s.src.Digest != s.dst.Digest {
		return r.rollback(s, ReasonDigestMismatch, fmt.Sprintf("Source digest %q differs from destination digest %q", s.src.Digest, s.dst.Digest))
	}
	t := &s.m.Status.Timings
	t.FinalSync = &metav1.Duration{Duration: s.inPhase()}
	now := metav1.NewTime(s.now)
	t.LaunchStart = &now
	s.m.Status.Digest = s.src.Digest
	r.transition(s, migrationv1alpha1.PhaseLaunching, ReasonWaitingForApp,
		fmt.Sprintf("Data verified (digest %s) after %s; adding %s to Placement %s", short(s.src.Digest), t.FinalSync.Duration,
			s.m.Spec.DestinationCluster, s.m.Spec.PlacementName))
	return ctrl.Result{}, nil
}

// noteColdFinalSync says on the Migration whether the final sync ran in the
// sender that had been tracking changes (cheap) or in a restarted one that
// rescanned the whole volume while the app was down (rare; a Warning event).
func (r *Reconciler) noteColdFinalSync(s *state) {
	c := metav1.Condition{Type: migrationv1alpha1.ConditionFinalSyncInRunningSender, ObservedGeneration: s.m.Generation}
	switch {
	case s.src != nil && s.src.FinalSyncCold:
		c.Status, c.Reason = metav1.ConditionFalse, "SenderRestarted"
		c.Message = "The sender that tracked changes since the initial copy was lost (pod or node restart); a new one " +
			"rescanned and rehashed the whole volume while the app was down, so T_copy grew with the volume"
		if !meta.IsStatusConditionFalse(s.m.Status.Conditions, c.Type) {
			r.Recorder.Eventf(s.m, nil, corev1.EventTypeWarning, "SenderRestarted", "FinalSync", c.Message)
		}
	case progress.SourceAtLeast(s.src, replv1.SourceVerified) && s.src.FinalPassFull:
		c.Status, c.Reason = metav1.ConditionTrue, "RunningSenderScannedAll"
		c.Message = "The final sync ran in the sender that had tracked every change, but its final pass listed the whole volume " +
			"(so T_copy grew with the number of files): " + fullPassWhy(s.src.UnseenChange, s.policy)
	case progress.SourceAtLeast(s.src, replv1.SourceVerified):
		c.Status, c.Reason = metav1.ConditionTrue, "RunningSender"
		c.Message = "The final sync ran in the sender that had tracked every change since the initial copy, and looked only at what changed"
	default:
		return
	}
	meta.SetStatusCondition(&s.m.Status.Conditions, c)
}

// fullPassWhy says why a running sender's final pass listed everything.
func fullPassWhy(unseen string, p *migrationv1alpha1.MigrationPolicy) string {
	switch {
	case unseen != "":
		return fmt.Sprintf("a periodic rescan found %q changed without an inotify event (a file written through a mapping it kept open, "+
			"or a writer on another node), so inotify is not trusted on this volume", unseen)
	case p != nil && p.Spec.Verification == migrationv1alpha1.VerifyFull:
		return "the policy asks for verification: Full"
	}
	return "the volume's filesystem is one other nodes may write (NFS, CephFS, SMB, FUSE), inotify lost events, or hard links changed"
}

func (r *Reconciler) launching(ctx context.Context, s *state) (ctrl.Result, error) {
	if err := r.setActual(ctx, s, s.m.Spec.DestinationCluster, s.m.Spec.SourceCluster); err != nil && !errors.Is(err, decision.ErrSchedulingEnabled) {
		return ctrl.Result{}, err
	}
	if s.m.Status.Failover != nil {
		if err := r.ensurePromoted(ctx, s); err != nil { // hubVerified: hand the PVCs to the app
			return ctrl.Result{}, err
		}
		if err := r.markFencedSource(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	} else if s.policy != nil && replicating(s) {
		// Tell both agents the hub verified the data (hubVerified): the
		// destination watches the app's pods, the source marks its PVCs.
		if err := r.askFinalSync(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	available, known, why, err := r.appAvailable(ctx, s)
	if err != nil {
		return ctrl.Result{}, err
	}
	t := &s.m.Status.Timings
	switch {
	case !known:
		// Nothing tells us the app runs: complete, but never release source data.
		return r.complete(ctx, s, false, ReasonAppAvailabilityUnknown, why)
	case available:
		if t.Launch == nil {
			t.Launch = &metav1.Duration{Duration: s.now.Sub(t.LaunchStart.Time)}
			var down time.Duration
			for _, d := range []*metav1.Duration{t.Termination, t.FinalSync, t.Launch} {
				if d != nil {
					down += d.Duration
				}
			}
			t.Downtime = &metav1.Duration{Duration: down}
			downtimeSeconds.Observe(down.Seconds())
		}
		return r.complete(ctx, s, true, ReasonCompleted, fmt.Sprintf("App Ready on %s; T_term %s, T_copy %s, T_launch %s, T_down %s",
			s.m.Spec.DestinationCluster, dur(t.Termination), dur(t.FinalSync), dur(t.Launch), dur(t.Downtime)))
	}
	reason, lateReason := ReasonWaitingForApp, ReasonAppNotAvailable
	if s.m.Status.Hooks.PostLaunch != nil {
		reason, lateReason = ReasonWaitingForPostLaunch, ReasonPostLaunchCheckFailed
	}
	var limit *metav1.Duration
	if s.policy != nil {
		limit = s.policy.Spec.Timeouts.Launch
	}
	left, expired := s.timeout(limit, t.LaunchStart.Time)
	if expired {
		// Verified data is on the destination: no rollback. Wait, keep the
		// source data, and tell the user.
		reason = lateReason
		if s.m.Status.Reason != reason {
			r.Recorder.Eventf(s.m, nil, corev1.EventTypeWarning, reason, "Launch",
				"App not Available on %s within %s: %s; source data is kept", s.m.Spec.DestinationCluster, limit.Duration, why)
		}
		left = pollLimit
	}
	s.wait(reason, why)
	return requeue(left), nil
}

// complete releases source data when asked and allowed, deletes both works
// and the hub credentials, then records Completed.
func (r *Reconciler) complete(ctx context.Context, s *state, appAvailable bool, reason, msg string) (ctrl.Result, error) {
	// After a failover the source is lost: nothing to release there.
	if appAvailable && s.policy != nil && s.policy.Spec.SourceDataPolicy == migrationv1alpha1.SourceDataDelete && replicating(s) && s.m.Status.Failover == nil {
		if err := r.ensureReplicating(ctx, s, true, true); err != nil {
			return ctrl.Result{}, err
		}
		if !releaseApplied(s) {
			s.wait(ReasonReleasingSource, "Waiting for cluster "+s.m.Spec.SourceCluster+" to apply releaseSource before cleanup")
			return requeue(pollLimit), nil
		}
	}
	if why := handOverPending(s); why != "" {
		s.wait(ReasonHandingOver, why)
		return requeue(hubVerifiedWait - s.now.Sub(s.m.Status.Timings.LaunchStart.Time)), nil
	}
	if err := r.cleanup(ctx, s, true); err != nil {
		return ctrl.Result{}, err
	}
	now := metav1.NewTime(s.now)
	s.m.Status.CompletionTime = &now
	r.transition(s, migrationv1alpha1.PhaseCompleted, reason, msg)
	s.setSucceeded(metav1.ConditionTrue, reason, msg)
	bytesCopiedTotal.Add(float64(s.m.Status.Progress.BytesCopied))
	r.placementEvent(s, corev1.EventTypeNormal, "MigrationCompleted", "Migration %s: app moved from %s to %s. %s",
		s.m.Name, s.m.Spec.SourceCluster, s.m.Spec.DestinationCluster, msg)
	return ctrl.Result{}, nil
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

// hubVerifiedWait bounds how long completion waits for the agents to apply
// hubVerified (an unreachable cluster must not hold the migration forever;
// its PVCs then keep their labels, docs/protocol.md "PVC lifecycle").
const hubVerifiedWait = time.Minute

// handOverPending says what completion still waits for: the source agent
// labelling its PVCs moved-out and the destination agent knowing it hands
// its PVCs to the app, both before their works go. "" when done or waited
// long enough.
func handOverPending(s *state) string {
	t := s.m.Status.Timings.LaunchStart
	if !s.hubVerified() || t == nil || s.now.Sub(t.Time) >= hubVerifiedWait {
		return ""
	}
	var waiting []string
	if s.srcWork != nil && work.HasReplication(s.srcWork) && (s.src == nil || !s.src.MovedOut) && s.m.Status.Failover == nil {
		waiting = append(waiting, fmt.Sprintf("cluster %s to label the source PVCs moved-out", s.m.Spec.SourceCluster))
	}
	if s.dstWork != nil && work.HasReplication(s.dstWork) && (s.dst == nil || !s.dst.HubVerified) {
		waiting = append(waiting, fmt.Sprintf("cluster %s to take hubVerified (hand the PVCs to the app)", s.m.Spec.DestinationCluster))
	}
	if len(waiting) == 0 {
		return ""
	}
	return "Waiting for " + strings.Join(waiting, " and ")
}

// failBeforeQuiesce ends an attempt while the app still runs on the source:
// actual is untouched, both works are removed, and the migration is retried
// with backoff until spec.maxAttempts, then Failed.
func (r *Reconciler) failBeforeQuiesce(ctx context.Context, s *state, reason, msg string, terminal bool) (ctrl.Result, error) {
	m := s.m
	if err := r.deleteWorks(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	klog.FromContext(ctx).Info("Attempt failed", "phase", m.CurrentPhase(), "attempt", m.Status.Attempts, "reason", reason, "message", msg)
	r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, reason, "Fail", "Attempt %d failed in %s: %s", m.Status.Attempts, m.CurrentPhase(), msg)
	if !terminal && s.policy != nil && m.Status.Attempts < maxAttempts(s.policy) {
		wait := r.backoff(m.Status.Attempts)
		r.transition(s, migrationv1alpha1.PhasePending, reason,
			fmt.Sprintf("%s; the app keeps running on %s; attempt %d/%d failed, retrying in %s",
				msg, m.Spec.SourceCluster, m.Status.Attempts, maxAttempts(s.policy), wait))
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	if err := credentials.Delete(ctx, r.Client, r.APIReader, m); err != nil {
		return ctrl.Result{}, err
	}
	now := metav1.NewTime(s.now)
	m.Status.CompletionTime = &now
	full := fmt.Sprintf("%s; the app keeps running on %s (after %d attempt(s))", msg, m.Spec.SourceCluster, m.Status.Attempts)
	r.transition(s, migrationv1alpha1.PhaseFailed, reason, full)
	s.setSucceeded(metav1.ConditionFalse, reason, full)
	r.placementEvent(s, corev1.EventTypeWarning, "MigrationFailed", "Migration %s failed: %s", m.Name, full)
	return ctrl.Result{}, nil
}

// rollback records RollingBack; the rollingBack step then does the work.
func (r *Reconciler) rollback(s *state, reason, msg string) (ctrl.Result, error) {
	r.Recorder.Eventf(s.m, nil, corev1.EventTypeWarning, reason, "RollBack", "Rolling back to %s: %s", s.m.Spec.SourceCluster, msg)
	r.transition(s, migrationv1alpha1.PhaseRollingBack, reason, msg)
	return ctrl.Result{}, nil
}

// rollingBack gives the app back to the source (its data is intact: PVs
// Retain, PVCs protected), then cleans both clusters.
func (r *Reconciler) rollingBack(ctx context.Context, s *state) (ctrl.Result, error) {
	if err := r.setActual(ctx, s, s.m.Spec.SourceCluster, s.m.Spec.DestinationCluster); err != nil && !errors.Is(err, decision.ErrSchedulingEnabled) {
		return ctrl.Result{}, err
	}
	if err := r.cleanup(ctx, s, true); err != nil {
		return ctrl.Result{}, err
	}
	now := metav1.NewTime(s.now)
	s.m.Status.CompletionTime = &now
	msg := fmt.Sprintf("App restored on %s: %s", s.m.Spec.SourceCluster, s.m.Status.Message)
	reason := s.m.Status.Reason
	r.transition(s, migrationv1alpha1.PhaseRolledBack, reason, msg)
	s.setSucceeded(metav1.ConditionFalse, reason, msg)
	r.placementEvent(s, corev1.EventTypeWarning, "MigrationRolledBack", "Migration %s rolled back: %s", s.m.Name, msg)
	return ctrl.Result{}, nil
}

func (s *state) setSucceeded(status metav1.ConditionStatus, reason, msg string) {
	setCond(s.m, migrationv1alpha1.ConditionSucceeded, status, reason, msg)
}

func (r *Reconciler) backoff(attempts int32) time.Duration {
	d := r.RetryBackoff
	for i := int32(1); i < attempts && d < r.MaxRetryBackoff; i++ {
		d *= 2
	}
	return min(d, r.MaxRetryBackoff)
}

func maxAttempts(p *migrationv1alpha1.MigrationPolicy) int32 {
	if p == nil || p.Spec.MaxAttempts <= 0 {
		return 3
	}
	return p.Spec.MaxAttempts
}

// cutoverAllowed applies the policy's cutover bounds to the source report.
func cutoverAllowed(p *migrationv1alpha1.MigrationPolicy, src *progress.Report) (bool, string) {
	if src == nil || src.DecodeError != nil {
		return false, "Waiting for a readable source report"
	}
	if !progress.SourceAtLeast(src, replv1.SourceSyncing) {
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

func requeue(d time.Duration) ctrl.Result {
	if d <= 0 || d > pollLimit {
		d = pollLimit
	}
	return ctrl.Result{RequeueAfter: d}
}

func remaining(s *state, d *metav1.Duration) time.Duration {
	left, _ := s.timeout(d, s.m.Status.PhaseTransitionTime.Time)
	return left
}

func remaining2(s *state, d *metav1.Duration, since *metav1.Time) time.Duration {
	if since == nil {
		return pollLimit
	}
	left, _ := s.timeout(d, since.Time)
	return left
}

func dur(d *metav1.Duration) string {
	if d == nil {
		return "-"
	}
	return d.Duration.Round(time.Millisecond).String()
}

func short(d string) string { return d[:min(12, len(d))] }
