package agent

import (
	"context"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

var _ = Describe("ReplicationDestination for a standby", func() {
	var agent *agentRun
	BeforeEach(func() { agent = startAgent() })
	AfterEach(func() { agent.stop() })

	It("runs its receivers keeping points in time and reports each volume's last point; standby is immutable", func() {
		ctx := context.Background()
		const ns, id = "dst-standby", "s1"
		appNamespace(ctx, ns)
		rd := &replv1.ReplicationDestination{
			ObjectMeta: metav1.ObjectMeta{Name: "smig-s1", Namespace: ns},
			Spec: replv1.ReplicationDestinationSpec{
				MigrationID: id, TLSSecretName: "smig-s1-tls", EndpointType: replv1.EndpointNodePort, Standby: true,
				ExactPoints: true, PerFileAfter: &metav1.Duration{Duration: 2 * time.Minute},
				Volumes: []replv1.DestinationVolume{{PVCName: "data", Capacity: resource.MustParse("1Gi"),
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: ptr.To("fast")}},
			},
		}
		Expect(k8s.Create(ctx, rd)).To(Succeed())
		tlsSecret(ctx, ns, "smig-s1-tls")
		Eventually(func() []corev1.Pod { return moverPods(ctx, ns, id, moverpod.RoleReceiver) }).Should(HaveLen(1))
		recv := moverpod.PodName(id, moverpod.RoleReceiver, "data")
		var pod corev1.Pod
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: recv}, &pod)).To(Succeed())
		Expect(pod.Spec.Containers[0].Args).To(ContainElements("--points", "--exact-points"))
		Expect(strings.Join(pod.Spec.Containers[0].Args, " ")).To(ContainSubstring("--per-file-after 2m0s"))

		By("reporting the point the receiver's progress names")
		setPodStatus(ctx, ns, recv, running("10.0.0.9"))
		logs.set(ns, recv, `{"role":"receiver","phase":"Receiving","time":"2026-12-07T10:00:01Z","bytesCopied":10,"passes":3,`+
			`"point":{"time":"2026-12-07T10:00:00Z","digest":"abcd","exact":true},"verified":false}`)
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rd), rd)).To(Succeed())
			g.Expect(rd.Status.Volumes).To(HaveLen(1))
			p := rd.Status.Volumes[0].Point
			g.Expect(p).NotTo(BeNil())
			g.Expect(p.Digest).To(Equal("abcd"))
			g.Expect(p.Exact).To(BeTrue(), "the receiver said its point is an instant of the source")
			g.Expect(p.Time.UTC().Format(time.RFC3339)).To(Equal("2026-12-07T10:00:00Z"))
		}).Should(Succeed())

		By("restarting the receiver when the points asked for change")
		oldUID := pod.UID
		patchSpec(ctx, rd, func() { rd.Spec.ExactPoints, rd.Spec.PerFileAfter = false, nil })
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: recv}, &pod)).To(Succeed())
			g.Expect(pod.UID).NotTo(Equal(oldUID))
			g.Expect(pod.Spec.Containers[0].Args).To(ContainElement("--points"))
			g.Expect(pod.Spec.Containers[0].Args).NotTo(ContainElement("--exact-points"))
		}).Should(Succeed())
		Consistently(func() types.UID {
			Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: recv}, &pod)).To(Succeed())
			return pod.UID
		}, time.Second).Should(Equal(pod.UID), "restarted once, not again")
		setPodStatus(ctx, ns, recv, running("10.0.0.9"))

		By("refusing to turn a standby into a plain destination")
		err := refusedUpdate(ctx, rd, func() { rd.Spec.Standby = false })
		Expect(err.Error()).To(ContainSubstring("standby is immutable"))

		By("promoting: the receiver goes, a promote pod rolls the volume back to its point and checks it; its digest is the volume's")
		patchSpec(ctx, rd, func() { rd.Spec.Promote = true })
		Eventually(func() []corev1.Pod { return moverPods(ctx, ns, id, moverpod.RoleReceiver) }).Should(BeEmpty())
		prom := moverpod.PodName(id, moverpod.RolePromote, "data")
		Eventually(func() error { return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: prom}, &pod) }).Should(Succeed())
		c := pod.Spec.Containers[0]
		Expect(c.Args).To(Equal([]string{"mover", "promote", "--dir", "/data"}))
		Expect(pod.Spec.RestartPolicy).To(Equal(corev1.RestartPolicyNever), "a refused volume would be refused again")
		Expect(c.VolumeMounts).To(ContainElement(And(HaveField("MountPath", "/data"), HaveField("ReadOnly", false))))
		Expect(c.SecurityContext.Capabilities.Add).To(ContainElement(corev1.Capability("CHOWN")), "the rollback restores owners")
		setPodStatus(ctx, ns, prom, succeeded(`{"role":"promote","phase":"Completed","time":"2026-12-07T10:05:00Z","digest":"abcd",`+
			`"verified":true,"point":{"time":"2026-12-07T10:00:00Z","digest":"abcd"}}`))
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rd), rd)).To(Succeed())
			g.Expect(rd.Status.Phase).To(Equal(replv1.DestinationVerified))
			g.Expect(rd.Status.Volumes[0].Digest).To(Equal("abcd"))
			g.Expect(rd.Status.Digest).To(Equal("abcd"), "one volume: its digest")
		}).Should(Succeed())

		By("refusing to withdraw a promotion")
		err = refusedUpdate(ctx, rd, func() { rd.Spec.Promote = false })
		Expect(err.Error()).To(ContainSubstring("promote cannot be withdrawn"))
		Expect(k8s.Delete(ctx, rd)).To(Succeed())
	})

	It("reports a promotion the volume refuses, and refuses promote without standby", func() {
		ctx := context.Background()
		const ns, id = "dst-promote-refused", "s2"
		appNamespace(ctx, ns)
		plain := &replv1.ReplicationDestination{
			ObjectMeta: metav1.ObjectMeta{Name: "smig-plain", Namespace: ns},
			Spec: replv1.ReplicationDestinationSpec{MigrationID: "p1", TLSSecretName: "smig-p1-tls", Promote: true,
				Volumes: []replv1.DestinationVolume{{PVCName: "other", Capacity: resource.MustParse("1Gi"),
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}}}},
		}
		err := k8s.Create(ctx, plain)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("promote needs standby"))

		rd := &replv1.ReplicationDestination{
			ObjectMeta: metav1.ObjectMeta{Name: "smig-s2", Namespace: ns},
			Spec: replv1.ReplicationDestinationSpec{
				MigrationID: id, TLSSecretName: "smig-s2-tls", Standby: true, Promote: true,
				Volumes: []replv1.DestinationVolume{{PVCName: "data", Capacity: resource.MustParse("1Gi"),
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: ptr.To("fast")}},
			},
		}
		Expect(k8s.Create(ctx, rd)).To(Succeed())
		tlsSecret(ctx, ns, "smig-s2-tls")
		prom := moverpod.PodName(id, moverpod.RolePromote, "data")
		var pod corev1.Pod
		Eventually(func() error { return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: prom}, &pod) }).Should(Succeed())
		Expect(moverPods(ctx, ns, id, moverpod.RoleReceiver)).To(BeEmpty(), "a promoted standby starts no receiver")
		setPodStatus(ctx, ns, prom, failed("error: /data differs from its point of 2026-12-07T10:00:00Z (digest 01, the point's 02): refusing to promote it"))
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rd), rd)).To(Succeed())
			g.Expect(rd.Status.Phase).To(Equal(replv1.DestinationFailed))
			g.Expect(rd.Status.LastError).To(ContainSubstring("refusing to promote it"))
		}).Should(Succeed())
		Expect(k8s.Delete(ctx, rd)).To(Succeed())
	})
})
