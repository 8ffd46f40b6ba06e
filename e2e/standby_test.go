package e2e

import (
	"context"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

var _ = Describe("Keeping a standby of a running app", Ordered, func() {
	a := deploymentApp
	var obs *observer
	BeforeAll(func(ctx context.Context) { obs = a.deployWith(ctx, 64<<20, "1Gi", 768<<20) }, NodeTimeout(5*time.Minute))

	It("runs the app on cluster1", func(ctx context.Context) {
		a.runsOn(ctx, obs, cluster1)
	}, NodeTimeout(6*time.Minute))

	It("keeps a standby on cluster2 whose point follows the writes, with the RPO reported; the app stays on cluster1", func(ctx context.Context) {
		since := time.Now()
		// Exact points, or a per-file one once the exact one is 20 s old:
		// the writer writes through every pass, so the RPO stays bounded.
		a.patchPolicy(ctx, `{"spec":{"standby":{"clusterName":"`+cluster2.name+`","perFileAfter":"20s"}}}`)
		m := a.watchMigration(ctx, cluster1.name, cluster2.name, since, 6*time.Minute, migrationv1alpha1.PhaseSyncing, nil)
		Expect(m.Spec.Standby).To(BeTrue())

		By("the standby's receiver commits whole passes (--points), exact ones or one every 20 s, on cluster2")
		Eventually(func(g Gomega) {
			pods, err := cluster2.kube.CoreV1().Pods(a.ns).List(ctx, metav1.ListOptions{LabelSelector: replv1.RoleLabel + "=" + moverpod.RoleReceiver})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pods.Items).To(HaveLen(1))
			g.Expect(pods.Items[0].Spec.Containers[0].Args).To(ContainElements("--points", "--exact-points", "--per-file-after", "20s"))
		}, 2*time.Minute, time.Second).Should(Succeed())

		By("its point advances while the app writes, and the RPO stays small")
		var first *metav1.Time
		Eventually(func(g Gomega) {
			got := &migrationv1alpha1.Migration{}
			g.Expect(hub.c.Get(ctx, client.ObjectKeyFromObject(m), got)).To(Succeed())
			st := got.Status.Standby
			g.Expect(st).NotTo(BeNil())
			g.Expect(st.PointTime).NotTo(BeNil(), "status: %s %s", got.Status.Reason, got.Status.Message)
			if first == nil {
				first = st.PointTime.DeepCopy()
			}
			g.Expect(st.PointTime.After(first.Time)).To(BeTrue(), "a later point than %v (now %v, RPO %ds)", first, st.PointTime, st.RPOSeconds)
			g.Expect(st.RPOSeconds).To(BeNumerically("<", 60))
			g.Expect(got.Status.Phase).To(Equal(migrationv1alpha1.PhaseSyncing))
			GinkgoWriter.Printf("standby point %v (exact: %v), RPO %ds, lag %d bytes\n", st.PointTime, st.PointExact, st.RPOSeconds, st.LagBytes)
		}, 4*time.Minute, 2*time.Second).Should(Succeed())

		Expect(a.actual(ctx)).To(Equal([]string{cluster1.name}), "a standby never moves the app")
		Expect(obs.view(cluster2.name).acks).To(BeZero(), "the app never ran on the standby cluster")
		_, overlaps := obs.result()
		Expect(overlaps).To(BeEmpty())
	}, NodeTimeout(12*time.Minute))

	It("removes the standby when the policy no longer asks for one", func(ctx context.Context) {
		a.patchPolicy(ctx, `{"spec":{"standby":null}}`)
		Eventually(func(g Gomega) {
			var l migrationv1alpha1.MigrationList
			g.Expect(hub.c.List(ctx, &l, client.InNamespace(a.ns))).To(Succeed())
			g.Expect(slices.ContainsFunc(l.Items, func(m migrationv1alpha1.Migration) bool { return m.Spec.Standby })).To(BeFalse())
			pods, err := cluster2.kube.CoreV1().Pods(a.ns).List(ctx, metav1.ListOptions{LabelSelector: replv1.RoleLabel})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pods.Items).To(BeEmpty(), "mover pods left on cluster2")
		}, 4*time.Minute, 2*time.Second).Should(Succeed())
		Expect(a.actual(ctx)).To(Equal([]string{cluster1.name}))
	}, NodeTimeout(6*time.Minute))
})
