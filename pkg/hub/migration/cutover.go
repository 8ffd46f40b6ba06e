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
	workv1 "open-cluster-management.io/api/work/v1"
	workv1alpha1 "open-cluster-management.io/api/work/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
	"github.com/stateful-migration/stateful-migration/pkg/hub/reports"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

func (r *Reconciler) quiescing(ctx context.Context, s *state) (ctrl.Result, error) {
	if res, done, err := r.stayQuiesced(ctx, s); done {
		return res, err
	}
	if s.src == nil || s.src.Protected == nil || !*s.src.Protected || s.src.PodsUsingVolumes == nil || *s.src.PodsUsingVolumes > 0 {
		pods := "unknown"
		if s.src != nil && s.src.PodsUsingVolumes != nil {
			pods = fmt.Sprint(*s.src.PodsUsingVolumes)
		}
		s.progressing(ReasonWaitingForAppToStop, fmt.Sprintf("Waiting for the app to stop on %s: %s pod(s) still use its volumes",
			s.m.Spec.SourceCluster, pods))
		return requeue(leftSince(s, s.policy.Spec.Timeouts.FinalSync, s.m.Status.Timings.QuiesceStart)), nil
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

// askFinalSync asks both sides for the final sync: finalSync and the quiesce
// start on the ReplicationSource, finalSync on the ReplicationDestination,
// so that its agent watches the receivers closely.
func (r *Reconciler) askFinalSync(ctx context.Context, s *state) error {
	if err := r.ensureReplicating(ctx, s, srcFinalSync); err != nil {
		return err
	}
	return r.rewriteDestination(ctx, s, true)
}

// stayQuiesced is how Quiescing and FinalSync begin: the source stays out
// of the decisions, a check after quiesce may end the move, and both sides
// are asked for the final sync again (the agent starts it the moment no pod
// uses the volumes, which it sees before this controller does). done: the
// step ends with res and err.
func (r *Reconciler) stayQuiesced(ctx context.Context, s *state) (ctrl.Result, bool, error) {
	if err := r.setActual(ctx, s, "", s.m.Spec.SourceCluster); err != nil {
		if !errors.Is(err, decision.ErrSchedulingEnabled) {
			return ctrl.Result{}, true, err
		}
		// Un-enrolled under us: before the copy finishes, put the app back;
		// in FinalSync the app is stopped and the copy ending, see it through.
		if s.m.CurrentPhase() == migrationv1alpha1.PhaseQuiescing {
			res, err := r.rollback(s, ReasonPlacementNotEnrolled, err.Error())
			return res, true, err
		}
	}
	if res, done := r.afterQuiesceChecks(s); done {
		return res, true, nil
	}
	if err := r.askFinalSync(ctx, s); err != nil {
		return ctrl.Result{}, true, err
	}
	s.mirror()
	return ctrl.Result{}, false, nil
}

func (r *Reconciler) finalSync(ctx context.Context, s *state) (ctrl.Result, error) {
	if res, done, err := r.stayQuiesced(ctx, s); done {
		return res, err
	}
	r.noteColdFinalSync(s)
	srcOK := reports.SourceAtLeast(s.src, replv1.SourceVerified)
	dstOK := reports.DestinationAtLeast(s.dst, replv1.DestinationVerified)
	if !srcOK || !dstOK {
		s.progressing(ReasonFinalSync, fmt.Sprintf("Final sync: %s, %s", describe("source", s.src), describe("destination", s.dst)))
		return requeue(leftSince(s, s.policy.Spec.Timeouts.FinalSync, s.m.Status.Timings.QuiesceStart)), nil
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
	case reports.SourceAtLeast(s.src, replv1.SourceVerified) && s.src.FinalPassFull:
		c.Status, c.Reason = metav1.ConditionTrue, "RunningSenderScannedAll"
		c.Message = "The final sync ran in the sender that had tracked every change, but its final pass listed the whole volume " +
			"(so T_copy grew with the number of files): " + fullPassWhy(s.src.UnseenChange, s.policy)
	case reports.SourceAtLeast(s.src, replv1.SourceVerified):
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
	s.progressing(reason, why)
	return requeue(left), nil
}

// complete releases source data when asked and allowed, deletes both works
// and the hub credentials, then records Completed.
func (r *Reconciler) complete(ctx context.Context, s *state, appAvailable bool, reason, msg string) (ctrl.Result, error) {
	// After a failover the source is lost: nothing to release there.
	if appAvailable && s.policy != nil && s.policy.Spec.SourceDataPolicy == migrationv1alpha1.SourceDataDelete && replicating(s) && s.m.Status.Failover == nil {
		if err := r.ensureReplicating(ctx, s, srcRelease); err != nil {
			return ctrl.Result{}, err
		}
		if !releaseApplied(s) {
			s.progressing(ReasonReleasingSource, "Waiting for cluster "+s.m.Spec.SourceCluster+" to apply releaseSource before cleanup")
			return requeue(pollLimit), nil
		}
	}
	if why := handOverPending(s); why != "" {
		s.progressing(ReasonHandingOver, why)
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

// appAvailable: the app is Available on the destination when every
// ManifestWorkReplicaSet of the Placement (in the Migration's namespace) has
// its ManifestWork on the destination cluster Available for its current
// generation, and the destination agent reports each migrated PVC mounted by
// a Ready pod of the app (Available on a ManifestWork means the objects
// exist, not that the app runs). known is false when no
// ManifestWorkReplicaSet uses the Placement (another consumer, e.g. Argo
// CD): nothing on the hub then says whether the app is meant to run there.
func (r *Reconciler) appAvailable(ctx context.Context, s *state) (available, known bool, why string, err error) {
	var sets workv1alpha1.ManifestWorkReplicaSetList
	if err := r.List(ctx, &sets, client.InNamespace(s.m.Namespace)); err != nil {
		if meta.IsNoMatchError(err) {
			return false, false, "ManifestWorkReplicaSet API not served: app availability unknown, source data kept", nil
		}
		return false, false, "", err
	}
	var names []string
	for _, mwrs := range sets.Items {
		for _, ref := range mwrs.Spec.PlacementRefs {
			if ref.Name == s.m.Spec.PlacementName {
				names = append(names, mwrs.Name)
			}
		}
	}
	if len(names) == 0 {
		return false, false, fmt.Sprintf("No ManifestWorkReplicaSet in %s uses Placement %s: app availability unknown, source data kept",
			s.m.Namespace, s.m.Spec.PlacementName), nil
	}
	for _, n := range names {
		var works workv1.ManifestWorkList
		if err := r.List(ctx, &works, client.InNamespace(s.m.Spec.DestinationCluster),
			client.MatchingLabels{workv1alpha1.ManifestWorkReplicaSetControllerNameLabelKey: s.m.Namespace + "." + n}); err != nil {
			return false, true, "", err
		}
		if len(works.Items) == 0 {
			return false, true, fmt.Sprintf("Waiting for ManifestWorkReplicaSet %s to create its ManifestWork on %s", n, s.m.Spec.DestinationCluster), nil
		}
		for _, w := range works.Items {
			if !work.Available(&w) {
				return false, true, fmt.Sprintf("Waiting for ManifestWork %s/%s (ManifestWorkReplicaSet %s) to be Available", w.Namespace, w.Name, n), nil
			}
		}
	}
	switch {
	case s.dst == nil:
		return false, true, fmt.Sprintf("Waiting for cluster %s to report on its volumes", s.m.Spec.DestinationCluster), nil
	case !s.dst.HubVerified:
		return false, true, fmt.Sprintf("Waiting for cluster %s to learn that the data is verified (hubVerified)", s.m.Spec.DestinationCluster), nil
	case !s.dst.AppReady:
		return false, true, fmt.Sprintf("Waiting for the app's pods on %s that mount %v to be Ready", s.m.Spec.DestinationCluster, s.dst.AppWaiting), nil
	}
	if why := s.postLaunchPending(); why != "" {
		return false, true, why, nil
	}
	return true, true, "", nil
}
