package migration

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/hub/reports"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

// ConditionProgressing is True while the migration moves on, with the reason
// it waits for; False once it ended.
const ConditionProgressing = "Progressing"

// state is what one pass learns about a Migration.
type state struct {
	m   *migrationv1alpha1.Migration
	id  string
	now time.Time

	policy    *migrationv1alpha1.MigrationPolicy // nil when gone
	placement *clusterv1beta1.Placement          // nil when gone
	src, dst  *reports.Report                    // nil when not reported
	srcAddon  *addonv1beta1.ManagedClusterAddOn
	dstAddon  *addonv1beta1.ManagedClusterAddOn
	srcWork   *workv1.ManifestWork // nil when absent
	dstWork   *workv1.ManifestWork
}

// load reads everything a step may need, from the cache.
func (r *Reconciler) load(ctx context.Context, s *state) error {
	m := s.m
	s.policy, s.placement, s.src, s.dst, s.srcWork, s.dstWork, s.srcAddon, s.dstAddon = nil, nil, nil, nil, nil, nil, nil, nil
	p := &migrationv1alpha1.MigrationPolicy{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Spec.PolicyName}, p); err == nil {
		s.policy = p
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	pl := &clusterv1beta1.Placement{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Spec.PlacementName}, pl); err == nil {
		s.placement = pl
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	var err error
	if s.srcAddon, err = r.addon(ctx, m.Spec.SourceCluster); err != nil {
		return err
	}
	if s.dstAddon, err = r.addon(ctx, m.Spec.DestinationCluster); err != nil {
		return err
	}
	if s.srcAddon != nil {
		s.src = reports.Find(s.srcAddon.Status.Conditions, s.id, uplink.RoleSource)
	}
	if s.dstAddon != nil {
		s.dst = reports.Find(s.dstAddon.Status.Conditions, s.id, uplink.RoleDestination)
	}
	if s.srcWork, err = r.work(ctx, m.Spec.SourceCluster, work.SourceName(s.id)); err != nil {
		return err
	}
	if s.dstWork, err = r.work(ctx, m.Spec.DestinationCluster, work.DestinationName(s.id)); err != nil {
		return err
	}
	return nil
}

func (r *Reconciler) addon(ctx context.Context, cluster string) (*addonv1beta1.ManagedClusterAddOn, error) {
	a := &addonv1beta1.ManagedClusterAddOn{}
	err := r.Get(ctx, client.ObjectKey{Namespace: cluster, Name: uplink.AddonName}, a)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return a, err
}

func (r *Reconciler) work(ctx context.Context, cluster, name string) (*workv1.ManifestWork, error) {
	w := &workv1.ManifestWork{}
	err := r.Get(ctx, client.ObjectKey{Namespace: cluster, Name: name}, w)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return w, err
}

// agentNamespace is where the agent of a cluster runs.
func agentNamespace(a *addonv1beta1.ManagedClusterAddOn) string {
	if a != nil && a.Status.Namespace != "" {
		return a.Status.Namespace
	}
	return uplink.DefaultAgentNamespace
}

// transition records a new phase; timeouts count from PhaseTransitionTime.
func (r *Reconciler) transition(s *state, to migrationv1alpha1.MigrationPhase, reason, msg string) {
	m := s.m
	from := m.CurrentPhase()
	if m.Status.PhaseTransitionTime != nil {
		phaseDurationSeconds.WithLabelValues(string(from)).Observe(s.now.Sub(m.Status.PhaseTransitionTime.Time).Seconds())
	}
	if to == migrationv1alpha1.PhaseFailed || to == migrationv1alpha1.PhaseRolledBack {
		failures.WithLabelValues(string(to), reason).Inc()
	}
	now := metav1.NewTime(s.now)
	m.Status.Phase = to
	m.Status.PhaseTransitionTime = &now
	s.progressing(reason, msg)
	r.Recorder.Eventf(m, nil, corev1.EventTypeNormal, string(to), "Sequence", "%s -> %s: %s", from, to, msg)
}

// wait records why the migration is where it is.
// hubVerified: the hub compared both digests and they matched (set at the
// move to Launching); both agents are told so in their works.
func (s *state) hubVerified() bool { return s.m.Status.Digest != "" }

// progressing says what the migration is doing or waiting for: the reason
// and message in its status and its Progressing condition (False once
// finished).
func (s *state) progressing(reason, msg string) {
	s.m.Status.Reason, s.m.Status.Message = reason, msg
	status := metav1.ConditionTrue
	if s.m.CurrentPhase().IsFinished() {
		status = metav1.ConditionFalse
	}
	meta.SetStatusCondition(&s.m.Status.Conditions, metav1.Condition{
		Type: ConditionProgressing, Status: status, Reason: reason, Message: msg, ObservedGeneration: s.m.Generation,
	})
}

// inPhase is how long the migration has been in its phase.
func (s *state) inPhase() time.Duration {
	if s.m.Status.PhaseTransitionTime == nil {
		return 0
	}
	return s.now.Sub(s.m.Status.PhaseTransitionTime.Time)
}

// timeout returns the remaining time of a policy timeout counted from since,
// and whether it expired. Zero or unset means no limit.
func (s *state) timeout(d *metav1.Duration, since time.Time) (time.Duration, bool) {
	if d == nil || d.Duration <= 0 {
		return 0, false
	}
	left := d.Duration - s.now.Sub(since)
	return left, left <= 0
}

// mirror copies the source's progress into the status and the metrics. Bytes
// copied never go down within a migration, and a finished mover's zero rate
// does not replace the last one measured: a restarted mover counts from zero.
func (s *state) mirror() {
	p := &s.m.Status.Progress
	src := s.src
	if src == nil || src.DecodeError != nil {
		return
	}
	copied := max(p.BytesCopied, src.BytesCopied)
	rate := src.Throughput
	if rate == 0 {
		rate = p.ThroughputBytesPerSecond
	}
	changed := p.BytesTotal != src.BytesTotal || p.BytesCopied != copied || p.LagBytes != src.LagBytes ||
		p.LagSeconds != src.LagSeconds || p.ThroughputBytesPerSecond != rate
	if !changed {
		return
	}
	p.BytesTotal, p.BytesCopied, p.LagBytes = src.BytesTotal, copied, src.LagBytes
	p.LagSeconds, p.ThroughputBytesPerSecond = src.LagSeconds, rate
	p.Percent = 0
	if src.BytesTotal > 0 {
		p.Percent = int32(min(100, copied*100/src.BytesTotal)) //nolint:gosec // bounded
	}
	now := metav1.NewTime(s.now)
	p.LastReportTime = &now
	bytesCopied.WithLabelValues(s.m.Namespace, s.m.Name).Set(float64(copied))
	lagBytes.WithLabelValues(s.m.Namespace, s.m.Name).Set(float64(src.LagBytes))
}

// describe names a side's report for messages, with the error it reports:
// a timeout message must say what the side was struggling with.
func describe(role string, r *reports.Report) string {
	switch {
	case r == nil:
		return role + " has not reported"
	case r.Message.Error != "":
		return fmt.Sprintf("%s reports %s: %s", role, r.Phase, r.Message.Error)
	}
	return fmt.Sprintf("%s reports %s", role, r.Phase)
}

func (r *Reconciler) placementEvent(s *state, typ, reason, note string, args ...any) {
	if s.placement == nil {
		return
	}
	r.Recorder.Eventf(s.placement, s.m, typ, reason, "Migrate", note, args...)
}

func setCond(m *migrationv1alpha1.Migration, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&m.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: m.Generation,
	})
}

func requeue(d time.Duration) ctrl.Result {
	if d <= 0 || d > pollLimit {
		d = pollLimit
	}
	return ctrl.Result{RequeueAfter: d}
}

// leftInPhase is what is left of timeout d since the phase began.
func leftInPhase(s *state, d *metav1.Duration) time.Duration {
	left, _ := s.timeout(d, s.m.Status.PhaseTransitionTime.Time)
	return left
}

// leftSince is what is left of timeout d since a step began (unknown: the poll limit).
func leftSince(s *state, d *metav1.Duration, since *metav1.Time) time.Duration {
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
