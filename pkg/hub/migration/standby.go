package migration

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
)

// A standby Migration (spec.standby, docs/dr.md) runs the phases of a move
// up to Syncing and stays there: the source keeps replicating, the
// destination commits each pass whole, and the hub reports the recovery
// point. It never touches the Placement's decisions.
const (
	ReasonStandbyNotConfigured = "StandbyNotConfigured"
	ReasonWaitingForFirstPoint = "WaitingForFirstPoint"
	ReasonStandbyCurrent       = "StandbyCurrent"
)

// standbyPoll is how often the recovery point's age is brought up to date
// without a report.
const standbyPoll = 15 * time.Second

var rpoSeconds = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "stateful_migration_standby_rpo_seconds",
	Help: "Age of a standby's last committed point: the writes a failover now would lose (seconds).",
}, []string{"namespace", "migration"})

func init() { metrics.Registry.MustRegister(rpoSeconds) }

// admitStandby checks what a standby needs beyond the move's checks: the
// policy asks for a standby on its destination.
func (r *Reconciler) admitStandby(ctx context.Context, m *migrationv1alpha1.Migration, p *migrationv1alpha1.MigrationPolicy) (string, string, error) {
	candidates, err := decision.StandbyClusters(ctx, r.APIReader, p)
	if err != nil {
		return "", "", err
	}
	if !slices.Contains(candidates, m.Spec.DestinationCluster) {
		return ReasonStandbyNotConfigured, fmt.Sprintf("MigrationPolicy %s keeps no standby on %s", p.Name, m.Spec.DestinationCluster), nil
	}
	return "", "", nil
}

// pointKind says what a point holds, for messages.
func pointKind(exact bool) string {
	if exact {
		return "an instant of the source"
	}
	return "each file as it was at some instant of one pass"
}

// agingHint tells why an exact point grows old, and what bounds it.
func agingHint(s *state, st *migrationv1alpha1.StandbyStatus) string {
	sb := s.policy.Spec.Standby
	if sb == nil || !st.PointExact || st.RPOSeconds < int64(migrationv1alpha1.DefaultPerFileAfter.Seconds()) {
		return ""
	}
	if exact, after := sb.ExactPoints(); !exact || after > 0 {
		return ""
	}
	return "; no pass since was exact (the app wrote during each), and perFileAfter 0s waits for one"
}

// standby is a standby's Syncing: replicate, and report the point.
func (r *Reconciler) standby(s *state) ctrl.Result {
	st := &migrationv1alpha1.StandbyStatus{LagBytes: s.m.Status.Progress.LagBytes}
	if s.dst != nil && s.dst.Point != nil {
		t := s.dst.Point.Time
		st.PointTime, st.PointDigest, st.PointExact = &t, s.dst.Point.Digest, s.dst.Point.Exact
		st.RPOSeconds = max(0, int64(s.now.Sub(t.Time).Seconds()))
		rpoSeconds.WithLabelValues(s.m.Namespace, s.m.Name).Set(float64(st.RPOSeconds))
	}
	s.m.Status.Standby = st
	if st.PointTime == nil {
		s.progressing(ReasonWaitingForFirstPoint, fmt.Sprintf("Standby on %s: waiting for its first whole pass (lag %d bytes)",
			s.m.Spec.DestinationCluster, st.LagBytes))
	} else {
		s.progressing(ReasonStandbyCurrent, fmt.Sprintf("Standby on %s holds the point of %s, %s (RPO %ds, lag %d bytes)%s",
			s.m.Spec.DestinationCluster, st.PointTime.UTC().Format(time.RFC3339), pointKind(st.PointExact), st.RPOSeconds, st.LagBytes,
			agingHint(s, st)))
	}
	return ctrl.Result{RequeueAfter: standbyPoll}
}
