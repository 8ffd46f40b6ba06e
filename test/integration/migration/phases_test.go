package migration_test

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

// driveTo plays both agents until the migration reaches phase to, with the
// same reports as a successful move.
func driveTo(a *app, m *migrationv1alpha1.Migration, to migrationv1alpha1.MigrationPhase) {
	id := work.MigrationID(m)
	const endpoint = "192.0.2.10:30443"
	Eventually(phaseOf(m), timeout, interval).Should(Equal(phPreparing))
	feedPVC("cluster1", id, a.appNS, "1Gi", "standard")
	Eventually(workExists("cluster2", work.DestinationName(id)), timeout, interval).Should(BeTrue())
	reportDestination("cluster2", id, replv1.DestinationReady, endpoint, "", "")
	Eventually(phaseOf(m), timeout, interval).Should(Equal(phInitial))
	if to == phInitial {
		return
	}
	reportSource("cluster1", id, srcState{phase: replv1.SourceSyncing, protected: true, pods: 1, total: 1000, copied: 1000, lag: 200 << 20, tput: 100})
	Eventually(phaseOf(m), timeout, interval).Should(Equal(phSyncing))
	if to == phSyncing {
		return
	}
	reportSource("cluster1", id, srcState{phase: replv1.SourceSyncing, protected: true, pods: 0, total: 1000, copied: 1000, lag: 10, tput: 1000})
	Eventually(phaseOf(m), timeout, interval).Should(Equal(phFinal))
	if to == phFinal {
		return
	}
	reportDestination("cluster2", id, replv1.DestinationVerified, endpoint, "d1g35t", "")
	reportSource("cluster1", id, srcState{phase: replv1.SourceVerified, protected: true, total: 1000, copied: 1000, digest: "d1g35t"})
	Eventually(phaseOf(m), timeout, interval).Should(Equal(phLaunching))
}

var _ = Describe("A failure in each phase", func() {
	type outcome struct {
		phase     migrationv1alpha1.MigrationPhase
		reason    string
		decisions [][]string // the actual decision's whole history
	}
	stays := func(reason string) outcome {
		return outcome{migrationv1alpha1.PhaseFailed, reason, [][]string{{"cluster1"}}}
	}
	rollsBack := func(reason string) outcome {
		return outcome{migrationv1alpha1.PhaseRolledBack, reason, [][]string{{"cluster1"}, {}, {"cluster1"}}}
	}

	DescribeTable("ends the migration the safe way",
		func(in migrationv1alpha1.MigrationPhase, fail func(id string), want outcome) {
			a := newApp("fail-"+strings.ToLower(string(in)), "a", func(p *migrationv1alpha1.MigrationPolicy) {
				p.Spec.MaxAttempts = 1
				p.Spec.Cutover.MaxLagBytes = ptr.To(int64(1 << 20))
				p.Spec.Timeouts.Launch = &metav1.Duration{Duration: 2 * time.Second}
			})
			rec := recordDecisions(a.ns, a.placement)
			defer rec.stop()
			editPlacement(a.ns, a.placement, "b")
			m := a.migrationOf()
			driveTo(a, m, in)
			fail(work.MigrationID(m))
			Eventually(func() string { return get(m).Status.Reason }, timeout, interval).Should(Equal(want.reason))
			Eventually(phaseOf(m), timeout, interval).Should(Equal(want.phase))
			Consistently(rec.sequence, 500*time.Millisecond, interval).Should(Equal(want.decisions))
		},
		Entry("InitialSync: the source fails -> Failed, the app never left cluster1", phInitial,
			func(id string) {
				reportSource("cluster1", id, srcState{phase: replv1.SourceFailed, protected: true, pods: 1, err: "mover failed 5 times"})
			}, stays("SourceFailed")),
		Entry("Syncing: the destination fails -> Failed, the app never left cluster1", phSyncing,
			func(id string) {
				reportDestination("cluster2", id, replv1.DestinationFailed, "", "", "disk full")
			}, stays("DestinationFailed")),
		Entry("FinalSync: the digests differ -> rolled back to cluster1", phFinal,
			func(id string) {
				reportDestination("cluster2", id, replv1.DestinationVerified, "192.0.2.10:30443", "bbbb", "")
				reportSource("cluster1", id, srcState{phase: replv1.SourceVerified, protected: true, digest: "aaaa"})
			}, rollsBack("DigestMismatch")),
		Entry("Launching: the app is not Available in time -> no rollback (cluster2 holds verified data), still waiting", phLaunching,
			func(string) {}, outcome{phLaunching, "AppNotAvailableInTime", [][]string{{"cluster1"}, {}, {"cluster2"}}}),
	)
})
