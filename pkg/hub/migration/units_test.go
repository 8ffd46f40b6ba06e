package migration

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
)

func TestHumanUnits(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 512: "512B", 1536: "1.5KiB", 650 << 20: "650MiB",
		5 << 20: "5.0MiB", 1288490188: "1.2GiB", 3 << 40: "3.0TiB"} {
		if got := bytesIEC(n); got != want {
			t.Errorf("bytesIEC(%d) = %s, want %s", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{950 * time.Millisecond: "950ms", 3217 * time.Millisecond: "3.2s", 72 * time.Second: "1m12s"} {
		if got := seconds(d); got != want {
			t.Errorf("seconds(%v) = %s, want %s", d, got, want)
		}
	}
	d := func(ms int) *metav1.Duration { return &metav1.Duration{Duration: time.Duration(ms) * time.Millisecond} }
	st := migrationv1alpha1.MigrationStatus{
		Progress: migrationv1alpha1.Progress{BytesTotal: 650 << 20, BytesCopied: 620 << 20, LagBytes: 30 << 20, LagSeconds: 2, ThroughputBytesPerSecond: 95 << 20},
		Timings:  migrationv1alpha1.Timings{Termination: d(512), FinalSync: d(700), Launch: d(2000), Downtime: d(3212)},
	}
	humanize(&st)
	if st.Progress.Copied != "620MiB/650MiB" || st.Progress.Lag != "30MiB 2.0s" || st.Progress.Rate != "95MiB/s" {
		t.Errorf("progress %q %q %q", st.Progress.Copied, st.Progress.Lag, st.Progress.Rate)
	}
	if want := "3.2s (term 512ms, copy 700ms, launch 2.0s)"; st.Timings.Summary != want {
		t.Errorf("timings %q, want %q", st.Timings.Summary, want)
	}
	st.Progress.LagBytes, st.Progress.LagSeconds = 0, 0
	st.Progress.BytesCopied = 700 << 20 // resent while the app wrote
	humanize(&st)
	if st.Progress.Lag != "" {
		t.Errorf("no lag shows as %q", st.Progress.Lag)
	}
	if st.Progress.Copied != "650MiB/650MiB" {
		t.Errorf("copied beyond the total shows as %q", st.Progress.Copied)
	}
}
