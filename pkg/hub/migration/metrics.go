package migration

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
)

// Prometheus metrics, registered with controller-runtime's registry (served
// on the manager's metrics endpoint).
var (
	migrationsByPhase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stateful_migration_migrations",
		Help: "Migrations known to the hub, by phase.",
	}, []string{"phase"})
	downtimeSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "stateful_migration_downtime_seconds",
		Help:    "T_down of completed migrations: termination + final sync + launch.",
		Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800},
	})
	phaseDurationSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "stateful_migration_phase_duration_seconds",
		Help:    "Time spent in a phase, observed when a migration leaves it.",
		Buckets: prometheus.ExponentialBuckets(0.5, 2, 16),
	}, []string{"phase"})
	bytesCopied = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stateful_migration_bytes_copied",
		Help: "Bytes copied so far by an active migration, as the source agent reports.",
	}, []string{"namespace", "migration"})
	lagBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stateful_migration_lag_bytes",
		Help: "Bytes the destination does not have yet, as the source agent reports.",
	}, []string{"namespace", "migration"})
	bytesCopiedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stateful_migration_completed_bytes_total",
		Help: "Bytes copied by completed migrations.",
	})
	phaseEntered = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stateful_migration_phase_entered_timestamp_seconds",
		Help: "When an unfinished migration entered its phase (unix seconds): time() minus it is how long it has been there.",
	}, []string{"namespace", "migration", "phase"})
	failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stateful_migration_failures_total",
		Help: "Migrations that ended Failed or RolledBack, by that phase and the reason.",
	}, []string{"phase", "reason"})
)

func init() {
	metrics.Registry.MustRegister(migrationsByPhase, downtimeSeconds, phaseDurationSeconds, bytesCopied, lagBytes, bytesCopiedTotal,
		phaseEntered, failures)
}

// phaseTracker keeps the gauge by phase exact: each Migration counts once,
// in the phase its last reconcile saw.
type phaseTracker struct {
	mu     sync.Mutex
	phases map[string]migrationv1alpha1.MigrationPhase
}

func (t *phaseTracker) set(m *migrationv1alpha1.Migration) {
	key, p := m.Namespace+"/"+m.Name, m.CurrentPhase()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.phases == nil {
		t.phases = map[string]migrationv1alpha1.MigrationPhase{}
	}
	if since := m.Status.PhaseTransitionTime; since != nil && !p.IsFinished() {
		phaseEntered.WithLabelValues(m.Namespace, m.Name, string(p)).Set(float64(since.Unix()))
	}
	if old, ok := t.phases[key]; ok {
		if old == p {
			return
		}
		migrationsByPhase.WithLabelValues(string(old)).Dec()
		phaseEntered.DeleteLabelValues(m.Namespace, m.Name, string(old))
	}
	t.phases[key] = p
	migrationsByPhase.WithLabelValues(string(p)).Inc()
}

func (t *phaseTracker) forget(namespace, name string) {
	key := namespace + "/" + name
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.phases[key]; ok {
		migrationsByPhase.WithLabelValues(string(old)).Dec()
		phaseEntered.DeleteLabelValues(namespace, name, string(old))
		delete(t.phases, key)
	}
	bytesCopied.DeleteLabelValues(namespace, name)
	lagBytes.DeleteLabelValues(namespace, name)
	rpoSeconds.DeleteLabelValues(namespace, name)
}
