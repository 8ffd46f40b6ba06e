package migration

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/hub/reports"
)

func TestCutoverAllowed(t *testing.T) {
	pol := &migrationv1alpha1.MigrationPolicy{}
	pol.Spec.Cutover.MaxLagBytes = ptr.To(int64(1000))
	pol.Spec.Cutover.MaxEstimatedFinalSync = &metav1.Duration{Duration: 2 * time.Second}
	rep := func(phase string, protected bool, lag, tput int64) *reports.Report {
		return &reports.Report{Phase: phase, Healthy: true, Message: uplink.Message{Protected: &protected, LagBytes: lag, Throughput: tput}}
	}
	est := func(r *reports.Report, ms int64) *reports.Report { r.EstimatedFinalSyncMillis = ms; return r }
	for _, c := range []struct {
		name string
		r    *reports.Report
		want bool
	}{
		{"no report", nil, false},
		{"still initial sync", rep("InitialSync", true, 0, 100), false},
		{"not protected", rep("Syncing", false, 0, 100), false},
		{"no lag", rep("Syncing", true, 0, 0), true},
		{"lag without throughput", rep("Syncing", true, 10, 0), false},
		{"lag over bound", rep("Syncing", true, 1001, 1<<30), false},
		{"estimate over bound", rep("Syncing", true, 900, 100), false},
		{"within both", rep("Syncing", true, 900, 1000), true},
		{"no lag, but verification and signal estimated over bound", est(rep("Syncing", true, 0, 1000), 2500), false},
		{"agent's estimate within bound", est(rep("Syncing", true, 900, 1000), 1900), true},
		{"agent's estimate under lag/throughput", est(rep("Syncing", true, 900, 100), 500), false},
		{"lag without throughput, agent's estimate", est(rep("Syncing", true, 10, 0), 1200), true},
	} {
		if got, why := cutoverAllowed(pol, c.r); got != c.want {
			t.Errorf("%s: got %v (%s), want %v", c.name, got, why, c.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	r := &Reconciler{RetryBackoff: 10 * time.Second, MaxRetryBackoff: 5 * time.Minute}
	for attempts, want := range map[int32]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 10: 5 * time.Minute} {
		if got := r.backoff(attempts); got != want {
			t.Errorf("backoff(%d) = %s, want %s", attempts, got, want)
		}
	}
}

// A restarted mover counts from zero; the Migration
// must still show what the whole move copied.
func TestMirrorKeepsBytesCopiedAndLastRate(t *testing.T) {
	s := &state{m: &migrationv1alpha1.Migration{}, now: time.Now()}
	send := func(copied, rate int64) {
		s.src = &reports.Report{Phase: "Syncing", Healthy: true, Message: uplink.Message{BytesTotal: 1000, BytesCopied: copied, Throughput: rate}}
		s.mirror()
	}
	send(800, 50)
	send(0, 0) // final pass just started
	p := s.m.Status.Progress
	if p.BytesCopied != 800 || p.ThroughputBytesPerSecond != 50 || p.Percent != 80 {
		t.Fatalf("progress went backwards: %+v", p)
	}
	send(1200, 70)
	if p := s.m.Status.Progress; p.BytesCopied != 1200 || p.ThroughputBytesPerSecond != 70 || p.Percent != 100 {
		t.Fatalf("progress not updated: %+v", p)
	}
}

func TestDescribeCarriesTheReportedError(t *testing.T) {
	if got := describe("source", nil); got != "source has not reported" {
		t.Errorf("got %q", got)
	}
	r := &reports.Report{Phase: "InitialSync", Healthy: true}
	if got := describe("source", r); got != "source reports InitialSync" {
		t.Errorf("got %q", got)
	}
	r.Message.Error = "sender of data: dial tcp 192.0.2.1:30000: i/o timeout"
	if got := describe("source", r); got != "source reports InitialSync: sender of data: dial tcp 192.0.2.1:30000: i/o timeout" {
		t.Errorf("got %q", got)
	}
}
