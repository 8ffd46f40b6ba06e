package migration

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
)

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
	if err := r.creds.Delete(ctx, r.Client, r.APIReader, m); err != nil {
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
