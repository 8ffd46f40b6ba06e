package agent

import (
	"context"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

func sourcePVC(ctx context.Context, ns, name string) {
	Expect(k8s.Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To("fast"),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	})).To(Succeed())
}

// appPod is the app's pod, already scheduled on node and running.
func appPod(ctx context.Context, ns, name, node, pvc string) {
	Expect(k8s.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "db"}},
		Spec: corev1.PodSpec{
			NodeName:    node,
			Containers:  []corev1.Container{{Name: "db", Image: "db:1"}},
			Tolerations: []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc}}}},
		},
	})).To(Succeed())
	setPodStatus(ctx, ns, name, running("10.0.1.1"))
}

// oneSenderNotAskedToFinish: the continuous sender runs, alone, and has not
// been told to finish.
func oneSenderNotAskedToFinish(ctx context.Context, ns, id string) func(Gomega) {
	return func(g Gomega) {
		pods := moverPods(ctx, ns, id, moverpod.RoleSender)
		g.Expect(pods).To(HaveLen(1))
		g.Expect(pods[0].Annotations).NotTo(HaveKey(replv1.FinishAnnotation))
	}
}

func getPV(ctx context.Context, name string) *corev1.PersistentVolume {
	var pv corev1.PersistentVolume
	Expect(k8s.Get(ctx, types.NamespacedName{Name: name}, &pv)).To(Succeed())
	return &pv
}

var _ = Describe("ReplicationSource", func() {
	It("protects the volume first, sends from the app's node, waits for the app to stop, final-syncs, reports, survives an agent restart and cleans up", func() {
		ctx := context.Background()
		const ns, id = "src-app", "s1"
		appNamespace(ctx, ns)
		tlsSecret(ctx, ns, "smig-s1-tls")
		condType := uplink.ConditionType(id, uplink.RoleSource)
		agent := startAgent()
		defer func() { agent.stop() }()

		sourcePVC(ctx, ns, "data")
		rs := &replv1.ReplicationSource{
			ObjectMeta: metav1.ObjectMeta{Name: "smig-s1", Namespace: ns},
			Spec: replv1.ReplicationSourceSpec{
				MigrationID: id, TLSSecretName: "smig-s1-tls",
				Volumes: []replv1.SourceVolume{{PVCName: "data", Destination: "203.0.113.9:31443"}}, BandwidthLimit: "10M", Compress: true,
			},
		}
		Expect(k8s.Create(ctx, rs)).To(Succeed())

		By("starting no mover while the volume cannot be protected (PVC not bound yet)")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rs), rs)).To(Succeed())
			g.Expect(rs.Status.Phase).To(Equal(replv1.SourcePending))
			g.Expect(rs.Status.Protected).To(BeFalse())
			g.Expect(rs.Status.LastError).To(ContainSubstring("PVC data is not bound"))
		}).Should(Succeed())
		Consistently(func() []corev1.Pod { return moverPods(ctx, ns, id, moverpod.RoleSender) }, 2*time.Second).Should(BeEmpty())

		By("protecting the PV (Retain, original policy remembered) and the PVC (finalizer) once bound")
		appPod(ctx, ns, "db-0", "node-a", "data")
		bindPVC(ctx, ns, "data", "pv-src-data", corev1.PersistentVolumeReclaimDelete)
		Eventually(func(g Gomega) {
			pv := getPV(ctx, "pv-src-data")
			g.Expect(pv.Spec.PersistentVolumeReclaimPolicy).To(Equal(corev1.PersistentVolumeReclaimRetain))
			g.Expect(pv.Annotations).To(HaveKeyWithValue(replv1.OriginalReclaimPolicyAnnotation, "Delete"))
			var pvc corev1.PersistentVolumeClaim
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "data"}, &pvc)).To(Succeed())
			g.Expect(pvc.Finalizers).To(ContainElement(replv1.PVCProtectionFinalizer))
		}).Should(Succeed())

		By("running the continuous sender on the app pod's node, with the app's tolerations")
		Eventually(func() []corev1.Pod { return moverPods(ctx, ns, id, moverpod.RoleSender) }).Should(HaveLen(1))
		sender := moverPods(ctx, ns, id, moverpod.RoleSender)[0]
		Expect(moverpod.PinnedNode(&sender)).To(Equal("node-a"))
		Expect(sender.Spec.Tolerations).To(ContainElement(HaveField("Key", "dedicated")))
		Expect(sender.Spec.Containers[0].Args).To(Equal([]string{"mover", "send", "--dir", "/data", "--volume", ns + "/data", "--ca", "/tls/ca.crt",
			"--cert", "/tls/tls.crt", "--key", "/tls/tls.key", "--progress-interval", "2s", "--to", "203.0.113.9:31443",
			"--server-name", "stateful-migration-receiver", "--continuous", "--finish-file", "/control/finish", "--compress", "--bwlimit", "10M"}))
		Expect(sender.Annotations).NotTo(HaveKey(replv1.FinishAnnotation), "not asked to finish yet")
		Expect(sender.Spec.Containers[0].VolumeMounts).To(ContainElement(And(HaveField("MountPath", "/control"), HaveField("ReadOnly", true))))
		Expect(sender.Spec.Containers[0].VolumeMounts).To(ContainElement(And(HaveField("MountPath", "/data"), HaveField("ReadOnly", true))), "the sender only reads the app's volume")
		Expect(sender.Spec.Volumes).To(ContainElement(HaveField("DownwardAPI.Items", ConsistOf(HaveField("FieldRef.FieldPath",
			"metadata.annotations['"+replv1.FinishAnnotation+"']")))))
		Expect(sender.Spec.Containers[0].SecurityContext.Capabilities.Add).To(ConsistOf(corev1.Capability("DAC_READ_SEARCH")))
		Expect(sender.OwnerReferences).To(ConsistOf(HaveField("Name", "smig-s1")))

		By("reporting the mover's progress (read from its log) on the hub")
		setPodStatus(ctx, ns, sender.Name, running("10.0.1.1"))
		logs.set(ns, sender.Name, `{"role":"sender","phase":"InitialSync","bytesTotal":1000,"bytesCopied":10}
not json: a stray stderr line
{"role":"sender","phase":"Syncing","bytesTotal":1000,"bytesCopied":990,"lagBytes":10,"lagSeconds":0.4,"throughputBytesPerSecond":5000}`)
		Eventually(func(g Gomega) {
			c := hubCondition(ctx, condType)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal("Syncing"))
			m := hubMessage(c)
			g.Expect(m.BytesTotal).To(Equal(int64(1000)))
			g.Expect(m.BytesCopied).To(Equal(int64(990)))
			g.Expect(m.LagBytes).To(Equal(int64(10)))
			g.Expect(m.LagSeconds).To(Equal(int64(1)))
			g.Expect(m.Throughput).To(Equal(int64(5000)))
			g.Expect(*m.Protected).To(BeTrue())
			g.Expect(*m.PodsUsingVolumes).To(Equal(int32(1)))
		}).Should(Succeed())

		By("following the app when it is rescheduled to another node")
		Expect(k8s.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-0"}})).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "db-0"}, &corev1.Pod{}))
		}).Should(BeTrue())
		appPod(ctx, ns, "db-0", "node-b", "data")
		Eventually(func(g Gomega) {
			pods := moverPods(ctx, ns, id, moverpod.RoleSender)
			g.Expect(pods).To(HaveLen(1))
			g.Expect(moverpod.PinnedNode(&pods[0])).To(Equal("node-b"))
		}).Should(Succeed())
		sender = moverPods(ctx, ns, id, moverpod.RoleSender)[0]
		setPodStatus(ctx, ns, sender.Name, running("10.0.1.2"))

		By("resuming after an agent restart without a second sender")
		agent.stop()
		agent = startAgent()
		Consistently(func(g Gomega) {
			pods := moverPods(ctx, ns, id, moverpod.RoleSender)
			g.Expect(pods).To(HaveLen(1))
			g.Expect(pods[0].UID).To(Equal(sender.UID))
		}, 2*time.Second).Should(Succeed())

		By("holding the final sync while an app pod still uses the PVC")
		quiesce := metav1.NewTime(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
		patchSpec(ctx, rs, func() { rs.Spec.FinalSync, rs.Spec.QuiesceStartTime = true, &quiesce })
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rs), rs)).To(Succeed())
			g.Expect(rs.Status.Phase).To(Equal(replv1.SourceFinalSync))
			g.Expect(rs.Status.LastError).To(ContainSubstring("final sync waits for 1 pod(s)"))
		}).Should(Succeed())
		Consistently(oneSenderNotAskedToFinish(ctx, ns, id), 2*time.Second).Should(Succeed())

		By("waiting while the app's pod is being deleted and its container still runs")
		var app corev1.Pod
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "db-0"}, &app)).To(Succeed())
		patch := client.MergeFrom(app.DeepCopy())
		app.Finalizers = append(app.Finalizers, "test.stateful-migration.io/linger")
		Expect(k8s.Patch(ctx, &app, patch)).To(Succeed())
		Expect(k8s.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-0"}})).To(Succeed())
		Consistently(oneSenderNotAskedToFinish(ctx, ns, id), 2*time.Second).Should(Succeed())

		By("telling the running sender to finish once the app's container exited, while the pod object lingers: same pod, no new process")
		setPodStatus(ctx, ns, "db-0", func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "db", Image: "db:1", ImageID: "sha256:2",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}}}
		})
		Eventually(func(g Gomega) {
			pods := moverPods(ctx, ns, id, moverpod.RoleSender)
			g.Expect(pods).To(HaveLen(1))
			g.Expect(pods[0].UID).To(Equal(sender.UID))
			g.Expect(pods[0].Annotations).To(HaveKeyWithValue(replv1.FinishAnnotation, "2026-12-02T10:00:00Z"))
		}).Should(Succeed())
		Eventually(func() int32 {
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rs), rs)).To(Succeed())
			return rs.Status.PodsUsingVolumes
		}).Should(BeZero())

		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "db-0"}, &app)).To(Succeed())
		patch = client.MergeFrom(app.DeepCopy())
		app.Finalizers = nil
		Expect(k8s.Patch(ctx, &app, patch)).To(Succeed())

		By("recording the verified digest once that sender exits")
		logs.set(ns, sender.Name, completedLine("sender", "cafe", 1000))
		setPodStatus(ctx, ns, sender.Name, succeeded(""))
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rs), rs)).To(Succeed())
			g.Expect(rs.Status.Phase).To(Equal(replv1.SourceVerified))
			g.Expect(rs.Status.Digest).To(Equal("cafe"))
			g.Expect(rs.Status.FinalSyncCold).To(BeFalse())
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			c := hubCondition(ctx, condType)
			g.Expect(c.Reason).To(Equal("Verified"))
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(hubMessage(c).Digest).To(Equal("cafe"))
			g.Expect(hubMessage(c).MovedOut).To(BeFalse())
		}).Should(Succeed())
		By("not marking the PVC moved-out on the sender's own verification: the hub has not compared the digests yet")
		movedOut := func() string {
			var pvc corev1.PersistentVolumeClaim
			Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "data"}, &pvc)).To(Succeed())
			return pvc.Labels[replv1.MovedOutLabel]
		}
		Consistently(movedOut, time.Second).Should(BeEmpty())
		By("marking it moved-out once the hub verified both digests (hubVerified), so that a migration back may reuse it")
		patchSpec(ctx, rs, func() { rs.Spec.HubVerified = true })
		Eventually(movedOut).Should(Equal(id))
		Eventually(func(g Gomega) {
			g.Expect(hubMessage(hubCondition(ctx, condType)).MovedOut).To(BeTrue())
		}).Should(Succeed())
		Eventually(func() []corev1.Pod { return moverPods(ctx, ns, id, moverpod.RoleSender) }).Should(BeEmpty())

		By("keeping the PVC while OCM deletes the app's manifests")
		Expect(k8s.Delete(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "data"}})).To(Succeed())
		Consistently(func(g Gomega) {
			var pvc corev1.PersistentVolumeClaim
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "data"}, &pvc)).To(Succeed())
			g.Expect(pvc.DeletionTimestamp).NotTo(BeNil())
		}, time.Second).Should(Succeed())

		By("on deletion: removing the finalizer and the condition, leaving the PV Retain (no releaseSource)")
		Expect(k8s.Delete(ctx, rs)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(rs), rs)) }).Should(BeTrue())
		// What is left holding the PVC is kubernetes.io/pvc-protection, which
		// the (absent) controller-manager would drop now that no pod uses it.
		Eventually(func(g Gomega) {
			var pvc corev1.PersistentVolumeClaim
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "data"}, &pvc)).To(Succeed())
			g.Expect(pvc.Finalizers).To(Equal([]string{"kubernetes.io/pvc-protection"}))
		}).Should(Succeed())
		Eventually(func() *metav1.Condition { return hubCondition(ctx, condType) }).Should(BeNil())
		Expect(moverPods(ctx, ns, id, moverpod.RoleSender)).To(BeEmpty())
		pv := getPV(ctx, "pv-src-data")
		Expect(pv.Spec.PersistentVolumeReclaimPolicy).To(Equal(corev1.PersistentVolumeReclaimRetain))
		Expect(pv.Annotations).To(HaveKeyWithValue(replv1.OriginalReclaimPolicyAnnotation, "Delete"))
		Expect(movedOut()).To(Equal(id), "the label outlives the ReplicationSource")
	})

	It("never leaves a live PVC labelled moved-out when the migration is rolled back", func() {
		ctx := context.Background()
		const ns, id = "src-rollback", "s4"
		appNamespace(ctx, ns)
		agent := startAgent()
		defer agent.stop()
		sourcePVC(ctx, ns, "data")
		bindPVC(ctx, ns, "data", "pv-src-rollback", corev1.PersistentVolumeReclaimDelete)
		// As an earlier agent version left it: labelled at its own verification.
		var pvc corev1.PersistentVolumeClaim
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "data"}, &pvc)).To(Succeed())
		patch := client.MergeFrom(pvc.DeepCopy())
		pvc.Labels = map[string]string{replv1.MovedOutLabel: id, "app": "db"}
		Expect(k8s.Patch(ctx, &pvc, patch)).To(Succeed())
		rs := &replv1.ReplicationSource{
			ObjectMeta: metav1.ObjectMeta{Name: "smig-" + id, Namespace: ns},
			Spec:       replv1.ReplicationSourceSpec{MigrationID: id, TLSSecretName: "absent", Volumes: []replv1.SourceVolume{{PVCName: "data"}}},
		}
		Expect(k8s.Create(ctx, rs)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rs), rs)).To(Succeed())
			g.Expect(rs.Status.Protected).To(BeTrue())
		}).Should(Succeed())

		By("the hub rolls back: the ReplicationSource goes without hubVerified, and so does the label")
		Expect(k8s.Delete(ctx, rs)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "data"}, &pvc)).To(Succeed())
			g.Expect(pvc.Labels).To(Equal(map[string]string{"app": "db"}))
			g.Expect(pvc.Finalizers).NotTo(ContainElement(replv1.PVCProtectionFinalizer))
		}).Should(Succeed())
	})

	It("restores the original reclaim policy on deletion only when releaseSource is set", func() {
		ctx := context.Background()
		const ns, id = "src-release", "s2"
		appNamespace(ctx, ns)
		agent := startAgent()
		defer agent.stop()
		sourcePVC(ctx, ns, "data")
		bindPVC(ctx, ns, "data", "pv-src-release", corev1.PersistentVolumeReclaimDelete)
		rs := &replv1.ReplicationSource{
			ObjectMeta: metav1.ObjectMeta{Name: "smig-s2", Namespace: ns},
			Spec: replv1.ReplicationSourceSpec{MigrationID: id, TLSSecretName: "absent",
				Volumes: []replv1.SourceVolume{{PVCName: "data"}}},
		}
		Expect(k8s.Create(ctx, rs)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rs), rs)).To(Succeed())
			g.Expect(rs.Status.Protected).To(BeTrue())
			g.Expect(rs.Status.LastError).To(ContainSubstring("waiting for the destination endpoint"))
		}).Should(Succeed())
		Expect(getPV(ctx, "pv-src-release").Spec.PersistentVolumeReclaimPolicy).To(Equal(corev1.PersistentVolumeReclaimRetain))
		Expect(moverPods(ctx, ns, id, moverpod.RoleSender)).To(BeEmpty())

		patchSpec(ctx, rs, func() { rs.Spec.ReleaseSource = true })
		Expect(k8s.Delete(ctx, rs)).To(Succeed())
		Eventually(func(g Gomega) {
			pv := getPV(ctx, "pv-src-release")
			g.Expect(pv.Spec.PersistentVolumeReclaimPolicy).To(Equal(corev1.PersistentVolumeReclaimDelete))
			g.Expect(pv.Annotations).NotTo(HaveKey(replv1.OriginalReclaimPolicyAnnotation))
			var pvc corev1.PersistentVolumeClaim
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "data"}, &pvc)).To(Succeed())
			g.Expect(pvc.Finalizers).NotTo(ContainElement(replv1.PVCProtectionFinalizer))
		}).Should(Succeed())
		Eventually(func() *metav1.Condition { return hubCondition(ctx, uplink.ConditionType(id, uplink.RoleSource)) }).Should(BeNil())
	})

	It("starts a sender that finishes once caught up when the running one was lost at the final sync, and reports that final sync cold", func() {
		ctx := context.Background()
		const ns, id = "src-cold", "s3"
		appNamespace(ctx, ns)
		tlsSecret(ctx, ns, "smig-s3-tls")
		agent := startAgent()
		defer agent.stop()
		sourcePVC(ctx, ns, "data")
		bindPVC(ctx, ns, "data", "pv-src-cold", corev1.PersistentVolumeReclaimDelete)
		rs := &replv1.ReplicationSource{
			ObjectMeta: metav1.ObjectMeta{Name: "smig-s3", Namespace: ns},
			Spec: replv1.ReplicationSourceSpec{MigrationID: id, TLSSecretName: "smig-s3-tls",
				Volumes: []replv1.SourceVolume{{PVCName: "data", Destination: "203.0.113.9:31443"}}, FullVerify: true},
		}
		Expect(k8s.Create(ctx, rs)).To(Succeed())
		Eventually(func() []corev1.Pod { return moverPods(ctx, ns, id, moverpod.RoleSender) }).Should(HaveLen(1))
		lost := moverPods(ctx, ns, id, moverpod.RoleSender)[0]
		Expect(lost.Spec.Containers[0].Args).To(ContainElement("--full-verify"))

		By("losing the sender (evicted) just as the final sync is asked")
		quiesce := metav1.NewTime(time.Date(2026, 12, 2, 11, 0, 0, 0, time.UTC))
		patchSpec(ctx, rs, func() { rs.Spec.FinalSync, rs.Spec.QuiesceStartTime = true, &quiesce })
		setPodStatus(ctx, ns, lost.Name, func(p *corev1.Pod) { p.Status.Phase, p.Status.Reason = corev1.PodFailed, "Evicted" })
		Eventually(func(g Gomega) {
			pods := moverPods(ctx, ns, id, moverpod.RoleSender)
			g.Expect(pods).To(HaveLen(1))
			g.Expect(pods[0].UID).NotTo(Equal(lost.UID))
			g.Expect(pods[0].Annotations).To(HaveKeyWithValue(replv1.FinishAnnotation, "2026-12-02T11:00:00Z"),
				"created already asked to finish")
			g.Expect(pods[0].Spec.Affinity).To(BeNil(), "no app pod left: it may run anywhere")
		}).Should(Succeed())
		fresh := moverPods(ctx, ns, id, moverpod.RoleSender)[0]

		By("reporting the cold final sync to the hub (its final pass listed everything, a change inotify missed), then the digest")
		logs.set(ns, fresh.Name, `{"role":"sender","phase":"FinalSync","bytesTotal":1000,"bytesCopied":1000,"finalSyncCold":true,"unseenChange":"db/x"}`+"\n"+
			strings.Replace(completedLine("sender", "beef", 1000), `"verified":true`, `"verified":true,"finalSyncCold":true,"finalPassFull":true,"unseenChange":"db/x"`, 1))
		setPodStatus(ctx, ns, fresh.Name, succeeded(""))
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rs), rs)).To(Succeed())
			g.Expect(rs.Status.Phase).To(Equal(replv1.SourceVerified))
			g.Expect(rs.Status.FinalSyncCold).To(BeTrue())
			c := hubCondition(ctx, uplink.ConditionType(id, uplink.RoleSource))
			g.Expect(c).NotTo(BeNil())
			g.Expect(hubMessage(c).FinalSyncCold).To(BeTrue())
			g.Expect(hubMessage(c).FinalPassFull).To(BeTrue())
			g.Expect(hubMessage(c).UnseenChange).To(Equal("db/x"))
			g.Expect(hubMessage(c).Digest).To(Equal("beef"))
		}).Should(Succeed())
		Expect(k8s.Delete(ctx, rs)).To(Succeed())
	})
})
