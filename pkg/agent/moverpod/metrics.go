package moverpod

import (
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
)

// The agent's metrics endpoint exports what its movers last reported, per
// migration, volume and role, so a cluster's own Prometheus sees the copy
// without the hub.
var (
	moverLabels      = []string{"namespace", "migration", "pvc", "role"}
	moverBytesCopied = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stateful_migration_mover_bytes_copied",
		Help: "File data a mover has copied (sender) or written (receiver).",
	}, moverLabels)
	moverLagBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stateful_migration_mover_lag_bytes",
		Help: "Data the destination does not have yet, as the sender reports.",
	}, moverLabels)
	moverPasses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stateful_migration_mover_passes",
		Help: "Update passes a mover has made since it started.",
	}, moverLabels)
	moverPeakRSS = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stateful_migration_mover_peak_rss_bytes",
		Help: "A mover's peak resident memory: what its pod's memory limit must leave room for.",
	}, moverLabels)
)

func init() {
	metrics.Registry.MustRegister(moverBytesCopied, moverLagBytes, moverPasses, moverPeakRSS)
}

// record exports a mover pod's last progress.
func record(pod *corev1.Pod, p *progress.Progress) {
	l := prometheus.Labels{"namespace": pod.Namespace, "migration": pod.Labels[replv1.MigrationIDLabel],
		"pvc": pod.Annotations[replv1.VolumeLabel], "role": pod.Labels[replv1.RoleLabel]}
	moverBytesCopied.With(l).Set(float64(p.BytesCopied))
	moverLagBytes.With(l).Set(float64(p.LagBytes))
	moverPasses.With(l).Set(float64(p.Passes))
	moverPeakRSS.With(l).Set(float64(p.PeakRSSBytes))
}

// Forget drops the series of a migration's movers in a namespace, once its
// replication object is gone.
func Forget(namespace, migrationID string) {
	l := prometheus.Labels{"namespace": namespace, "migration": migrationID}
	for _, g := range []*prometheus.GaugeVec{moverBytesCopied, moverLagBytes, moverPasses, moverPeakRSS} {
		g.DeletePartialMatch(l)
	}
}
