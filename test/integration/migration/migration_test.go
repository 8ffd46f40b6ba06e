package migration_test

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	workv1 "open-cluster-management.io/api/work/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/credentials"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

const (
	phPending   = migrationv1alpha1.PhasePending
	phPreparing = migrationv1alpha1.PhasePreparing
	phInitial   = migrationv1alpha1.PhaseInitialSync
	phSyncing   = migrationv1alpha1.PhaseSyncing
	phQuiescing = migrationv1alpha1.PhaseQuiescing
	phFinal     = migrationv1alpha1.PhaseFinalSync
	phLaunching = migrationv1alpha1.PhaseLaunching
	phCompleted = migrationv1alpha1.PhaseCompleted
)

// move drives one migration src -> dst by playing both agents, the work
// agent and the ManifestWorkReplicaSet controller, asserting the hub's
// actions and measuring its reaction to each report. restartAt, when set,
// stops and restarts the hub manager once the migration reached that phase.
func move(a *app, m *migrationv1alpha1.Migration, src, dst string, rec *recorder, restartAt migrationv1alpha1.MigrationPhase) {
	id := work.MigrationID(m)
	restart := func(p migrationv1alpha1.MigrationPhase) {
		if p != restartAt {
			return
		}
		By("restarting the hub manager in " + string(p))
		stopManager()
		startManager()
	}

	By("Preparing: credentials minted, source PVCs probed read-only; nothing sent to the destination before sizes are known")
	Eventually(phaseOf(m), timeout, interval).Should(Equal(phPreparing))
	Eventually(workExists(src, work.SourceName(id)), timeout, interval).Should(BeTrue())
	Consistently(workExists(dst, work.DestinationName(id)), 300*time.Millisecond, interval).Should(BeFalse())
	Expect(rec.last()).To(Equal([]string{src}))
	restart(phPreparing)

	react("PVC sizes reported -> destination work", func() { feedPVC(src, id, a.appNS, "5Gi", "standard") },
		workExists(dst, work.DestinationName(id)))
	dw, err := getWork(dst, work.DestinationName(id))()
	Expect(err).NotTo(HaveOccurred())
	checkDestinationWork(dw, a, id)

	By("InitialSync: the source work gets a ReplicationSource pointing at the reported receiver")
	endpoint := "192.0.2.10:30443"
	react("destination Ready -> source replication", func() {
		reportDestination(dst, id, replv1.DestinationReady, endpoint, "", "")
	}, func() bool {
		w, err := getWork(src, work.SourceName(id))()
		if err != nil {
			return false
		}
		rss := replicationSources(w)
		return len(rss) == 1 && len(rss[0].Spec.Volumes) == 1 && rss[0].Spec.Volumes[0].Destination == endpoint && !rss[0].Spec.FinalSync &&
			equality.Semantic.DeepEqual(rss[0].Spec.MoverResources, &moverResources)
	})
	Eventually(phaseOf(m), timeout, interval).Should(Equal(phInitial))
	Eventually(func() map[string]string {
		if src := get(m).Status.Source; src != nil {
			return src.Endpoints
		}
		return nil
	}, timeout, interval).Should(Equal(map[string]string{a.appNS + "/data": endpoint}), "the receivers the senders were pointed at, recorded")
	restart(phInitial)
	reportSource(src, id, srcState{phase: replv1.SourceInitialSync, protected: true, pods: 1, total: 1000, copied: 400, lag: 600, tput: 100})
	Eventually(func() int64 { return get(m).Status.Progress.BytesCopied }, timeout, interval).Should(Equal(int64(400)))
	Expect(get(m).Status.Progress.Percent).To(Equal(int32(40)))
	Consistently(rec.last, 300*time.Millisecond, interval).Should(Equal([]string{src}))

	By("Syncing: lag over the bound keeps the app where it is")
	reportSource(src, id, srcState{phase: replv1.SourceSyncing, protected: true, pods: 1, total: 1000, copied: 1000, lag: 200 << 20, tput: 100})
	Eventually(phaseOf(m), timeout, interval).Should(Equal(phSyncing))
	restart(phSyncing)
	Consistently(rec.last, 500*time.Millisecond, interval).Should(Equal([]string{src}))
	Expect(get(m).Status.Reason).To(Equal("CatchingUp"))

	By("Quiescing: lag within bounds -> the source is dropped from the actual decision (none)")
	react("lag within bounds -> source dropped", func() {
		reportSource(src, id, srcState{phase: replv1.SourceSyncing, protected: true, pods: 1, total: 1000, copied: 1000, lag: 10, tput: 1000})
	}, func() bool { return len(rec.last()) == 0 })
	Eventually(phaseOf(m), timeout, interval).Should(Equal(phQuiescing))
	Expect(get(m).Status.Timings.QuiesceStart).NotTo(BeNil())
	By("Quiescing: the final sync is asked of both sides at once; the source agent starts it when the app is gone")
	Eventually(func() bool {
		w, err := getWork(src, work.SourceName(id))()
		return err == nil && len(replicationSources(w)) == 1 && replicationSources(w)[0].Spec.FinalSync
	}, timeout, interval).Should(BeTrue())
	Eventually(func() bool {
		w, err := getWork(dst, work.DestinationName(id))()
		return err == nil && destinationFinal(w)
	}, timeout, interval).Should(BeTrue())
	Expect(phaseOf(m)()).To(Equal(phQuiescing), "the hub itself waits for the app to stop")
	restart(phQuiescing)

	By("FinalSync: once no pod uses the source volumes")
	react("app stopped -> FinalSync", func() {
		reportSource(src, id, srcState{phase: replv1.SourceSyncing, protected: true, pods: 0, total: 1000, copied: 1000, lag: 10, tput: 1000})
	}, func() bool { return phaseOf(m)() == phFinal })
	Expect(get(m).Status.Timings.Termination).NotTo(BeNil())
	w, err := getWork(src, work.SourceName(id))()
	Expect(err).NotTo(HaveOccurred())
	q := replicationSources(w)[0].Spec.QuiesceStartTime
	Expect(q).NotTo(BeNil(), "the sender rereads what changed since the quiesce start")
	Expect(replicationSources(w)[0].Spec.FullVerify).To(BeFalse(), "verification: Changed by default")
	Expect(q.Time).To(BeTemporally("~", get(m).Status.Timings.QuiesceStart.Time, time.Second))
	restart(phFinal)

	By("Launching only after both sides report Verified with equal digests")
	reportDestination(dst, id, replv1.DestinationVerified, endpoint, "d1g35t", "")
	Consistently(rec.last, 500*time.Millisecond, interval).Should(BeEmpty())
	react("both Verified -> destination added", func() {
		reportSource(src, id, srcState{phase: replv1.SourceVerified, protected: true, total: 1000, copied: 1000, digest: "d1g35t"})
	}, func() bool { l := rec.last(); return len(l) == 1 && l[0] == dst })
	Eventually(phaseOf(m), timeout, interval).Should(Equal(phLaunching))
	restart(phLaunching)
	Consistently(phaseOf(m), 300*time.Millisecond, interval).Should(Equal(phLaunching))

	By("Launching: both agents are told the hub verified the data (hubVerified), before either work goes")
	for _, w := range []func() (*workv1.ManifestWork, error){getWork(src, work.SourceName(id)), getWork(dst, work.DestinationName(id))} {
		Eventually(func() bool { got, err := w(); return err == nil && hubVerifiedIn(got) }, timeout, interval).Should(BeTrue())
	}
	By("an Available ManifestWork is not enough: the app's pods mounting the PVCs must be Ready on the destination")
	a.launchApp(dst)
	reportApp(dst, id, "d1g35t", false)
	Eventually(func() string { return get(m).Status.Message }, timeout, interval).Should(ContainSubstring("[" + a.appNS + "/data] to be Ready"))
	Consistently(phaseOf(m), 300*time.Millisecond, interval).Should(Equal(phLaunching))
	Expect(get(m).Status.Timings.Launch).To(BeNil())
	By("T_launch ends when they are; completion then waits for the source to label its PVCs moved-out")
	reportApp(dst, id, "d1g35t", true)
	Eventually(func() string { return get(m).Status.Reason }, timeout, interval).Should(Equal("HandingOverVolumes"))
	Expect(get(m).Status.Timings.Launch).NotTo(BeNil())
	Consistently(phaseOf(m), 300*time.Millisecond, interval).Should(Equal(phLaunching))
	By("Completed once it did; works and credentials deleted")
	react("source moved out -> Completed", func() {
		reportSource(src, id, srcState{phase: replv1.SourceVerified, protected: true, total: 1000, copied: 1000, digest: "d1g35t", movedOut: true})
	}, func() bool { return phaseOf(m)() == phCompleted })
	By("cleanup in order: replication objects out of the works first, works (Secret, RoleBinding) only once the agents withdrew their reports")
	Eventually(func() bool {
		w, err := getWork(src, work.SourceName(id))()
		return err == nil && len(replicationSources(w)) == 0
	}, timeout, interval).Should(BeTrue())
	Consistently(workExists(src, work.SourceName(id)), 300*time.Millisecond, interval).Should(BeTrue())
	withdraw(src, id)
	withdraw(dst, id)
	Eventually(workExists(src, work.SourceName(id)), timeout, interval).Should(BeFalse())
	Eventually(workExists(dst, work.DestinationName(id)), timeout, interval).Should(BeFalse())
	Eventually(func() bool {
		err := k8s.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: credentials.SecretName(m)}, &corev1.Secret{})
		return apierrors.IsNotFound(err)
	}, timeout, interval).Should(BeTrue())
	got := get(m)
	t := got.Status.Timings
	Expect(t.Termination).NotTo(BeNil())
	Expect(t.FinalSync).NotTo(BeNil())
	Expect(t.Launch).NotTo(BeNil())
	Expect(t.Downtime.Duration).To(Equal(t.Termination.Duration + t.FinalSync.Duration + t.Launch.Duration))
	Expect(got.Status.Digest).To(Equal("d1g35t"))
	Expect(got.Status.Progress.BytesCopied).To(Equal(int64(1000)))
	Expect(got.Status.Progress.Copied).To(HavePrefix("1000B/"), "kubectl get shows human units")
	Expect(got.Status.Timings.Summary).To(MatchRegexp(`^\S+ \(term \S+, copy \S+, launch \S+\)$`))
	c := meta.FindStatusCondition(got.Status.Conditions, migrationv1alpha1.ConditionSucceeded)
	Expect(c).NotTo(BeNil())
	Expect(c.Status).To(Equal(metav1.ConditionTrue))
	Expect(meta.IsStatusConditionTrue(got.Status.Conditions, migrationv1alpha1.ConditionFinalSyncInRunningSender)).To(BeTrue())
	Expect(got.Status.Attempts).To(Equal(int32(1)))
}

// checkDestinationWork: namespace (orphaned), TLS secret with a server pair
// for the receiver name signed by the CA, RoleBinding, ReplicationDestination
// with the probed size and the mapped class.
func checkDestinationWork(w *workv1.ManifestWork, a *app, id string) {
	var kinds []string
	for _, mf := range w.Spec.Workload.Manifests {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct{ Name, Namespace string }
		}
		Expect(jsonUnmarshal(mf.Raw, &obj)).To(Succeed())
		kinds = append(kinds, obj.Kind)
		switch obj.Kind {
		case "Secret":
			var s corev1.Secret
			Expect(jsonUnmarshal(mf.Raw, &s)).To(Succeed())
			Expect(s.Name).To(Equal(work.TLSSecretName(id)))
			pool := x509.NewCertPool()
			Expect(pool.AppendCertsFromPEM(s.Data[replv1.TLSCAKey])).To(BeTrue())
			blk, _ := pem.Decode(s.Data[replv1.TLSCertKey])
			cert, err := x509.ParseCertificate(blk.Bytes)
			Expect(err).NotTo(HaveOccurred())
			_, err = cert.Verify(x509.VerifyOptions{DNSName: replv1.DefaultServerName, Roots: pool,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			Expect(err).NotTo(HaveOccurred())
			Expect(s.Data[replv1.TLSKeyKey]).NotTo(BeEmpty())
		case "ReplicationDestination":
			var rd replv1.ReplicationDestination
			Expect(jsonUnmarshal(mf.Raw, &rd)).To(Succeed())
			Expect(rd.Namespace).To(Equal(a.appNS))
			Expect(rd.Spec.MigrationID).To(Equal(id))
			Expect(rd.Spec.Volumes).To(HaveLen(1))
			Expect(rd.Spec.Volumes[0].Capacity.Cmp(resource.MustParse("5Gi"))).To(Equal(0))
			Expect(*rd.Spec.Volumes[0].StorageClassName).To(Equal("fast"))
			Expect(rd.Spec.ServiceAnnotations).To(Equal(map[string]string{"networking.example.com/internal": "true"}), "the policy's serviceAnnotations")
			Expect(string(rd.Spec.EndpointType)).To(Equal("NodePort"))
			Expect(rd.Spec.MoverResources).To(Equal(&moverResources), "the policy's moverResources")
		case "Role":
			var role rbacv1.Role
			Expect(jsonUnmarshal(mf.Raw, &role)).To(Succeed())
			Expect(role.Rules).To(ConsistOf(HaveField("ResourceNames", ConsistOf(work.TLSSecretName(id)))), "the TLS Secret, by name only")
		}
	}
	// The replicator binding, and the Role reading the TLS Secret with its binding.
	Expect(kinds).To(ConsistOf("Namespace", "Secret", "RoleBinding", "Role", "RoleBinding", "ReplicationDestination"))
	Expect(w.Spec.DeleteOption.SelectivelyOrphan.OrphaningRules).To(ContainElement(HaveField("Name", a.appNS)))
}

var _ = Describe("Sequencing a migration", func() {
	It("moves the app: actual decision old -> none -> new, gated on the agents' reports", func() {
		a := newApp("happy", "a", nil)
		rec := recordDecisions(a.ns, a.placement)
		defer rec.stop()
		editPlacement(a.ns, a.placement, "b")
		m := a.migrationOf()
		move(a, m, "cluster1", "cluster2", rec, "")
		Expect(rec.sequence()).To(Equal([][]string{{"cluster1"}, {}, {"cluster2"}}))

		By("metrics: downtime observed, migration counted as Completed")
		families, err := metrics.Registry.Gather()
		Expect(err).NotTo(HaveOccurred())
		var downtimeCount uint64
		var completed float64
		for _, f := range families {
			switch f.GetName() {
			case "stateful_migration_downtime_seconds":
				downtimeCount = f.GetMetric()[0].GetHistogram().GetSampleCount()
			case "stateful_migration_migrations":
				for _, mt := range f.GetMetric() {
					if mt.GetLabel()[0].GetValue() == "Completed" {
						completed = mt.GetGauge().GetValue()
					}
				}
			}
		}
		Expect(downtimeCount).To(BeNumerically(">=", 1))
		Expect(completed).To(BeNumerically(">=", 1))
	})

	It("says so on the Migration when the final sync ran in a restarted sender; passes the policy's full verification on", func() {
		a := newApp("cold", "a", func(p *migrationv1alpha1.MigrationPolicy) { p.Spec.Verification = migrationv1alpha1.VerifyFull })
		editPlacement(a.ns, a.placement, "b")
		m := a.migrationOf()
		driveTo(a, m, phFinal)
		id := work.MigrationID(m)
		w, err := getWork("cluster1", work.SourceName(id))()
		Expect(err).NotTo(HaveOccurred())
		Expect(replicationSources(w)[0].Spec.FullVerify).To(BeTrue())
		reportSource("cluster1", id, srcState{phase: replv1.SourceFinalSync, protected: true, total: 1000, copied: 1000, cold: true})
		Eventually(func() *metav1.Condition {
			return meta.FindStatusCondition(get(m).Status.Conditions, migrationv1alpha1.ConditionFinalSyncInRunningSender)
		}, timeout, interval).Should(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "SenderRestarted")))
		reportDestination("cluster2", id, replv1.DestinationVerified, "192.0.2.10:30443", "d1g35t", "")
		reportSource("cluster1", id, srcState{phase: replv1.SourceVerified, protected: true, total: 1000, copied: 1000, digest: "d1g35t", cold: true})
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phLaunching))
		Expect(meta.FindStatusCondition(get(m).Status.Conditions, migrationv1alpha1.ConditionFinalSyncInRunningSender).Reason).To(Equal("SenderRestarted"))
	})

	It("says when the running sender's final pass listed the whole volume, and why", func() {
		a := newApp("scanned-all", "a", nil)
		editPlacement(a.ns, a.placement, "b")
		m := a.migrationOf()
		driveTo(a, m, phFinal)
		id := work.MigrationID(m)
		reportDestination("cluster2", id, replv1.DestinationVerified, "192.0.2.10:30443", "d1g35t", "")
		reportSource("cluster1", id, srcState{phase: replv1.SourceVerified, protected: true, total: 1000, copied: 1000, digest: "d1g35t", unseen: "db/data.mdb"})
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phLaunching))
		c := meta.FindStatusCondition(get(m).Status.Conditions, migrationv1alpha1.ConditionFinalSyncInRunningSender)
		Expect(c).NotTo(BeNil())
		Expect(c.Status).To(Equal(metav1.ConditionTrue))
		Expect(c.Reason).To(Equal("RunningSenderScannedAll"))
		Expect(c.Message).To(ContainSubstring(`"db/data.mdb" changed without an inotify event`))
	})

	It("resumes after the hub manager restarts in each phase", func() {
		for _, p := range []migrationv1alpha1.MigrationPhase{phPreparing, phInitial, phSyncing, phQuiescing, phFinal, phLaunching} {
			a := newApp("restart-"+strings.ToLower(string(p)[:4]), "c", nil)
			rec := recordDecisions(a.ns, a.placement)
			editPlacement(a.ns, a.placement, "d")
			m := a.migrationOf()
			move(a, m, "cluster3", "cluster4", rec, p)
			Expect(rec.sequence()).To(Equal([][]string{{"cluster3"}, {}, {"cluster4"}}))
			rec.stop()
		}
	})
})
