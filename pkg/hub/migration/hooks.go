package migration

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// Reasons of the hooks (docs/hooks.md).
const (
	ReasonRunningPreQuiesceHook = "RunningPreQuiesceHook"
	ReasonPreQuiesceHookFailed  = "PreQuiesceHookFailed"
	ReasonPreQuiesceHookTimeout = "PreQuiesceHookTimeout"
	ReasonWaitingForPostLaunch  = "WaitingForPostLaunchCheck"
	ReasonPostLaunchCheckFailed = "PostLaunchCheckFailed"
	hookDelivery                = 30 * time.Second // work delivery and the agent's report, on top of the hook's timeout
)

// preQuiesceAsked is the pre-quiesce hook once the hub asked for it (then
// the source work carries it until the attempt ends).
func (s *state) preQuiesceAsked() *replv1.Hook {
	if s.policy == nil || s.m.Status.Hooks.PreQuiesce == nil {
		return nil
	}
	return s.policy.Spec.Hooks.PreQuiesce
}

// preQuiesceHook runs the policy's pre-quiesce hook on the source once the
// copy has caught up (caughtUp), before the app is stopped. It returns
// done when the step must end here: the hook runs, or it failed (the app
// stays where it is, the attempt fails).
func (r *Reconciler) preQuiesceHook(ctx context.Context, s *state, caughtUp bool) (ctrl.Result, bool, error) {
	h := s.policy.Spec.Hooks.PreQuiesce
	st := &s.m.Status.Hooks.PreQuiesce
	if h == nil || (*st).Done() {
		return ctrl.Result{}, false, nil
	}
	running := fmt.Sprintf("Running the pre-quiesce hook in the app's pods on %s (the app still serves)", s.m.Spec.SourceCluster)
	if *st == nil {
		if !caughtUp {
			return ctrl.Result{}, false, nil
		}
		// Recorded first: the next pass's replicate writes the hook into
		// the source work (this pass's write went out without it).
		start := metav1.NewMicroTime(s.now)
		*st = &replv1.HookStatus{Phase: replv1.HookRunning, StartTime: &start}
		r.Recorder.Eventf(s.m, nil, corev1.EventTypeNormal, ReasonRunningPreQuiesceHook, "PreQuiesce",
			"Copy caught up; running the pre-quiesce hook %q in the app's pods on %s", h.Command, s.m.Spec.SourceCluster)
		s.progressing(ReasonRunningPreQuiesceHook, running)
		return ctrl.Result{RequeueAfter: time.Millisecond}, true, nil
	}
	rep := s.src.HookStatus()
	switch {
	case rep != nil && rep.Phase == replv1.HookSucceeded:
		recordHook(*st, rep, s.now)
		r.Recorder.Eventf(s.m, nil, corev1.EventTypeNormal, "PreQuiesceHookSucceeded", "PreQuiesce",
			"Pre-quiesce hook done on %s in %s: %s", s.m.Spec.SourceCluster, (*st).Duration().Round(time.Millisecond), rep.Message)
		return ctrl.Result{}, false, nil
	case rep != nil && rep.Phase == replv1.HookFailed:
		recordHook(*st, rep, s.now)
		res, err := r.failBeforeQuiesce(ctx, s, ReasonPreQuiesceHookFailed,
			fmt.Sprintf("Pre-quiesce hook failed on %s: %s", s.m.Spec.SourceCluster, rep.Message), false)
		return res, true, err
	}
	limit := h.RunTimeout() + hookDelivery
	left := limit - s.now.Sub((*st).StartTime.Time)
	if left <= 0 {
		(*st).Phase, (*st).Message = replv1.HookFailed, "no result within "+limit.String()
		res, err := r.failBeforeQuiesce(ctx, s, ReasonPreQuiesceHookTimeout, fmt.Sprintf(
			"Pre-quiesce hook gave no result on %s within %s (its timeout plus %s to deliver it): %s",
			s.m.Spec.SourceCluster, limit, hookDelivery, describe("source", s.src)), false)
		return res, true, err
	}
	s.progressing(ReasonRunningPreQuiesceHook, running)
	return requeue(left), true, nil
}

// postLaunchPending says what the post-launch check still waits for ("" once
// it succeeded, or when the policy has none), recording its runs.
func (s *state) postLaunchPending() string {
	if s.policy == nil || s.policy.Spec.Hooks.PostLaunch == nil {
		return ""
	}
	st := &s.m.Status.Hooks.PostLaunch
	if (*st).Done() {
		return ""
	}
	rep := s.dst.HookStatus()
	if rep == nil {
		return fmt.Sprintf("Waiting for the post-launch check to start on %s", s.m.Spec.DestinationCluster)
	}
	if *st == nil {
		*st = &replv1.HookStatus{}
	}
	recordHook(*st, rep, s.now)
	if rep.Phase == replv1.HookSucceeded {
		return ""
	}
	if rep.Phase == replv1.HookFailed {
		return fmt.Sprintf("Post-launch check failed on %s (run %d, retried): %s", s.m.Spec.DestinationCluster, rep.Runs, rep.Message)
	}
	return fmt.Sprintf("Running the post-launch check on %s (run %d)", s.m.Spec.DestinationCluster, rep.Runs)
}

// recordHook copies the agent's report into the Migration's record; the
// start stays the hub's own (when it asked), the end is when it learnt it.
func recordHook(st, rep *replv1.HookStatus, now time.Time) {
	if st.Phase == rep.Phase && st.Runs == rep.Runs && st.Message == rep.Message {
		return
	}
	st.Phase, st.Runs, st.Message = rep.Phase, rep.Runs, rep.Message
	if st.StartTime == nil {
		st.StartTime = rep.StartTime
	}
	st.CompletionTime = nil
	if rep.Phase != replv1.HookRunning {
		end := metav1.NewMicroTime(now)
		st.CompletionTime = &end
	}
}
