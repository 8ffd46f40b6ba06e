package together

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	workv1 "open-cluster-management.io/api/work/v1"
	workv1alpha1 "open-cluster-management.io/api/work/v1alpha1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/hub/credentials"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
	"github.com/stateful-migration/stateful-migration/test/integration/framework"
)

const (
	placement = "web"
	mwrsName  = "web-app"
	policy    = "web-policy"
)

func decided(ctx context.Context, hubNS string) []string {
	c, err := decision.Clusters(ctx, hubK8s, hubNS, placement)
	Expect(err).NotTo(HaveOccurred())
	return c
}

// deliverApp plays the ManifestWorkReplicaSet controller: one app
// ManifestWork (the app's pod, which mounts PVC data) per cluster of the
// Placement's actual decision, deleted when the cluster leaves it. The work
// agent stand-in applies it and reports it Available.
func deliverApp(ctx context.Context, hubNS, appNS string, pvcs []string) {
	defer GinkgoRecover()
	for ctx.Err() == nil {
		clusters, err := decision.Clusters(ctx, hubK8s, hubNS, placement)
		if err == nil {
			for _, cl := range []string{"cluster1", "cluster2"} {
				w := &workv1.ManifestWork{ObjectMeta: metav1.ObjectMeta{Namespace: cl, Name: hubNS + "-" + mwrsName}}
				if !slices.Contains(clusters, cl) {
					_ = client.IgnoreNotFound(hubK8s.Delete(ctx, w))
					continue
				}
				pod := &corev1.Pod{
					TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
					ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: "web-0", Labels: map[string]string{"app": "web"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1"}}},
				}
				for _, pvc := range pvcs {
					pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: pvc, MountPath: "/" + pvc})
					pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: pvc, VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc}}})
				}
				raw, _ := json.Marshal(pod)
				w.Labels = map[string]string{
					workv1alpha1.ManifestWorkReplicaSetControllerNameLabelKey: hubNS + "." + mwrsName,
					workv1alpha1.ManifestWorkReplicaSetPlacementNameLabelKey:  placement,
				}
				w.Spec.Workload.Manifests = []workv1.Manifest{{RawExtension: runtimeRaw(raw)}}
				_ = client.IgnoreAlreadyExists(hubK8s.Create(ctx, w))
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// recordDecisions records every distinct value of the actual decision.
type recorder struct {
	mu  sync.Mutex
	seq [][]string
}

func recordDecisions(ctx context.Context, hubNS string) *recorder {
	r := &recorder{}
	w, err := hubK8s.Watch(ctx, &clusterv1beta1.PlacementDecisionList{}, client.InNamespace(hubNS),
		client.MatchingLabels{clusterv1beta1.PlacementLabel: placement})
	Expect(err).NotTo(HaveOccurred())
	r.add(decided(ctx, hubNS))
	go func() {
		defer GinkgoRecover()
		for ev := range w.ResultChan() {
			pd, ok := ev.Object.(*clusterv1beta1.PlacementDecision)
			if !ok || ev.Type == watch.Error {
				continue
			}
			cl := []string{}
			if ev.Type != watch.Deleted {
				for _, d := range pd.Status.Decisions {
					cl = append(cl, d.ClusterName)
				}
			}
			slices.Sort(cl)
			r.add(cl)
		}
	}()
	go func() { <-ctx.Done(); w.Stop() }()
	return r
}

func (r *recorder) add(cl []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.seq); n > 0 && slices.Equal(r.seq[n-1], cl) {
		return
	}
	r.seq = append(r.seq, cl)
}

func (r *recorder) sequence() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seq)
}

// watchMigration logs every phase/reason/message the Migration goes through
// and the agents' conditions, for the reader of a failure.
func watchMigration(ctx context.Context, hubNS string) {
	defer GinkgoRecover()
	var last string
	for ctx.Err() == nil {
		var l migrationv1alpha1.MigrationList
		if hubK8s.List(ctx, &l, client.InNamespace(hubNS)) == nil {
			for _, m := range l.Items {
				line := string(m.Status.Phase) + " " + m.Status.Reason + ": " + m.Status.Message
				for _, cl := range []string{"cluster1", "cluster2"} {
					var a addonv1beta1.ManagedClusterAddOn
					if hubK8s.Get(ctx, client.ObjectKey{Namespace: cl, Name: uplink.AddonName}, &a) == nil {
						for _, c := range a.Status.Conditions {
							line += "\n    " + cl + " " + c.Type + " " + string(c.Status) + " " + c.Reason + " " + c.Message
						}
					}
				}
				if line != last {
					GinkgoWriter.Printf("%s migration %s\n", time.Now().Format("15:04:05.000"), line)
					last = line
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var _ = Describe("Hub and agents together", func() {
	It("moves the app and its data from cluster1 to cluster2 when the Placement is edited (source data kept)", func(ctx SpecContext) {
		migrate(ctx, "shop", migrationv1alpha1.SourceDataRetain, "data")
	})
	It("moves the app and releases the source data (sourceDataPolicy Delete)", func(ctx SpecContext) {
		migrate(ctx, "blog", migrationv1alpha1.SourceDataDelete, "data")
	})
	It("moves an app with two volumes: one receiver and sender per volume, combined digest", func(ctx SpecContext) {
		migrate(ctx, "wiki", migrationv1alpha1.SourceDataRetain, "data", "index")
	})
})

// migrate runs one app's migration cluster1 -> cluster2 end to end and
// checks every side effect on the three clusters.
func migrate(ctx context.Context, appNS string, sourceData migrationv1alpha1.SourceDataPolicy, pvcs ...string) {
	{
		c1, c2 := spokes["cluster1"], spokes["cluster2"]
		bg, stop := context.WithCancel(context.Background())
		defer stop()

		hubNS, rec, m := moveFrom1To2(ctx, bg, appNS, pvcs, func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.StorageClassMapping = []migrationv1alpha1.StorageClassMapping{{Source: "standard", Destination: "fast"}}
			p.Spec.SourceDataPolicy = sourceData
		})
		var srcPVC corev1.PersistentVolumeClaim
		Expect(c1.k8s.Get(ctx, client.ObjectKey{Namespace: appNS, Name: "data"}, &srcPVC)).To(Succeed())
		id := work.MigrationID(&m)
		phase := func() migrationv1alpha1.MigrationPhase {
			Expect(hubK8s.Get(ctx, client.ObjectKeyFromObject(&m), &m)).To(Succeed())
			return m.CurrentPhase()
		}

		By("Syncing: the real agents replicate while the app still runs on cluster1")
		Eventually(phase, timeout, interval).Should(BeElementOf(migrationv1alpha1.PhaseSyncing, migrationv1alpha1.PhaseQuiescing,
			migrationv1alpha1.PhaseFinalSync, migrationv1alpha1.PhaseLaunching, migrationv1alpha1.PhaseCompleted))
		By("the source PV is protected before the app is stopped: Retain, original policy remembered, PVC finalizer")
		if m.CurrentPhase() != migrationv1alpha1.PhaseCompleted { // released by now with policy Delete
			var protectedPV corev1.PersistentVolume
			Expect(c1.k8s.Get(ctx, client.ObjectKey{Name: srcPVC.Spec.VolumeName}, &protectedPV)).To(Succeed())
			Expect(protectedPV.Spec.PersistentVolumeReclaimPolicy).To(Equal(corev1.PersistentVolumeReclaimRetain))
			Expect(protectedPV.Annotations).To(HaveKeyWithValue(replv1.OriginalReclaimPolicyAnnotation, "Delete"))
			Expect(c1.k8s.Get(ctx, client.ObjectKeyFromObject(&srcPVC), &srcPVC)).To(Succeed())
			Expect(srcPVC.Finalizers).To(ContainElement(replv1.PVCProtectionFinalizer))
		}

		By("Completed: the app runs on cluster2")
		Eventually(phase, 2*timeout, interval).Should(Equal(migrationv1alpha1.PhaseCompleted))
		Expect(rec.sequence()).To(Equal([][]string{{"cluster1"}, {}, {"cluster2"}}))
		t := m.Status.Timings
		Expect(t.QuiesceStart).NotTo(BeNil())
		Expect(t.Termination).NotTo(BeNil())
		Expect(t.FinalSync).NotTo(BeNil())
		Expect(t.Launch).NotTo(BeNil())
		Expect(t.Downtime).NotTo(BeNil())
		digests := map[string]string{}
		for _, pvc := range pvcs {
			digests[appNS+"/"+pvc] = digestOf(id + "/" + volumeKey(pvc))
		}
		Expect(m.Status.Digest).To(Equal(uplink.CombineDigests(digests)))
		Expect(m.Status.Reason).To(Equal("Completed"))

		By("the destination PVCs on cluster2: the source's size, the mapped class, used by the app")
		for _, pvc := range pvcs {
			var dstPVC corev1.PersistentVolumeClaim
			Expect(c2.k8s.Get(ctx, client.ObjectKey{Namespace: appNS, Name: pvc}, &dstPVC)).To(Succeed())
			Expect(dstPVC.Spec.Resources.Requests.Storage().Cmp(resource.MustParse("5Gi"))).To(Equal(0))
			Expect(dstPVC.Spec.StorageClassName).To(Equal(ptr.To("fast")))
			Expect(dstPVC.Spec.AccessModes).To(Equal([]corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}))
		}
		Eventually(func() corev1.PodPhase {
			var pod corev1.Pod
			_ = c2.k8s.Get(ctx, client.ObjectKey{Namespace: appNS, Name: "web-0"}, &pod)
			return pod.Status.Phase
		}, timeout, interval).Should(Equal(corev1.PodRunning))

		By("cleanup: replication objects, hub conditions, works, credentials (hub and both spokes) and movers are gone")
		Eventually(func() []metav1.Condition {
			var out []metav1.Condition
			for _, cl := range []string{"cluster1", "cluster2"} {
				var a addonv1beta1.ManagedClusterAddOn
				Expect(hubK8s.Get(ctx, client.ObjectKey{Namespace: cl, Name: uplink.AddonName}, &a)).To(Succeed())
				out = append(out, a.Status.Conditions...)
			}
			return out
		}, timeout, interval).Should(BeEmpty())
		for _, w := range []client.ObjectKey{{Namespace: "cluster1", Name: work.SourceName(id)}, {Namespace: "cluster2", Name: work.DestinationName(id)}} {
			Eventually(func() bool {
				return apierrors.IsNotFound(hubK8s.Get(ctx, w, &workv1.ManifestWork{}))
			}, timeout, interval).Should(BeTrue(), "ManifestWork %s is deleted", w)
		}
		Eventually(func() bool {
			return apierrors.IsNotFound(hubK8s.Get(ctx, client.ObjectKey{Namespace: hubNS, Name: credentials.SecretName(&m)}, &corev1.Secret{}))
		}, timeout, interval).Should(BeTrue())
		for _, s := range []*spoke{c1, c2} {
			Eventually(func() bool {
				return apierrors.IsNotFound(s.k8s.Get(ctx, client.ObjectKey{Namespace: appNS, Name: work.TLSSecretName(id)}, &corev1.Secret{}))
			}, timeout, interval).Should(BeTrue(), "TLS Secret gone on %s", s.name)
			Eventually(func() []corev1.Pod {
				var pods corev1.PodList
				Expect(s.k8s.List(ctx, &pods, client.MatchingLabels{replv1.MigrationIDLabel: id})).To(Succeed())
				return pods.Items
			}, timeout, interval).Should(BeEmpty(), "mover pods left on %s", s.name)
			var rss replv1.ReplicationSourceList
			Expect(s.k8s.List(ctx, &rss)).To(Succeed())
			Expect(rss.Items).To(BeEmpty())
			var rds replv1.ReplicationDestinationList
			Expect(s.k8s.List(ctx, &rds)).To(Succeed())
			Expect(rds.Items).To(BeEmpty())
		}

		var pv corev1.PersistentVolume
		Expect(c1.k8s.Get(ctx, client.ObjectKey{Name: srcPVC.Spec.VolumeName}, &pv)).To(Succeed())
		if sourceData == migrationv1alpha1.SourceDataDelete {
			By("the source data is released (policy Delete): the PV's original policy is restored, our annotation removed")
			Expect(pv.Spec.PersistentVolumeReclaimPolicy).To(Equal(corev1.PersistentVolumeReclaimDelete))
			Expect(pv.Annotations).NotTo(HaveKey(replv1.OriginalReclaimPolicyAnnotation))
		} else {
			By("the source data is kept (policy Retain): PV Retain with the original policy remembered, PVC without our finalizer")
			Expect(pv.Spec.PersistentVolumeReclaimPolicy).To(Equal(corev1.PersistentVolumeReclaimRetain))
			Expect(pv.Annotations).To(HaveKeyWithValue(replv1.OriginalReclaimPolicyAnnotation, "Delete"))
		}
		Eventually(func() []string {
			Expect(c1.k8s.Get(ctx, client.ObjectKeyFromObject(&srcPVC), &srcPVC)).To(Succeed())
			return srcPVC.Finalizers
		}, timeout, interval).ShouldNot(ContainElement(replv1.PVCProtectionFinalizer))
		By("PVC lifecycle: the source PVC is labelled moved-out (reusable by a move back), the destination PVCs are the app's")
		Expect(srcPVC.Labels).To(HaveKeyWithValue(replv1.MovedOutLabel, id))
		for _, pvc := range pvcs {
			var dstPVC corev1.PersistentVolumeClaim
			Expect(c2.k8s.Get(ctx, client.ObjectKey{Namespace: appNS, Name: pvc}, &dstPVC)).To(Succeed())
			Expect(dstPVC.Labels).NotTo(HaveKey(replv1.MigrationIDLabel))
		}
		var ns corev1.Namespace
		Expect(c2.k8s.Get(ctx, client.ObjectKey{Name: appNS}, &ns)).To(Succeed())
		Expect(ns.DeletionTimestamp).To(BeNil(), "the app namespace on cluster2 is orphaned by the destination work")
	}
}

// moveFrom1To2 sets up the app on cluster1 (hub namespace <appNS>-hub, its
// PVCs, the policy as mutate leaves it), edits its Placement to cluster2 and
// returns the Migration created for that move.
func moveFrom1To2(ctx, bg context.Context, appNS string, pvcs []string, mutate func(*migrationv1alpha1.MigrationPolicy)) (string, *recorder, migrationv1alpha1.Migration) {
	hubNS := appNS + "-hub"
	c1 := spokes["cluster1"]
	By("the app's hub side: Placement on cluster1, a ManifestWorkReplicaSet using it, the MigrationPolicy")
	Expect(hubK8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hubNS}})).To(Succeed())
	Expect(hubK8s.Create(ctx, &clusterv1beta2.ManagedClusterSetBinding{
		ObjectMeta: metav1.ObjectMeta{Name: clusterSet, Namespace: hubNS},
		Spec:       clusterv1beta2.ManagedClusterSetBindingSpec{ClusterSet: clusterSet},
	})).To(Succeed())
	p := &clusterv1beta1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: placement}}
	setCluster(p, "cluster1")
	Expect(hubK8s.Create(ctx, p)).To(Succeed())
	Eventually(func() []string { return decided(ctx, hubNS) }, timeout, interval).Should(Equal([]string{"cluster1"}))
	Expect(hubK8s.Create(ctx, framework.AppDelivery(hubNS, mwrsName, []string{placement}, appNS))).To(Succeed())
	pol := &migrationv1alpha1.MigrationPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: hubNS, Name: policy},
		Spec: migrationv1alpha1.MigrationPolicySpec{
			PlacementRef: migrationv1alpha1.PlacementRef{Name: placement},
			Volumes:      []migrationv1alpha1.VolumeSelection{{Namespace: appNS, Names: pvcs}},
		},
	}
	mutate(pol)
	Expect(hubK8s.Create(ctx, pol)).To(Succeed())

	By("the app on cluster1: its namespace and PVCs (as a StatefulSet's claim template makes them), its pod from the app's ManifestWork")
	Expect(c1.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}})).To(Succeed())
	for _, pvc := range pvcs {
		Expect(c1.k8s.Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: pvc},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName: ptr.To("standard"),
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}},
			},
		})).To(Succeed())
	}
	go deliverApp(bg, hubNS, appNS, pvcs)
	go watchMigration(bg, hubNS)
	Eventually(func() corev1.PodPhase {
		var pod corev1.Pod
		_ = c1.k8s.Get(ctx, client.ObjectKey{Namespace: appNS, Name: "web-0"}, &pod)
		return pod.Status.Phase
	}, timeout, interval).Should(Equal(corev1.PodRunning))
	Eventually(func() string {
		var pvc corev1.PersistentVolumeClaim
		Expect(c1.k8s.Get(ctx, client.ObjectKey{Namespace: appNS, Name: pvcs[0]}, &pvc)).To(Succeed())
		return pvc.Spec.VolumeName
	}, timeout, interval).ShouldNot(BeEmpty())
	Eventually(func() string {
		got := &migrationv1alpha1.MigrationPolicy{}
		Expect(hubK8s.Get(ctx, client.ObjectKey{Namespace: hubNS, Name: policy}, got)).To(Succeed())
		if c := meta.FindStatusCondition(got.Status.Conditions, migrationv1alpha1.ConditionConverged); c != nil {
			return c.Reason
		}
		return ""
	}, timeout, interval).Should(Equal(migrationv1alpha1.ReasonActualMatchesDesired))

	By("editing the Placement: cluster1 -> cluster2")
	rec := recordDecisions(bg, hubNS)
	Eventually(func() error {
		p := &clusterv1beta1.Placement{}
		if err := hubK8s.Get(ctx, client.ObjectKey{Namespace: hubNS, Name: placement}, p); err != nil {
			return err
		}
		setCluster(p, "cluster2")
		return hubK8s.Update(ctx, p)
	}, timeout, interval).Should(Succeed())
	return hubNS, rec, onlyMigration(ctx, hubNS, "")
}

func setCluster(p *clusterv1beta1.Placement, env string) {
	p.Spec.Predicates = []clusterv1beta1.ClusterPredicate{{
		RequiredClusterSelector: clusterv1beta1.ClusterSelector{LabelSelector: metav1.LabelSelector{
			MatchLabels: map[string]string{"env": env},
		}},
	}}
}
