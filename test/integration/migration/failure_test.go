package migration_test

import (
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/credentials"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

func secretGone(m *migrationv1alpha1.Migration) func() bool {
	return func() bool {
		err := k8s.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: credentials.SecretName(m)}, &corev1.Secret{})
		return apierrors.IsNotFound(err)
	}
}

var _ = Describe("Failures", func() {
	It("fails at Preparing without touching the actual decision, retries with backoff, then stays Failed", func() {
		a := newApp("fail-prep", "a", func(p *migrationv1alpha1.MigrationPolicy) { p.Spec.MaxAttempts = 2 })
		rec := recordDecisions(a.ns, a.placement)
		defer rec.stop()
		editPlacement(a.ns, a.placement, "b")
		m := a.migrationOf()
		id := work.MigrationID(m)

		for attempt := int32(1); attempt <= 2; attempt++ {
			Eventually(phaseOf(m), timeout, interval).Should(Equal(phPreparing))
			Expect(get(m).Status.Attempts).To(Equal(attempt))
			feedPVC("cluster1", id, a.appNS, "1Gi", "standard")
			Eventually(workExists("cluster2", work.DestinationName(id)), timeout, interval).Should(BeTrue())
			reportDestination("cluster2", id, replv1.DestinationFailed, "", "", `storage class "fast" not found`)
			if attempt == 1 {
				Eventually(phaseOf(m), timeout, interval).Should(Equal(phPending))
				got := get(m)
				Expect(got.Status.Reason).To(Equal("DestinationFailed"))
				Expect(got.Status.Message).To(ContainSubstring(`storage class "fast" not found`))
				Expect(got.Status.Message).To(ContainSubstring("retrying"))
			}
			// The source work (probes only) goes; the destination work first
			// loses its ReplicationDestination and goes once the agent withdrew.
			Eventually(workExists("cluster1", work.SourceName(id)), timeout, interval).Should(BeFalse())
			Eventually(func() bool {
				w, err := getWork("cluster2", work.DestinationName(id))()
				return err == nil && !work.HasReplication(w)
			}, timeout, interval).Should(BeTrue())
			if attempt == 1 {
				// The next attempt waits until the agents withdrew their reports.
				Consistently(phaseOf(m), 700*time.Millisecond, interval).Should(Equal(phPending))
			}
			withdraw("cluster2", id)
			Eventually(workExists("cluster2", work.DestinationName(id)), timeout, interval).Should(BeFalse())
		}
		Eventually(phaseOf(m), timeout, interval).Should(Equal(migrationv1alpha1.PhaseFailed))
		got := get(m)
		Expect(got.Status.Attempts).To(Equal(int32(2)))
		c := meta.FindStatusCondition(got.Status.Conditions, migrationv1alpha1.ConditionSucceeded)
		Expect(c).NotTo(BeNil())
		Expect(c.Status).To(Equal(metav1.ConditionFalse))
		Expect(c.Reason).To(Equal("DestinationFailed"))
		Eventually(secretGone(m), timeout, interval).Should(BeTrue())
		Consistently(rec.sequence, 500*time.Millisecond, interval).Should(Equal([][]string{{"cluster1"}}))
	})

	It("rolls back after Quiescing: the source returns to the actual decision", func() {
		a := newApp("rollback", "a", func(p *migrationv1alpha1.MigrationPolicy) { p.Spec.Cutover.MaxLagBytes = ptr.To(int64(1 << 20)) })
		rec := recordDecisions(a.ns, a.placement)
		defer rec.stop()
		editPlacement(a.ns, a.placement, "b")
		m := a.migrationOf()
		id := work.MigrationID(m)
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phPreparing))
		feedPVC("cluster1", id, a.appNS, "1Gi", "standard")
		Eventually(workExists("cluster2", work.DestinationName(id)), timeout, interval).Should(BeTrue())
		reportDestination("cluster2", id, replv1.DestinationReady, "192.0.2.1:30000", "", "")
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phInitial))
		reportSource("cluster1", id, srcState{phase: replv1.SourceSyncing, protected: true, pods: 1, total: 10, copied: 10})
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phQuiescing))
		Eventually(rec.last, timeout, interval).Should(BeEmpty())

		react("source failed after quiesce -> source re-added", func() {
			reportSource("cluster1", id, srcState{phase: replv1.SourceFailed, protected: true, err: "mover failed 5 times"})
		}, func() bool { l := rec.last(); return len(l) == 1 && l[0] == "cluster1" })
		Eventually(phaseOf(m), timeout, interval).Should(Equal(migrationv1alpha1.PhaseRolledBack))
		got := get(m)
		Expect(got.Status.Reason).To(Equal("SourceFailed"))
		Expect(got.Status.Message).To(ContainSubstring("mover failed 5 times"))
		Expect(counterValue("stateful_migration_failures_total", map[string]string{"phase": "RolledBack", "reason": "SourceFailed"})).
			To(BeNumerically(">=", 1), "the rollback is counted for the StatefulMigrationFailed alert")
		withdraw("cluster1", id)
		withdraw("cluster2", id)
		Eventually(workExists("cluster2", work.DestinationName(id)), timeout, interval).Should(BeFalse())
		Eventually(workExists("cluster1", work.SourceName(id)), timeout, interval).Should(BeFalse())
		Eventually(secretGone(m), timeout, interval).Should(BeTrue())
		Expect(rec.sequence()).To(Equal([][]string{{"cluster1"}, {}, {"cluster1"}}))
	})

	It("runs two migrations at once, each isolated (one cluster is source of one and destination of the other)", func() {
		a1 := newApp("pair-one", "a", nil)
		a2 := newApp("pair-two", "b", nil)
		r1, r2 := recordDecisions(a1.ns, a1.placement), recordDecisions(a2.ns, a2.placement)
		defer r1.stop()
		defer r2.stop()
		editPlacement(a1.ns, a1.placement, "b")
		editPlacement(a2.ns, a2.placement, "a")
		m1, m2 := a1.migrationOf(), a2.migrationOf()
		Expect(work.MigrationID(m1)).NotTo(Equal(work.MigrationID(m2)))
		var wg sync.WaitGroup
		for _, c := range []struct {
			a        *app
			m        *migrationv1alpha1.Migration
			src, dst string
			r        *recorder
		}{{a1, m1, "cluster1", "cluster2", r1}, {a2, m2, "cluster2", "cluster1", r2}} {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				move(c.a, c.m, c.src, c.dst, c.r, "")
			}()
		}
		wg.Wait()
		Expect(r1.sequence()).To(Equal([][]string{{"cluster1"}, {}, {"cluster2"}}))
		Expect(r2.sequence()).To(Equal([][]string{{"cluster2"}, {}, {"cluster1"}}))
	})
})
