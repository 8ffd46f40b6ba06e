package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterv1 "open-cluster-management.io/api/cluster/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
	"github.com/stateful-migration/stateful-migration/test/writer"
)

// The lost cluster is cluster1's node container, paused: its API server,
// kubelet, agents and the app freeze at once, as when a machine hangs or is
// cut off. Its lease is shortened so that OCM reports it Unknown after ~50 s
// (5 × leaseDurationSeconds) instead of ~5 min.
const lostLeaseSeconds = 10

var _ = Describe("Failing over to the standby when the app's cluster is lost, then failing back", Ordered, func() {
	a := deploymentApp
	var (
		obs                 *observer
		standby             *migrationv1alpha1.Migration
		pausedAt, resumedAt time.Time
		frozenPod           string // the writer on cluster1 when it was lost
	)
	BeforeAll(func(ctx context.Context) {
		obs = a.deployWith(ctx, 64<<20, "1Gi", 768<<20)
		mayLose(ctx, cluster1)
	}, NodeTimeout(5*time.Minute))

	It("runs the app on cluster1 with a standby on cluster2 that holds a point", func(ctx context.Context) {
		a.runsOn(ctx, obs, cluster1)
		standby = a.standbyOn(ctx, cluster2)
	}, NodeTimeout(12*time.Minute))

	It("brings the app up on cluster2 from the standby's point once cluster1 is lost and the Placement selects cluster2", func(ctx context.Context) {
		frozenPod = obs.view(cluster1.name).pod
		var lostAt time.Time
		pausedAt, lostAt = a.lose(ctx, cluster1, standby)
		editedAt := time.Now()
		m := a.failOver(ctx, standby, cluster2)
		checkFailover(obs, m, cluster1, cluster2, pausedAt, lostAt, editedAt)
	}, NodeTimeout(16*time.Minute))

	It("never starts the app again on cluster1 when it comes back: its work agent removes it", func(ctx context.Context) {
		// A frozen process resumes where it stopped, writing to cluster1's own
		// volume until the work agent applies the deleted ManifestWork; it is
		// measured here, not counted as the app running twice.
		obs.setAsideRunning(cluster1.name, frozenPod)
		resume(cluster1)
		resumedAt = time.Now()
		Eventually(func(g Gomega) {
			mc := &clusterv1.ManagedCluster{}
			g.Expect(hub.c.Get(ctx, client.ObjectKey{Name: cluster1.name}, mc)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(mc.Status.Conditions, clusterv1.ManagedClusterConditionAvailable)).To(BeTrue())
		}, 3*time.Minute, time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			err := cluster1.c.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: appName}, &appsv1.Deployment{})
			g.Expect(client.IgnoreNotFound(err)).To(Succeed())
			g.Expect(err).To(HaveOccurred(), "the app's Deployment is still on cluster1")
			pods, err := obs.list(ctx, cluster1)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(pods.Items).To(BeEmpty(), "writer pods left on cluster1")
		}, 3*time.Minute, time.Second).Should(Succeed())
		gone := time.Now()
		Expect(obs.podsOn(cluster1.name)).To(Equal([]string{frozenPod}), "no writer was started on cluster1 after it was lost")
		By("its stale volume is labelled moved-out by the failover, for a failback to reuse")
		Eventually(func(g Gomega) {
			pvc := &corev1.PersistentVolumeClaim{}
			g.Expect(cluster1.c.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: "data"}, pvc)).To(Succeed())
			g.Expect(pvc.Labels).To(HaveKeyWithValue(replv1.MovedOutLabel, work.MigrationID(standby)))
		}, 2*time.Minute, time.Second).Should(Succeed())
		Expect(a.actual(ctx)).To(Equal([]string{cluster2.name}))
		stale := obs.view(cluster1.name).lastAck.t.Sub(resumedAt)
		line := fmt.Sprintf("cluster1 back: app removed %s after resume; the frozen writer wrote to cluster1's own volume for %s",
			gone.Sub(resumedAt).Round(time.Second), max(stale, 0).Round(time.Millisecond))
		AddReportEntry("lost cluster back", line)
		GinkgoWriter.Println(line)
		Eventually(func() time.Time { return obs.view(cluster2.name).lastAck.t }, time.Minute, time.Second).Should(BeTemporally(">", gone),
			"the app on cluster2 goes on writing")
	}, NodeTimeout(8*time.Minute))

	It("fails back to cluster1, reusing its volume and copying only what changed", func(ctx context.Context) {
		before := obs.view(cluster2.name)
		since := time.Now()
		a.selectCluster(ctx, cluster1.name)
		m := a.watchMigration(ctx, cluster2.name, cluster1.name, since, 12*time.Minute, migrationv1alpha1.PhaseCompleted, nil)
		moved := checkMove(obs, m, cluster2, cluster1)
		written := int64(moved-before.firstAck.seq) * writer.RecordSize
		By(fmt.Sprintf("written on cluster2: %d bytes; copied back: %d bytes", written, m.Status.Progress.BytesCopied))
		Expect(m.Status.Progress.BytesCopied).To(BeNumerically("<", written+128<<20), "failback copies what changed, not the whole volume")
	}, NodeTimeout(20*time.Minute))
})

// standbyOn asks the app's policy for a standby on c and waits until it
// replicates and holds a recent point.
func (a app) standbyOn(ctx context.Context, c *cluster) *migrationv1alpha1.Migration {
	since := time.Now()
	// Exact points, or a per-file one once the exact one is 15 s old.
	a.patchPolicy(ctx, `{"spec":{"standby":{"clusterName":"`+c.name+`","points":"Exact","perFileAfter":"15s"}}}`)
	actual, err := a.actual(ctx)
	Expect(err).NotTo(HaveOccurred())
	m := a.watchMigration(ctx, actual[0], c.name, since, 6*time.Minute, migrationv1alpha1.PhaseSyncing, nil)
	Eventually(func(g Gomega) {
		g.Expect(hub.c.Get(ctx, client.ObjectKeyFromObject(m), m)).To(Succeed())
		g.Expect(m.Status.Standby).NotTo(BeNil())
		g.Expect(m.Status.Standby.PointTime).NotTo(BeNil())
		g.Expect(m.Status.Standby.RPOSeconds).To(BeNumerically("<", 30))
	}, 4*time.Minute, 2*time.Second).Should(Succeed())
	return m
}

// lose freezes c's node, then waits until OCM reports it not Available and
// the app's policy holds the app there for a failover (the scheduler drops
// the cluster, the standby is kept).
func (a app) lose(ctx context.Context, c *cluster, standby *migrationv1alpha1.Migration) (pausedAt, lostAt time.Time) {
	By(c.name + "'s node freezes")
	// The cgroup freezer gives up when a task will not stop in time (seen:
	// "unable to freeze" with PostgreSQL mid-fsync); runc thawed it, so try again.
	Eventually(func() error {
		out, err := exec.Command("docker", "pause", c.name+"-control-plane").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}, 30*time.Second, 2*time.Second).Should(Succeed())
	pausedAt = time.Now()
	By("OCM reports " + c.name + " Unknown; the scheduler drops it, but the app stays decided there while the standby holds its point")
	Eventually(func(g Gomega) {
		mc := &clusterv1.ManagedCluster{}
		g.Expect(hub.c.Get(ctx, client.ObjectKey{Name: c.name}, mc)).To(Succeed())
		cond := meta.FindStatusCondition(mc.Status.Conditions, clusterv1.ManagedClusterConditionAvailable)
		g.Expect(cond).NotTo(BeNil())
		g.Expect(cond.Status).NotTo(Equal(metav1.ConditionTrue))
	}, 4*time.Minute, time.Second).Should(Succeed())
	lostAt = time.Now()
	Eventually(func() string { return a.converged(ctx) }, time.Minute, time.Second).Should(HavePrefix(migrationv1alpha1.ReasonWaitingForFailover))
	Expect(a.actual(ctx)).To(Equal([]string{c.name}))
	Expect(hub.c.Get(ctx, client.ObjectKeyFromObject(standby), standby)).To(Succeed())
	Expect(standby.DeletionTimestamp).To(BeNil(), "the standby is kept")
	return pausedAt, lostAt
}

// failOver is the user's edit selecting the standby's cluster; it waits
// until the standby itself (no move is created) has failed over.
func (a app) failOver(ctx context.Context, standby *migrationv1alpha1.Migration, to *cluster) *migrationv1alpha1.Migration {
	By("the user selects " + to.name)
	a.selectCluster(ctx, to.name)
	m := a.watchMigration(ctx, standby.Spec.SourceCluster, to.name, standby.CreationTimestamp.Time, 10*time.Minute, migrationv1alpha1.PhaseCompleted, nil)
	Expect(m.UID).To(Equal(standby.UID), "the standby itself failed over; no move was created")
	Expect(m.Status.Failover).NotTo(BeNil())
	Expect(m.Status.Failover.FencedCluster).To(Equal(standby.Spec.SourceCluster))
	Expect(a.actual(ctx)).To(Equal([]string{to.name}))
	return m
}

// checkFailover asserts the app on `to` started from the standby's point
// (its records whole, at most the reported RPO lost) and reports RTO and RPO.
func checkFailover(obs *observer, m *migrationv1alpha1.Migration, from, to *cluster, pausedAt, lostAt, editedAt time.Time) {
	By("the writer on " + to.name + " starts from the point: its records check out, at most the reported RPO is lost")
	f := m.Status.Failover
	Eventually(func() int { return obs.view(to.name).acks }, 3*time.Minute, time.Second).Should(BeNumerically(">", 10))
	old, now := obs.view(from.name), obs.view(to.name)
	found, err := strconv.ParseUint(now.start["last"], 10, 64)
	Expect(err).NotTo(HaveOccurred(), "start line of %s: %v", now.pod, now.start)
	foundNs, err := strconv.ParseInt(now.start["lastt"], 10, 64)
	Expect(err).NotTo(HaveOccurred(), "start line of %s: %v", now.pod, now.start)
	lost := old.lastAck.t.Sub(time.Unix(0, foundNs))
	Expect(now.start["torn"]).To(Equal("0"), "a point holds whole records")
	Expect(found).To(BeNumerically(">", 0))
	// The point's time is the state it holds: nothing written before it is missing.
	Expect(time.Unix(0, foundNs)).To(BeTemporally(">=", f.PointTime.Add(-time.Second)), "the newest record on the point is not older than the point")
	Expect(lost).To(BeNumerically("<=", time.Duration(f.RPOSeconds+1)*time.Second), "lost: acknowledged on %s up to %s, the point has records up to %s",
		from.name, old.lastAck.t.Format(time.StampMilli), time.Unix(0, foundNs).Format(time.StampMilli))
	Expect(now.firstAck.t).To(BeTemporally(">", old.lastAck.t))
	_, overlaps := obs.result()
	Expect(overlaps).To(BeEmpty())

	rto := now.firstAck.t.Sub(pausedAt)
	line := fmt.Sprintf("RTO=%s (lost→Unknown %s, edit→app writing %s) RPO reported=%ds lost=%s (records %d..%d: %d) point=%s exact=%v",
		rto.Round(time.Second), lostAt.Sub(pausedAt).Round(time.Second), now.firstAck.t.Sub(editedAt).Round(time.Second),
		f.RPOSeconds, lost.Round(time.Millisecond), found, old.lastAck.seq, int64(old.lastAck.seq)-int64(found), f.PointTime.Format(time.RFC3339), f.PointExact)
	AddReportEntry("failover "+from.name+" -> "+to.name, line)
	GinkgoWriter.Println(line)
}

// mayLose shortens c's lease for a spec that loses it, and gives c back
// (resumed, default lease) after the container, before its app is removed
// (cleanups run in reverse order).
func mayLose(ctx context.Context, c *cluster) {
	setLease(ctx, c, lostLeaseSeconds)
	DeferCleanup(func(ctx context.Context) {
		resume(c)
		setLease(ctx, c, 60)
	}, NodeTimeout(2*time.Minute))
}

// setLease sets how often a cluster's agent renews its lease (OCM marks it
// Unknown after five periods without).
func setLease(ctx context.Context, c *cluster, seconds int) {
	mc := &clusterv1.ManagedCluster{}
	Expect(hub.c.Get(ctx, client.ObjectKey{Name: c.name}, mc)).To(Succeed())
	patch := fmt.Sprintf(`{"spec":{"leaseDurationSeconds":%d}}`, seconds)
	Expect(hub.c.Patch(ctx, mc, client.RawPatch("application/merge-patch+json", []byte(patch)))).To(Succeed())
}

// resume unpauses a cluster's node container if it is paused.
func resume(c *cluster) {
	node := c.name + "-control-plane"
	if out, err := execOutput("docker", "inspect", "-f", "{{.State.Paused}}", node); err == nil && out == "true" {
		run("docker", "unpause", node)
	}
}

// converged is the policy's Converged condition as "Reason: message".
func (a app) converged(ctx context.Context) string {
	p := &migrationv1alpha1.MigrationPolicy{}
	if err := hub.c.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: appName}, p); err != nil {
		return err.Error()
	}
	if c := meta.FindStatusCondition(p.Status.Conditions, migrationv1alpha1.ConditionConverged); c != nil {
		return c.Reason + ": " + c.Message
	}
	return ""
}
