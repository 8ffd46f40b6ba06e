package migration_test

import (
	"fmt"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterv1 "open-cluster-management.io/api/cluster/v1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"

	"github.com/stateful-migration/stateful-migration/pkg/agent/report"
	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

// standbyRenewal is the age at which the suite's placement controller
// renews a standby (its credentials' validity, less a day, in a real hub).
const standbyRenewal = 30 * time.Second

var _ = Describe("Standby", func() {
	It("keeps a standby on the policy's standby cluster: it replicates, reports its point and RPO, never moves the app; dropping spec.standby removes it", func() {
		a := newApp("standby", "a", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Standby = &migrationv1alpha1.Standby{ClusterName: "cluster2"}
		})
		rec := recordDecisions(a.ns, a.placement)
		defer rec.stop()

		By("a standby Migration from the app's cluster to the standby cluster, owned by the policy")
		m := a.migrationOf()
		Expect(m.Spec.Standby).To(BeTrue())
		Expect(m.Spec.SourceCluster).To(Equal("cluster1"))
		Expect(m.Spec.DestinationCluster).To(Equal("cluster2"))
		Eventually(standbyCondition(a), timeout, interval).Should(HavePrefix("True/StandbyKept"))
		id := work.MigrationID(m)

		By("its destination work asks for a standby: receivers that commit each pass whole, exact points, per file after 5m (the defaults)")
		Expect(getPolicy(a).Spec.Standby.Points).To(Equal(migrationv1alpha1.StandbyPointsExact), "the API server defaults points")
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phPreparing))
		feedPVC("cluster1", id, a.appNS, "5Gi", "standard")
		Eventually(func() bool {
			w, err := getWork("cluster2", work.DestinationName(id))()
			return err == nil && destinationStandby(w) && everyDestination(w, func(s replv1.ReplicationDestinationSpec) bool {
				return s.ExactPoints && s.PerFileAfter != nil && s.PerFileAfter.Duration == 5*time.Minute
			})
		}, timeout, interval).Should(BeTrue())

		By("replicating: it stays in Syncing however small the lag, and the app stays where it is")
		reportDestination("cluster2", id, replv1.DestinationReady, "192.0.2.20:30443", "", "")
		reportSource("cluster1", id, srcState{phase: replv1.SourceSyncing, protected: true, pods: 1, total: 1000, copied: 1000, lag: 0, tput: 100})
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phSyncing))
		Eventually(func() string { return get(m).Status.Reason }, timeout, interval).Should(Equal("WaitingForFirstPoint"))
		Consistently(phaseOf(m), 2*time.Second, interval).Should(Equal(phSyncing))
		Expect(rec.last()).To(Equal([]string{"cluster1"}), "a standby never touches the decisions")

		By("reporting the point the standby committed, and its age as the RPO")
		point := metav1.NewTime(time.Now().Add(-30 * time.Second).Truncate(time.Second))
		reportStandbyPointOf("cluster2", id, replv1.VolumePoint{Time: point, Digest: "d1", Exact: true})
		Eventually(func(g Gomega) {
			st := get(m).Status.Standby
			g.Expect(st).NotTo(BeNil())
			g.Expect(st.PointTime).NotTo(BeNil())
			g.Expect(st.PointTime.Time.Equal(point.Time)).To(BeTrue())
			g.Expect(st.PointDigest).To(Equal(uplink.CombineDigests(map[string]string{"app/data": "d1"})))
			g.Expect(st.PointExact).To(BeTrue())
			g.Expect(st.RPOSeconds).To(BeNumerically(">=", 30))
			g.Expect(get(m).Status.Reason).To(Equal("StandbyCurrent"))
			g.Expect(get(m).Status.Message).To(ContainSubstring("an instant of the source"))
		}, timeout, interval).Should(Succeed())

		By("a per-file point is reported as such")
		reportStandbyPointOf("cluster2", id, replv1.VolumePoint{Time: point, Digest: "d2"})
		Eventually(func(g Gomega) {
			g.Expect(get(m).Status.Standby.PointExact).To(BeFalse())
			g.Expect(get(m).Status.Message).To(ContainSubstring("each file as it was"))
		}, timeout, interval).Should(Succeed())

		By("the policy's points changed: the running standby's destination work follows")
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			p := getPolicy(a)
			p.Spec.Standby.Points, p.Spec.Standby.PerFileAfter = migrationv1alpha1.StandbyPointsLatest, nil
			return k8s.Update(ctx, p)
		})).To(Succeed())
		Eventually(func() bool {
			w, err := getWork("cluster2", work.DestinationName(id))()
			return err == nil && everyDestination(w, func(s replv1.ReplicationDestinationSpec) bool { return s.Standby && !s.ExactPoints })
		}, timeout, interval).Should(BeTrue())
		Expect(counterValue("stateful_migration_standby_rpo_seconds", map[string]string{"namespace": m.Namespace, "migration": m.Name})).
			To(BeNumerically(">=", 30))
		Expect(rec.last()).To(Equal([]string{"cluster1"}))

		By("dropping spec.standby removes the standby Migration and the condition")
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			p := getPolicy(a)
			p.Spec.Standby = nil
			return k8s.Update(ctx, p)
		})).To(Succeed())
		withdraw("cluster1", id)
		withdraw("cluster2", id)
		Eventually(func() bool {
			var l migrationv1alpha1.MigrationList
			Expect(k8s.List(ctx, &l, client.InNamespace(a.ns))).To(Succeed())
			return len(l.Items) == 0
		}, timeout, interval).Should(BeTrue())
		Eventually(standbyCondition(a), timeout, interval).Should(BeEmpty())
		Expect(rec.last()).To(Equal([]string{"cluster1"}))
	})

	It("keeps exact points only with perFileAfter 0s, and says why such a point grows old", func() {
		a := newApp("standby-exact", "a", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Standby = &migrationv1alpha1.Standby{ClusterName: "cluster2", PerFileAfter: &metav1.Duration{}}
		})
		m := a.migrationOf()
		id := work.MigrationID(m)
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phPreparing))
		feedPVC("cluster1", id, a.appNS, "5Gi", "standard")
		Eventually(func() bool {
			w, err := getWork("cluster2", work.DestinationName(id))()
			return err == nil && everyDestination(w, func(s replv1.ReplicationDestinationSpec) bool { return s.ExactPoints && s.PerFileAfter == nil })
		}, timeout, interval).Should(BeTrue())
		reportDestination("cluster2", id, replv1.DestinationReady, "192.0.2.20:30443", "", "")
		reportSource("cluster1", id, srcState{phase: replv1.SourceSyncing, protected: true, pods: 1, total: 1000, copied: 1000, tput: 100})
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phSyncing))

		By("an exact point 10 minutes old: the message names the setting that keeps it")
		old := metav1.NewTime(time.Now().Add(-10 * time.Minute).Truncate(time.Second))
		reportStandbyPointOf("cluster2", id, replv1.VolumePoint{Time: old, Digest: "d1", Exact: true})
		Eventually(func() string { return get(m).Status.Message }, timeout, interval).Should(ContainSubstring("perFileAfter 0s waits for one"))

		By("a fresh exact point: no such word")
		reportStandbyPointOf("cluster2", id, replv1.VolumePoint{Time: metav1.NewTime(time.Now().Truncate(time.Second)), Digest: "d2", Exact: true})
		Eventually(func() string { return get(m).Status.Message }, timeout, interval).Should(
			And(ContainSubstring("an instant of the source"), Not(ContainSubstring("perFileAfter"))))
	})

	It("renews a standby before its credentials expire: a new standby Migration, with new credentials, replaces it", func() {
		a := newApp("standby-renew", "a", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Standby = &migrationv1alpha1.Standby{ClusterName: "cluster2"}
		})
		m1 := a.migrationOf()
		id1 := work.MigrationID(m1)
		Eventually(phaseOf(m1), timeout, interval).Should(Equal(phPreparing))
		feedPVC("cluster1", id1, a.appNS, "5Gi", "standard")
		reportDestination("cluster2", id1, replv1.DestinationReady, "192.0.2.20:30443", "", "")
		reportSource("cluster1", id1, srcState{phase: replv1.SourceSyncing, protected: true, pods: 1, total: 1000, copied: 1000, tput: 100})
		Eventually(phaseOf(m1), timeout, interval).Should(Equal(phSyncing))
		fp1 := get(m1).Status.CredentialsFingerprint
		Expect(fp1).NotTo(BeEmpty())

		By(fmt.Sprintf("after %s the standby is deleted; the agents clean up", standbyRenewal))
		Eventually(func() bool { return !get(m1).DeletionTimestamp.IsZero() }, standbyRenewal+timeout, interval).Should(BeTrue())
		Expect(time.Since(m1.CreationTimestamp.Time)).To(BeNumerically(">=", standbyRenewal-time.Second))
		withdraw("cluster1", id1)
		withdraw("cluster2", id1)

		By("a new standby of the same pair replaces it, with its own credentials")
		var m2 migrationv1alpha1.Migration
		Eventually(func(g Gomega) {
			var l migrationv1alpha1.MigrationList
			g.Expect(k8s.List(ctx, &l, client.InNamespace(a.ns))).To(Succeed())
			g.Expect(l.Items).To(HaveLen(1))
			m2 = l.Items[0]
			g.Expect(m2.UID).NotTo(Equal(m1.UID))
		}, timeout, interval).Should(Succeed())
		Expect(m2.Spec.Standby).To(BeTrue())
		Expect(m2.Spec.SourceCluster).To(Equal("cluster1"))
		Expect(m2.Spec.DestinationCluster).To(Equal("cluster2"))
		Eventually(func() string { return get(&m2).Status.CredentialsFingerprint }, timeout, interval).ShouldNot(Or(BeEmpty(), Equal(fp1)))
		Eventually(standbyCondition(a), timeout, interval).Should(HavePrefix("True/StandbyKept"))
	})

	It("refuses a standby Migration the policy does not ask for", func() {
		a := newApp("standby-refused", "a", nil)
		pol := getPolicy(a)
		m := &migrationv1alpha1.Migration{
			ObjectMeta: metav1.ObjectMeta{Namespace: a.ns, Name: "rogue-standby"},
			Spec: migrationv1alpha1.MigrationSpec{PolicyName: a.policy, PlacementName: a.placement,
				SourceCluster: "cluster1", DestinationCluster: "cluster3", Standby: true},
		}
		m.OwnerReferences = []metav1.OwnerReference{{APIVersion: migrationv1alpha1.GroupVersion.String(), Kind: "MigrationPolicy",
			Name: pol.Name, UID: pol.UID, Controller: ptr.To(true)}}
		Expect(k8s.Create(ctx, m)).To(Succeed())
		Eventually(func() string { return get(m).Status.Reason }, timeout, interval).Should(Equal("StandbyNotConfigured"))
		Expect(get(m).Status.Phase).To(Equal(migrationv1alpha1.PhaseFailed))
		Consistently(workExists("cluster3", work.DestinationName(work.MigrationID(m))), 500*time.Millisecond, interval).Should(BeFalse())
	})
})

func convergedReason(a *app) func() string {
	return func() string {
		if c := meta.FindStatusCondition(getPolicy(a).Status.Conditions, migrationv1alpha1.ConditionConverged); c != nil {
			return c.Reason
		}
		return ""
	}
}

func standbyCondition(a *app) func() string {
	return func() string {
		c := meta.FindStatusCondition(getPolicy(a).Status.Conditions, migrationv1alpha1.ConditionStandby)
		if c == nil {
			return ""
		}
		return string(c.Status) + "/" + c.Reason + ": " + c.Message
	}
}

// reportStandbyPoint plays the standby's destination agent: its volume
// committed a pass at t.
func reportStandbyPoint(cluster, id string, t metav1.Time, digest string) {
	reportStandbyPointOf(cluster, id, replv1.VolumePoint{Time: t, Digest: digest})
}

// reportStandbyPointOf plays the standby's agent reporting point p.
func reportStandbyPointOf(cluster, id string, p replv1.VolumePoint) {
	rd := replv1.ReplicationDestination{ObjectMeta: metav1.ObjectMeta{Namespace: destinationNamespace(cluster, id), Name: "smig-" + id}}
	rd.Spec.MigrationID, rd.Spec.Standby = id, true
	rd.Spec.Volumes = []replv1.DestinationVolume{{PVCName: "data"}}
	rd.Status = replv1.ReplicationDestinationStatus{Phase: replv1.DestinationReceiving, BytesReceived: 1000,
		Volumes: []replv1.DestinationVolumeStatus{{PVCName: "data", Endpoint: "192.0.2.20:30443", Point: &p}}}
	writeCondition(cluster, report.DestinationCondition(id, []replv1.ReplicationDestination{rd}))
}

// destinationStandby tells whether every ReplicationDestination in w asks for a standby.
func destinationStandby(w *workv1.ManifestWork) bool {
	return everyDestination(w, func(s replv1.ReplicationDestinationSpec) bool { return s.Standby })
}

// standbyWithPoint starts an app on cluster1 with a standby on cluster2 and
// plays both agents until the standby replicates and reports a point of
// that time (digest "d1").
func standbyWithPoint(prefix string, point metav1.Time) (*app, *migrationv1alpha1.Migration, *recorder) {
	return standbyWithPointOn(prefix, point, func(p *migrationv1alpha1.MigrationPolicy) {
		p.Spec.Standby = &migrationv1alpha1.Standby{ClusterName: "cluster2"}
	})
}

// standbyPlacement makes the policy keep its standby on a cluster that a
// Placement "standby" of envs decides.
func standbyPlacement(envs ...string) func(*migrationv1alpha1.MigrationPolicy) {
	return func(p *migrationv1alpha1.MigrationPolicy) {
		pl := &clusterv1beta1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: "standby"}}
		setEnvs(pl, envs...)
		Expect(k8s.Create(ctx, pl)).To(Succeed())
		Eventually(decided(p.Namespace, pl.Name), timeout, interval).Should(HaveLen(len(envs)))
		p.Spec.Standby = &migrationv1alpha1.Standby{PlacementRef: &migrationv1alpha1.PlacementRef{Name: pl.Name}}
	}
}

// standbyWithPointOn is standbyWithPoint with the policy's standby set by mutate (on cluster2).
func standbyWithPointOn(prefix string, point metav1.Time, mutate func(*migrationv1alpha1.MigrationPolicy)) (*app, *migrationv1alpha1.Migration, *recorder) {
	a := newApp(prefix, "a", mutate)
	rec := recordDecisions(a.ns, a.placement)
	m := a.migrationOf()
	id := work.MigrationID(m)
	Eventually(phaseOf(m), timeout, interval).Should(Equal(phPreparing))
	feedPVC("cluster1", id, a.appNS, "5Gi", "standard")
	reportDestination("cluster2", id, replv1.DestinationReady, "192.0.2.20:30443", "", "")
	reportSource("cluster1", id, srcState{phase: replv1.SourceSyncing, protected: true, pods: 1, total: 1000, copied: 1000, tput: 100})
	Eventually(phaseOf(m), timeout, interval).Should(Equal(phSyncing))
	reportStandbyPoint("cluster2", id, point, "d1")
	Eventually(func() *metav1.Time { return pointTime(get(m)) }, timeout, interval).ShouldNot(BeNil())
	return a, m, rec
}

var _ = Describe("Failover", func() {
	It("fails over to the standby when the Placement moves the app off a lost cluster: lost cluster fenced out of the decision, standby promoted to its point, app launched there", func() {
		point := metav1.NewTime(time.Now().Add(-20 * time.Second).Truncate(time.Second))
		a, m, rec := standbyWithPoint("failover", point)
		defer rec.stop()
		id := work.MigrationID(m)

		By("cluster1 is lost: OCM reports it Unknown and taints it, the scheduler drops it; the app stays decided there, the standby is kept")
		loseCluster1(metav1.ConditionUnknown)
		Eventually(convergedReason(a), timeout, interval).Should(Equal(migrationv1alpha1.ReasonWaitingForFailover))
		Consistently(rec.last, 500*time.Millisecond, interval).Should(Equal([]string{"cluster1"}))
		Expect(get(m).DeletionTimestamp).To(BeNil(), "the standby holds the point to fail over to")

		By("the user moves the app to cluster2")
		editPlacement(a.ns, a.placement, "b")

		By("FailingOver: the standby is marked, no move is created, cluster1 leaves the decision, the standby is asked to promote")
		Eventually(phaseOf(m), timeout, interval).Should(Equal(migrationv1alpha1.PhaseFailingOver))
		Expect(get(m).Annotations).To(HaveKeyWithValue(migrationv1alpha1.FailoverAnnotation, "true"))
		f := get(m).Status.Failover
		Expect(f).NotTo(BeNil())
		Expect(f.FencedCluster).To(Equal("cluster1"))
		Expect(f.PointTime.Time.Equal(point.Time)).To(BeTrue())
		Expect(f.RPOSeconds).To(BeNumerically(">=", 20))
		Eventually(rec.last, timeout, interval).Should(BeEmpty())
		Eventually(func() bool {
			w, err := getWork("cluster2", work.DestinationName(id))()
			return err == nil && destinationPromote(w)
		}, timeout, interval).Should(BeTrue())
		var l migrationv1alpha1.MigrationList
		Expect(k8s.List(ctx, &l, client.InNamespace(a.ns))).To(Succeed())
		Expect(l.Items).To(HaveLen(1), "no move from the lost cluster")

		By("promoted to the point's digest: cluster2 joins the decision, the agent is told to hand the PVCs to the app")
		reportDestination("cluster2", id, replv1.DestinationVerified, "", "d1", "")
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phLaunching))
		Eventually(rec.last, timeout, interval).Should(Equal([]string{"cluster2"}))
		Eventually(func() bool {
			w, err := getWork("cluster2", work.DestinationName(id))()
			return err == nil && hubVerifiedIn(w)
		},
			timeout, interval).Should(BeTrue())
		a.launchApp("cluster2")
		reportApp("cluster2", id, "d1", true)
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phCompleted))
		Expect(rec.sequence()).NotTo(ContainElement(ContainElements("cluster1", "cluster2")), "never on both clusters")

		By("the lost cluster's source work stays, telling its agent the app left (hubVerified), until that agent labels the PVCs moved-out")
		src := work.SourceName(id)
		Eventually(func() bool { w, err := getWork("cluster1", src)(); return err == nil && hubVerifiedIn(w) }, timeout, interval).Should(BeTrue())
		Consistently(func() bool { w, err := getWork("cluster1", src)(); return err == nil && work.HasReplication(w) },
			time.Second, interval).Should(BeTrue(), "kept while cluster1 is away")
		reportSource("cluster1", id, srcState{phase: replv1.SourceSyncing, protected: true, total: 1000, copied: 1000, movedOut: true})
		Eventually(func() bool { w, err := getWork("cluster1", src)(); return err == nil && work.HasReplication(w) }, timeout, interval).Should(BeFalse(),
			"removed once the returning agent labelled its PVCs")
	})

	It("fails over when the Placement was edited before OCM said the cluster was lost: the standby stays while the move waits for its dead source, the move ends, the standby fails over", func() {
		point := metav1.NewTime(time.Now().Add(-20 * time.Second).Truncate(time.Second))
		a, m, rec := standbyWithPoint("failover-early", point)
		defer rec.stop()

		By("cluster1 died, OCM does not know yet; the user moves the app to cluster2: a move that waits for cluster1's PVCs")
		editPlacement(a.ns, a.placement, "b")
		var mv migrationv1alpha1.Migration
		Eventually(func(g Gomega) {
			var l migrationv1alpha1.MigrationList
			g.Expect(k8s.List(ctx, &l, client.InNamespace(a.ns))).To(Succeed())
			moves := slices.DeleteFunc(l.Items, func(x migrationv1alpha1.Migration) bool { return x.Spec.Standby })
			g.Expect(moves).To(HaveLen(1))
			mv = moves[0]
			g.Expect(mv.Status.Reason).To(Equal("WaitingForSourceVolumes"))
		}, timeout, interval).Should(Succeed())
		Expect(mv.Spec.SourceCluster).To(Equal("cluster1"))
		Consistently(func() bool { return get(m).DeletionTimestamp == nil }, time.Second, interval).Should(BeTrue(),
			"the standby stays until the move's source answers")

		By("OCM marks cluster1 lost: the move ends at once, naming the standby, and the standby fails over")
		loseCluster1(metav1.ConditionUnknown)
		Eventually(func(g Gomega) {
			got := get(&mv)
			g.Expect(got.Status.Phase).To(Equal(migrationv1alpha1.PhaseFailed))
			g.Expect(got.Status.Reason).To(Equal("SourceLostBeforeCopy"))
			g.Expect(got.Status.Message).To(ContainSubstring(m.Name))
		}, timeout, interval).Should(Succeed())
		Eventually(phaseOf(m), timeout, interval).Should(Equal(migrationv1alpha1.PhaseFailingOver))
		Eventually(rec.last, timeout, interval).Should(BeEmpty())
		Eventually(func() bool {
			w, err := getWork("cluster2", work.DestinationName(work.MigrationID(m)))()
			return err == nil && destinationPromote(w)
		}, timeout, interval).Should(BeTrue())
	})

	It("refuses to start the app on a promoted standby whose digest is not its point's", func() {
		a, m, rec := standbyWithPoint("failover-mismatch", metav1.NewTime(time.Now().Truncate(time.Second)))
		defer rec.stop()
		id := work.MigrationID(m)
		loseCluster1(metav1.ConditionFalse)
		failOverToCluster2(a, m)
		reportDestination("cluster2", id, replv1.DestinationVerified, "", "other", "")
		Eventually(func() string { return get(m).Status.Reason }, timeout, interval).Should(Equal("PointMismatch"))
		Expect(get(m).Status.Phase).To(Equal(migrationv1alpha1.PhaseFailed))
		Consistently(rec.last, 500*time.Millisecond, interval).Should(BeEmpty(), "the app is started nowhere on unverified data")
	})
})

var _ = Describe("Standby chosen by a Placement", func() {
	It("keeps the standby on the first cluster its Placement decides that the app is not on, stays there while it is decided, follows the Placement", func() {
		a := newApp("standby-placement", "a", standbyPlacement("b", "c"))
		m := a.migrationOf()
		Expect(m.Spec.Standby).To(BeTrue())
		Expect(m.Spec.DestinationCluster).To(Equal("cluster2"))
		Eventually(standbyCondition(a), timeout, interval).Should(HavePrefix("True/StandbyKept"))

		By("a Placement still deciding cluster2 among others moves nothing")
		editPlacement(a.ns, "standby", "b", "c", "d")
		Eventually(decided(a.ns, "standby"), timeout, interval).Should(HaveLen(3))
		Consistently(func() bool { return get(m).DeletionTimestamp.IsZero() }, time.Second, interval).Should(BeTrue())

		By("a Placement no longer deciding cluster2: the standby moves to the next")
		editPlacement(a.ns, "standby", "c")
		Eventually(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(m), &migrationv1alpha1.Migration{}) }, timeout, interval).ShouldNot(Succeed())
		Eventually(func() string {
			var l migrationv1alpha1.MigrationList
			Expect(k8s.List(ctx, &l, client.InNamespace(a.ns))).To(Succeed())
			for _, it := range l.Items {
				if it.Spec.Standby && it.DeletionTimestamp.IsZero() {
					return it.Spec.SourceCluster + "->" + it.Spec.DestinationCluster
				}
			}
			return ""
		}, timeout, interval).Should(Equal("cluster1->cluster3"))

		By("a Placement deciding only the app's cluster: no standby, and the policy says why")
		editPlacement(a.ns, "standby", "a")
		Eventually(standbyCondition(a), timeout, interval).Should(HavePrefix("False/" + migrationv1alpha1.ReasonStandbyNoCluster))
	})

	It("protects the app again after a failover: a new standby on another cluster the Placement decides", func() {
		a, m, rec := standbyWithPointOn("standby-reprotect", metav1.NewTime(time.Now().Truncate(time.Second)), standbyPlacement("b", "c"))
		defer rec.stop()
		id := work.MigrationID(m)
		loseCluster1(metav1.ConditionUnknown)
		failOverToCluster2(a, m)
		reportDestination("cluster2", id, replv1.DestinationVerified, "", "d1", "")
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phLaunching))
		a.launchApp("cluster2")
		reportApp("cluster2", id, "d1", true)
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phCompleted))

		By("the app on cluster2, the standby Placement deciding cluster2 and cluster3: a standby cluster2 -> cluster3")
		Eventually(func() string {
			var l migrationv1alpha1.MigrationList
			Expect(k8s.List(ctx, &l, client.InNamespace(a.ns))).To(Succeed())
			for _, it := range l.Items {
				if it.Spec.Standby && it.UID != m.UID {
					return it.Spec.SourceCluster + "->" + it.Spec.DestinationCluster
				}
			}
			return ""
		}, timeout, interval).Should(Equal("cluster2->cluster3"))
		Eventually(standbyCondition(a), timeout, interval).Should(HavePrefix("True/StandbyKept"))
	})
})

func pointTime(m *migrationv1alpha1.Migration) *metav1.Time {
	if m.Status.Standby == nil {
		return nil
	}
	return m.Status.Standby.PointTime
}

// loseCluster1 plays OCM losing cluster1 (Unknown or False, with its
// taint) for the rest of the spec.
func loseCluster1(status metav1.ConditionStatus) {
	setAvailable("cluster1", status)
	DeferCleanup(func() { setAvailable("cluster1", metav1.ConditionTrue) })
}

// failOverToCluster2 is the user's edit selecting cluster2 while cluster1
// is lost: the standby m fails over.
func failOverToCluster2(a *app, m *migrationv1alpha1.Migration) {
	editPlacement(a.ns, a.placement, "b")
	Eventually(phaseOf(m), timeout, interval).Should(Equal(migrationv1alpha1.PhaseFailingOver))
}

// setAvailable plays OCM's registration hub: the cluster's Available
// condition, and the NoSelect taint it adds to a cluster that is not
// Available (unreachable when Unknown, unavailable when False), which makes
// the real scheduler drop the cluster from every Placement's decisions.
func setAvailable(cluster string, status metav1.ConditionStatus) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var mc clusterv1.ManagedCluster
		if err := k8s.Get(ctx, client.ObjectKey{Name: cluster}, &mc); err != nil {
			return err
		}
		meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{Type: clusterv1.ManagedClusterConditionAvailable,
			Status: status, Reason: "Test", Message: "set by the test"})
		return k8s.Status().Update(ctx, &mc)
	})).To(Succeed())
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var mc clusterv1.ManagedCluster
		if err := k8s.Get(ctx, client.ObjectKey{Name: cluster}, &mc); err != nil {
			return err
		}
		mc.Spec.Taints = slices.DeleteFunc(mc.Spec.Taints, func(t clusterv1.Taint) bool {
			return t.Key == clusterv1.ManagedClusterTaintUnreachable || t.Key == clusterv1.ManagedClusterTaintUnavailable
		})
		taint := map[metav1.ConditionStatus]string{metav1.ConditionUnknown: clusterv1.ManagedClusterTaintUnreachable,
			metav1.ConditionFalse: clusterv1.ManagedClusterTaintUnavailable}[status]
		if taint != "" {
			mc.Spec.Taints = append(mc.Spec.Taints, clusterv1.Taint{Key: taint, Effect: clusterv1.TaintEffectNoSelect, TimeAdded: metav1.Now()})
		}
		return k8s.Update(ctx, &mc)
	})).To(Succeed())
}

// destinationPromote tells whether every ReplicationDestination in w asks for the promotion.
func destinationPromote(w *workv1.ManifestWork) bool {
	return everyDestination(w, func(s replv1.ReplicationDestinationSpec) bool { return s.Promote })
}
