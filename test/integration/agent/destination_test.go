package agent

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
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

var _ = Describe("ReplicationDestination", func() {
	var agent *agentRun
	BeforeEach(func() { agent = startAgent() })
	AfterEach(func() { agent.stop() })

	It("creates the PVCs, a receiver and Service per PVC, reports the endpoint, then the verified digest, and withdraws its condition", func() {
		ctx := context.Background()
		const ns, id = "dst-app", "d1"
		appNamespace(ctx, ns)
		condType := uplink.ConditionType(id, uplink.RoleDestination)
		rd := &replv1.ReplicationDestination{
			ObjectMeta: metav1.ObjectMeta{Name: "smig-d1", Namespace: ns},
			Spec: replv1.ReplicationDestinationSpec{
				MigrationID: id, TLSSecretName: "smig-d1-tls", EndpointType: replv1.EndpointNodePort,
				ServiceAnnotations: map[string]string{"networking.example.com/internal": "true"},
				Volumes: []replv1.DestinationVolume{
					{PVCName: "data-db-0", Capacity: resource.MustParse("5Gi"), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
						StorageClassName: ptr.To("fast")},
					{PVCName: "raw", Capacity: resource.MustParse("1Gi"), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod},
						StorageClassName: ptr.To("fast"), VolumeMode: ptr.To(corev1.PersistentVolumeBlock)},
				},
			},
		}
		Expect(k8s.Create(ctx, rd)).To(Succeed())

		By("creating the PVCs with the same names and sizes, the mapped class, and nothing the app's manifest could disagree with")
		var pvc corev1.PersistentVolumeClaim
		Eventually(func() error { return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "data-db-0"}, &pvc) }).Should(Succeed())
		Expect(pvc.Spec.Resources.Requests.Storage().String()).To(Equal("5Gi"))
		Expect(*pvc.Spec.StorageClassName).To(Equal("fast"))
		Expect(pvc.Spec.AccessModes).To(Equal([]corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}))
		Expect(*pvc.Spec.VolumeMode).To(Equal(corev1.PersistentVolumeFilesystem))
		Expect(pvc.OwnerReferences).To(BeEmpty(), "the PVC must outlive the ReplicationDestination")
		Expect(pvc.Labels).To(Equal(map[string]string{replv1.MigrationIDLabel: id}))
		Expect(pvc.Annotations).To(BeEmpty())
		var raw corev1.PersistentVolumeClaim
		Eventually(func() error { return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "raw"}, &raw) }).Should(Succeed())
		Expect(*raw.Spec.VolumeMode).To(Equal(corev1.PersistentVolumeBlock))
		Expect(raw.Spec.AccessModes).To(Equal([]corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod}))

		By("waiting for the TLS Secret before starting receivers")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rd), rd)).To(Succeed())
			g.Expect(rd.Status.Phase).To(Equal(replv1.DestinationPreparing))
			g.Expect(rd.Status.LastError).To(ContainSubstring("waiting for TLS Secret smig-d1-tls"))
		}).Should(Succeed())
		Expect(moverPods(ctx, ns, id, moverpod.RoleReceiver)).To(BeEmpty())
		Eventually(func() *metav1.Condition { return hubCondition(ctx, condType) }).ShouldNot(BeNil())
		Expect(hubCondition(ctx, condType).Reason).To(Equal("Preparing"))

		tlsSecret(ctx, ns, "smig-d1-tls")

		By("starting one receiver pod and one Service per PVC")
		Eventually(func() []corev1.Pod { return moverPods(ctx, ns, id, moverpod.RoleReceiver) }).Should(HaveLen(2))
		recv := moverpod.PodName(id, moverpod.RoleReceiver, "data-db-0")
		var pod corev1.Pod
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: recv}, &pod)).To(Succeed())
		c := pod.Spec.Containers[0]
		Expect(c.Image).To(Equal(moverImage))
		Expect(c.Args).To(Equal([]string{"mover", "receive", "--dir", "/data", "--volume", ns + "/data-db-0", "--ca", "/tls/ca.crt", "--cert", "/tls/tls.crt",
			"--key", "/tls/tls.key", "--progress-interval", "2s", "--listen", ":8443"}))
		Expect(c.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
		Expect(c.SecurityContext.Capabilities.Add).To(ConsistOf(corev1.Capability("CHOWN"), corev1.Capability("FOWNER"),
			corev1.Capability("DAC_OVERRIDE"), corev1.Capability("FSETID"), corev1.Capability("MKNOD")))
		Expect(*c.SecurityContext.AllowPrivilegeEscalation).To(BeFalse())
		Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
		Expect(c.VolumeMounts).To(ContainElement(And(HaveField("MountPath", "/data"), HaveField("ReadOnly", false))), "the receiver writes its volume")
		Expect(c.Resources.Limits.Memory().String()).To(Equal("1344Mi"), "no policy resources: 1 GiB and 64 MiB per GiB of the 5 GiB volume")
		Expect(c.Resources.Requests.Memory().String()).To(Equal("64Mi"))
		Expect(*pod.Spec.AutomountServiceAccountToken).To(BeFalse())
		Expect(pod.Spec.Volumes[0].PersistentVolumeClaim.ClaimName).To(Equal("data-db-0"))
		Expect(pod.Spec.Volumes[1].Secret.SecretName).To(Equal("smig-d1-tls"))
		var rawPod corev1.Pod
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: moverpod.PodName(id, moverpod.RoleReceiver, "raw")}, &rawPod)).To(Succeed())
		Expect(rawPod.Spec.Containers[0].VolumeDevices).To(HaveLen(1))
		Expect(rawPod.Spec.Containers[0].Args).To(ContainElement("--block-device"))

		var svc corev1.Service
		Eventually(func() error {
			return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: moverpod.ServiceName(id, "data-db-0")}, &svc)
		}).Should(Succeed())
		Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeNodePort))
		Expect(svc.Spec.Selector).To(HaveKeyWithValue(replv1.VolumeLabel, moverpod.VolumeKey("data-db-0")))
		Expect(svc.Spec.Ports[0].NodePort).NotTo(BeZero())
		Expect(svc.Annotations).To(HaveKeyWithValue("networking.example.com/internal", "true"), "the policy's serviceAnnotations")

		By("reporting the endpoints once the receivers run (node address and node port)")
		setPodStatus(ctx, ns, recv, running("10.0.0.7"))
		setPodStatus(ctx, ns, rawPod.Name, running("10.0.0.8"))
		var rawSvc corev1.Service
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: moverpod.ServiceName(id, "raw")}, &rawSvc)).To(Succeed())
		want := map[string]string{
			ns + "/data-db-0": "10.0.0.7:" + itoa(svc.Spec.Ports[0].NodePort),
			ns + "/raw":       "10.0.0.8:" + itoa(rawSvc.Spec.Ports[0].NodePort),
		}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rd), rd)).To(Succeed())
			g.Expect(rd.Status.Phase).To(Equal(replv1.DestinationReady))
			g.Expect(rd.Status.Volumes).To(HaveLen(2))
			for _, v := range rd.Status.Volumes {
				g.Expect(v.Endpoint).To(Equal(want[ns+"/"+v.PVCName]))
			}
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			c := hubCondition(ctx, condType)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal("Ready"))
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
			m := hubMessage(c)
			g.Expect(m.Endpoints).To(Equal(want))
		}).Should(Succeed())

		By("recording each receiver's digest when it exits after the verified final sync")
		setPodStatus(ctx, ns, recv, succeeded("listening\n"+completedLine("receiver", "aaaa", 4096)))
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rd), rd)).To(Succeed())
			g.Expect(rd.Status.Volumes[0].Digest).To(Equal("aaaa"))
			g.Expect(rd.Status.Phase).To(Equal(replv1.DestinationReceiving), "one volume still receiving")
			g.Expect(rd.Status.Digest).To(BeEmpty())
		}).Should(Succeed())
		setPodStatus(ctx, ns, rawPod.Name, succeeded(completedLine("receiver", "bbbb", 1024)))
		wantDigest := uplink.CombineDigests(map[string]string{ns + "/data-db-0": "aaaa", ns + "/raw": "bbbb"})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rd), rd)).To(Succeed())
			g.Expect(rd.Status.Phase).To(Equal(replv1.DestinationVerified))
			g.Expect(rd.Status.Digest).To(Equal(wantDigest))
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			c := hubCondition(ctx, condType)
			g.Expect(c.Reason).To(Equal("Verified"))
			g.Expect(hubMessage(c).Digest).To(Equal(wantDigest))
		}).Should(Succeed())

		By("removing receivers and Services once verified")
		Eventually(func() []corev1.Pod { return moverPods(ctx, ns, id, moverpod.RoleReceiver) }).Should(BeEmpty())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(&svc), &corev1.Service{}))
		}).Should(BeTrue())

		By("letting the app's own PVC manifest apply cleanly onto the pre-created, bound PVC (server-side apply, no force)")
		bindPVC(ctx, ns, "data-db-0", "pv-dst-data", corev1.PersistentVolumeReclaimDelete)
		appPVC := &corev1.PersistentVolumeClaim{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
			ObjectMeta: metav1.ObjectMeta{Name: "data-db-0", Namespace: ns,
				Labels:      map[string]string{"app": "db", "app.kubernetes.io/managed-by": "Helm"},
				Annotations: map[string]string{"meta.helm.sh/release-name": "db"}},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				StorageClassName: ptr.To("fast"),
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}},
			},
		}
		Expect(k8s.Patch(ctx, appPVC, client.Apply, client.FieldOwner("work-agent"))).To(Succeed())
		Expect(appPVC.Spec.VolumeName).To(Equal("pv-dst-data"))
		Expect(appPVC.Labels).To(HaveKeyWithValue("app", "db"))

		By("saying nothing of the app before the hub verified the data; then waiting for a Ready app pod on every PVC")
		Consistently(func(g Gomega) {
			m := hubMessage(hubCondition(ctx, condType))
			g.Expect(m.HubVerified).To(BeFalse())
			g.Expect(m.AppReady).To(BeFalse())
		}, 500*time.Millisecond).Should(Succeed())
		patchSpec(ctx, rd, func() { rd.Spec.HubVerified = true })
		Eventually(func(g Gomega) {
			m := hubMessage(hubCondition(ctx, condType))
			g.Expect(m.HubVerified).To(BeTrue())
			g.Expect(m.AppReady).To(BeFalse())
			g.Expect(m.AppWaiting).To(ConsistOf(ns+"/data-db-0", ns+"/raw"))
		}).Should(Succeed())
		appPod := func(name string, claims ...string) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "db:1"}}}}
			for _, c := range claims {
				pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: c, VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
			}
			Expect(k8s.Create(ctx, pod)).To(Succeed())
			setPodStatus(ctx, ns, name, running("10.0.0.9"))
		}
		ready := func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}
		appPod("db-0", "data-db-0")
		appPod("db-raw", "raw")
		setPodStatus(ctx, ns, "db-0", ready)
		Eventually(func(g Gomega) {
			m := hubMessage(hubCondition(ctx, condType))
			g.Expect(m.AppWaiting).To(Equal([]string{ns + "/raw"}), "Running is not Ready")
			g.Expect(m.AppReady).To(BeFalse())
		}).Should(Succeed())
		setPodStatus(ctx, ns, "db-raw", ready)
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rd), rd)).To(Succeed())
			g.Expect(rd.Status.AppReady).To(BeTrue())
			g.Expect(rd.Status.Volumes[0].AppPod).To(Equal("db-0"))
			m := hubMessage(hubCondition(ctx, condType))
			g.Expect(m.AppReady).To(BeTrue())
			g.Expect(m.AppWaiting).To(BeEmpty())
		}).Should(Succeed())

		By("withdrawing the hub condition, keeping the PVCs and handing them to the app when the ReplicationDestination is deleted")
		Expect(k8s.Delete(ctx, rd)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(rd), rd)) }).Should(BeTrue())
		Eventually(func() *metav1.Condition { return hubCondition(ctx, condType) }).Should(BeNil())
		Consistently(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(&pvc), &pvc) }, time.Second).Should(Succeed())
		Expect(pvc.Labels).To(Equal(map[string]string{"app": "db", "app.kubernetes.io/managed-by": "Helm"}), "the migration's label is gone: the PVC is the app's")
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&raw), &raw)).To(Succeed())
		Expect(raw.Labels).NotTo(HaveKey(replv1.MigrationIDLabel))
	})

	It("fails clearly when the mapped storage class does not exist, and creates nothing", func() {
		ctx := context.Background()
		const ns, id = "dst-noclass", "d2"
		appNamespace(ctx, ns)
		tlsSecret(ctx, ns, "tls")
		rd := &replv1.ReplicationDestination{
			ObjectMeta: metav1.ObjectMeta{Name: "smig-d2", Namespace: ns},
			Spec: replv1.ReplicationDestinationSpec{MigrationID: id, TLSSecretName: "tls",
				Volumes: []replv1.DestinationVolume{{PVCName: "data", Capacity: resource.MustParse("1Gi"),
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: ptr.To("gold")}}},
		}
		Expect(k8s.Create(ctx, rd)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rd), rd)).To(Succeed())
			g.Expect(rd.Status.Phase).To(Equal(replv1.DestinationFailed))
			g.Expect(rd.Status.LastError).To(ContainSubstring(`StorageClass "gold" does not exist on this cluster`))
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			c := hubCondition(ctx, uplink.ConditionType(id, uplink.RoleDestination))
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal("Failed"))
			g.Expect(hubMessage(c).Error).To(ContainSubstring(`StorageClass "gold" does not exist`))
		}).Should(Succeed())
		Consistently(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "data"}, &corev1.PersistentVolumeClaim{}))
		}, time.Second).Should(BeTrue())
		Expect(moverPods(ctx, ns, id, moverpod.RoleReceiver)).To(BeEmpty())

		By("recovering once the class exists")
		Expect(k8s.Create(ctx, storageClass("gold"))).To(Succeed())
		patchSpec(ctx, rd, func() {
			if rd.Annotations == nil {
				rd.Annotations = map[string]string{}
			}
			rd.Annotations["poke"] = "1" // an event; the agent does not watch storage classes
		})
		Eventually(func() error {
			return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "data"}, &corev1.PersistentVolumeClaim{})
		}).Should(Succeed())
		Expect(k8s.Delete(ctx, rd)).To(Succeed())
		Eventually(func() *metav1.Condition { return hubCondition(ctx, uplink.ConditionType(id, uplink.RoleDestination)) }).Should(BeNil())
	})

	It("reuses a PVC an earlier migration moved the app away from, and refuses any other existing PVC", func() {
		ctx := context.Background()
		const ns, id = "dst-back", "d3"
		appNamespace(ctx, ns)
		tlsSecret(ctx, ns, "tls")
		existing := func(name string, labels map[string]string) {
			Expect(k8s.Create(ctx, &corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
				Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}}},
			})).To(Succeed())
		}
		existing("left", map[string]string{replv1.MovedOutLabel: "earlier"})
		existing("foreign", nil)
		existing("busy", map[string]string{replv1.MovedOutLabel: "earlier"})
		// A failed attempt of another migration left this one (its
		// ReplicationDestination is gone); one still in flight owns "inflight".
		existing("leftover", map[string]string{replv1.MigrationIDLabel: "failed"})
		existing("inflight", map[string]string{replv1.MigrationIDLabel: "other"})
		Expect(k8s.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "app"}},
				Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "busy"}}}}},
		})).To(Succeed())
		dest := func(name, pvc string) *replv1.ReplicationDestination {
			return &replv1.ReplicationDestination{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Spec: replv1.ReplicationDestinationSpec{MigrationID: id, TLSSecretName: "tls",
					Volumes: []replv1.DestinationVolume{{PVCName: pvc, Capacity: resource.MustParse("1Gi"),
						AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}}}},
			}
		}

		other := dest("smig-other", "inflight")
		other.Spec.MigrationID, other.Spec.TLSSecretName = "other", "absent"
		Expect(k8s.Create(ctx, other)).To(Succeed())
		// adopted: its label now names this migration, and a receiver writes into it.
		adopted := func(pvcName string, receivers int) {
			Expect(k8s.Create(ctx, dest("smig-"+pvcName, pvcName))).To(Succeed())
			Eventually(func(g Gomega) {
				var pvc corev1.PersistentVolumeClaim
				g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: pvcName}, &pvc)).To(Succeed())
				g.Expect(pvc.Labels).To(Equal(map[string]string{replv1.MigrationIDLabel: id}))
				g.Expect(moverPods(ctx, ns, id, moverpod.RoleReceiver)).To(HaveLen(receivers))
			}).Should(Succeed())
		}

		By("taking over the PVC left behind by a move away from this cluster")
		adopted("left", 1)
		By("taking over the leftover of a failed attempt: the retry resumes its partial copy")
		adopted("leftover", 2)
		Expect(k8s.Delete(ctx, &replv1.ReplicationDestination{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "smig-leftover"}})).To(Succeed())
		Eventually(func() []corev1.Pod { return moverPods(ctx, ns, id, moverpod.RoleReceiver) }).Should(HaveLen(1))

		By("refusing a PVC no migration moved away from, one a pod still uses, one another migration writes into, and writing into none")
		wantLabel := map[string]string{"foreign": "", "busy": "", "inflight": "other"}
		for name, want := range map[string]string{"foreign": "holds no data an earlier migration moved away", "busy": "pod app uses it",
			"inflight": "migration other is still writing into it"} {
			rd := dest("smig-"+name, name)
			Expect(k8s.Create(ctx, rd)).To(Succeed())
			Eventually(func(g Gomega) {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rd), rd)).To(Succeed())
				g.Expect(rd.Status.Phase).To(Equal(replv1.DestinationFailed))
				g.Expect(rd.Status.LastError).To(ContainSubstring(want))
			}).Should(Succeed())
			var pvc corev1.PersistentVolumeClaim
			Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &pvc)).To(Succeed())
			Expect(pvc.Labels[replv1.MigrationIDLabel]).To(Equal(wantLabel[name]))
			Expect(k8s.Delete(ctx, rd)).To(Succeed())
		}
		Expect(moverPods(ctx, ns, id, moverpod.RoleReceiver)).To(HaveLen(1), "receivers only for the reused PVC")
		Expect(k8s.Delete(ctx, &replv1.ReplicationDestination{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "smig-left"}})).To(Succeed())
		Eventually(func() *metav1.Condition { return hubCondition(ctx, uplink.ConditionType(id, uplink.RoleDestination)) }).Should(BeNil())
	})
})

var _ = Describe("Agent rights", func() {
	It("reports clearly, and recovers, when the replicator RoleBinding is not in the app namespace yet", func() {
		ctx := context.Background()
		agent := startAgent()
		defer agent.stop()
		const ns, id = "dst-norights", "d3"
		_, err := kubeClient.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		rd := &replv1.ReplicationDestination{
			ObjectMeta: metav1.ObjectMeta{Name: "smig-d3", Namespace: ns},
			Spec: replv1.ReplicationDestinationSpec{MigrationID: id, TLSSecretName: "tls",
				Volumes: []replv1.DestinationVolume{{PVCName: "data", Capacity: resource.MustParse("1Gi"),
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}}}},
		}
		Expect(k8s.Create(ctx, rd)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rd), rd)).To(Succeed())
			g.Expect(rd.Status.LastError).To(ContainSubstring("are the hub's RoleBindings smig-d3-replicator to ClusterRole stateful-migration-replicator and smig-d3-tls-reader there?"))
		}).Should(Succeed())
		Expect(apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "data"}, &corev1.PersistentVolumeClaim{}))).To(BeTrue())

		By("carrying on once the hub's RoleBinding arrives")
		_, err = kubeClient.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "smig-d3-replicator", Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: replv1.ReplicatorClusterRole},
			Subjects:   []rbacv1.Subject{agentSA},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() error {
			return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "data"}, &corev1.PersistentVolumeClaim{})
		}).Should(Succeed())
		Expect(k8s.Delete(ctx, rd)).To(Succeed())
		Eventually(func() *metav1.Condition { return hubCondition(ctx, uplink.ConditionType(id, uplink.RoleDestination)) }).Should(BeNil())
	})
})

func itoa(i int32) string { return fmtInt(int64(i)) }
