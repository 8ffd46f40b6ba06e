package together

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

// onlyMigration waits for the one Migration in hubNS not named except.
func onlyMigration(ctx context.Context, hubNS, except string) migrationv1alpha1.Migration {
	var m migrationv1alpha1.Migration
	Eventually(func() int {
		var l migrationv1alpha1.MigrationList
		Expect(hubK8s.List(ctx, &l, client.InNamespace(hubNS))).To(Succeed())
		var found []migrationv1alpha1.Migration
		for _, o := range l.Items {
			if o.Name != except {
				found = append(found, o)
			}
		}
		if len(found) == 1 {
			m = found[0]
		}
		return len(found)
	}, timeout, interval).Should(Equal(1))
	return m
}

var _ = Describe("Hub and agents together, failing", func() {
	It("fails before Quiescing (destination class missing) and both clusters are cleaned by the real agents", func(ctx SpecContext) {
		c1, c2 := spokes["cluster1"], spokes["cluster2"]
		bg, stop := context.WithCancel(context.Background())
		defer stop()
		const appNS = "fail"
		_, rec, m := moveFrom1To2(ctx, bg, appNS, []string{"data"}, func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.StorageClassMapping = []migrationv1alpha1.StorageClassMapping{{Source: "standard", Destination: "missing"}}
			p.Spec.MaxAttempts = 1
		})
		id := work.MigrationID(&m)

		By("Failed: the destination agent refuses the unknown class; the app stays on cluster1")
		Eventually(func() migrationv1alpha1.MigrationPhase {
			Expect(hubK8s.Get(ctx, client.ObjectKeyFromObject(&m), &m)).To(Succeed())
			return m.CurrentPhase()
		}, timeout, interval).Should(Equal(migrationv1alpha1.PhaseFailed))
		Expect(m.Status.Reason).To(Equal("DestinationFailed"))
		Expect(m.Status.Message).To(ContainSubstring(`StorageClass "missing"`))
		Expect(rec.sequence()).To(Equal([][]string{{"cluster1"}}))

		By("cleanup: the agents withdraw their reports, then both works, the credentials and the replication objects are gone")
		Eventually(func() int {
			n := 0
			for _, cl := range []string{"cluster1", "cluster2"} {
				var a addonv1beta1.ManagedClusterAddOn
				Expect(hubK8s.Get(ctx, client.ObjectKey{Namespace: cl, Name: uplink.AddonName}, &a)).To(Succeed())
				n += len(a.Status.Conditions)
			}
			return n
		}, timeout, interval).Should(BeZero())
		for _, w := range []client.ObjectKey{{Namespace: "cluster1", Name: work.SourceName(id)}, {Namespace: "cluster2", Name: work.DestinationName(id)}} {
			Eventually(func() bool {
				return apierrors.IsNotFound(hubK8s.Get(ctx, w, &workv1.ManifestWork{}))
			}, timeout, interval).Should(BeTrue(), "ManifestWork %s is deleted", w)
		}
		for _, s := range []*spoke{c1, c2} {
			Eventually(func() bool {
				return apierrors.IsNotFound(s.k8s.Get(ctx, client.ObjectKey{Namespace: appNS, Name: work.TLSSecretName(id)}, &corev1.Secret{}))
			}, timeout, interval).Should(BeTrue(), "TLS Secret gone on %s", s.name)
		}
		Expect(apierrors.IsNotFound(c2.k8s.Get(ctx, client.ObjectKey{Namespace: appNS, Name: "data"}, &corev1.PersistentVolumeClaim{}))).
			To(BeTrue(), "no destination PVC for an unknown class")
		var pod corev1.Pod
		Expect(c1.k8s.Get(ctx, client.ObjectKey{Namespace: appNS, Name: "web-0"}, &pod)).To(Succeed())
		Expect(pod.DeletionTimestamp).To(BeNil())
	})
})

var _ = Describe("Hub and agents together, retrying", func() {
	It("retries a move that failed after the destination PVC was made: the new Migration resumes into that PVC, then hands it to the app", func(ctx SpecContext) {
		const appNS = "retry"
		c2 := spokes["cluster2"]
		bg, stop := context.WithCancel(context.Background())
		defer stop()
		crashingSenders.Store(appNS, true)
		defer crashingSenders.Delete(appNS)
		hubNS, rec, m := moveFrom1To2(ctx, bg, appNS, []string{"data"}, func(p *migrationv1alpha1.MigrationPolicy) { p.Spec.MaxAttempts = 1 })
		first := work.MigrationID(&m)

		By("the first attempt fails: its sender cannot reach the receiver; the app stays on cluster1")
		Eventually(func() migrationv1alpha1.MigrationPhase {
			Expect(hubK8s.Get(ctx, client.ObjectKeyFromObject(&m), &m)).To(Succeed())
			return m.CurrentPhase()
		}, 2*timeout, interval).Should(Equal(migrationv1alpha1.PhaseFailed))
		Expect(m.Status.Reason).To(Equal("SourceFailed"))
		Expect(m.Status.Message).To(ContainSubstring("connection refused"))
		Expect(rec.sequence()).To(Equal([][]string{{"cluster1"}}))

		By("it leaves its destination PVC on cluster2, still labelled with its migration: a leftover, not the app's")
		Eventually(func() int {
			var rds replv1.ReplicationDestinationList
			Expect(c2.k8s.List(ctx, &rds, client.InNamespace(appNS))).To(Succeed())
			return len(rds.Items)
		}, timeout, interval).Should(BeZero())
		var left corev1.PersistentVolumeClaim
		Expect(c2.k8s.Get(ctx, client.ObjectKey{Namespace: appNS, Name: "data"}, &left)).To(Succeed())
		Expect(left.Labels).To(HaveKeyWithValue(replv1.MigrationIDLabel, first))

		By("the user retries (deletes the Failed Migration); the new one reuses that PVC and completes")
		crashingSenders.Delete(appNS)
		Expect(hubK8s.Delete(ctx, &m)).To(Succeed())
		retry := onlyMigration(ctx, hubNS, m.Name)
		Expect(work.MigrationID(&retry)).NotTo(Equal(first))
		Eventually(func() migrationv1alpha1.MigrationPhase {
			Expect(hubK8s.Get(ctx, client.ObjectKeyFromObject(&retry), &retry)).To(Succeed())
			return retry.CurrentPhase()
		}, 2*timeout, interval).Should(Equal(migrationv1alpha1.PhaseCompleted))
		Expect(rec.sequence()).To(Equal([][]string{{"cluster1"}, {}, {"cluster2"}}))
		Eventually(func(g Gomega) {
			var pvc corev1.PersistentVolumeClaim
			g.Expect(c2.k8s.Get(ctx, client.ObjectKey{Namespace: appNS, Name: "data"}, &pvc)).To(Succeed())
			g.Expect(pvc.UID).To(Equal(left.UID), "the same PVC, not a new one")
			g.Expect(pvc.Labels).NotTo(HaveKey(replv1.MigrationIDLabel), "handed to the app")
		}, timeout, interval).Should(Succeed())
	})
})
