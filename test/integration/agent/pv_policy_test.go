package agent

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// RBAC cannot scope the agent's cluster-wide `patch persistentvolumes` to
// fields; the admission policy rendered beside it does. Each refused change
// is one a compromised agent could use against a PV it does not migrate.
var _ = Describe("Agent rights on PersistentVolumes", func() {
	It("lets the agent change only the reclaim policy and its own annotation", func() {
		ctx := context.Background()
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: "pv-policy", Labels: map[string]string{"team": "b"},
				Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": "csi.example.com"}},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
				PersistentVolumeSource:        corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "csi.example.com", VolumeHandle: "h"}},
			},
		}
		Expect(k8s.Create(ctx, pv)).To(Succeed())
		asAgent, err := client.New(agentCfg, client.Options{Scheme: k8s.Scheme()})
		Expect(err).NotTo(HaveOccurred())

		patch := func(c client.Client, body string) error {
			return c.Patch(ctx, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: pv.Name}},
				client.RawPatch(types.MergePatchType, []byte(body)))
		}
		refused := func(body, why string) {
			GinkgoHelper()
			err := patch(asAgent, body)
			Expect(apierrors.IsInvalid(err) || apierrors.IsForbidden(err)).To(BeTrue(), "patch %s: %v", body, err)
			Expect(err.Error()).To(ContainSubstring(why))
		}

		By("the agent's own change: Retain, remembering the original policy")
		Expect(patch(asAgent, `{"metadata":{"annotations":{"`+replv1.OriginalReclaimPolicyAnnotation+`":"Delete"}},"spec":{"persistentVolumeReclaimPolicy":"Retain"}}`)).To(Succeed())

		By("anything else on the PV is refused")
		// The API server loads a new policy within a second or so.
		Eventually(func() error { return patch(asAgent, `{"spec":{"claimRef":{"namespace":"team-b","name":"data"}}}`) }).Should(MatchError(ContainSubstring("only spec.persistentVolumeReclaimPolicy")))
		refused(`{"spec":{"claimRef":{"namespace":"team-b","name":"data"}}}`, "only spec.persistentVolumeReclaimPolicy")
		refused(`{"spec":{"capacity":{"storage":"2Gi"}}}`, "only spec.persistentVolumeReclaimPolicy")
		refused(`{"spec":{"storageClassName":"other"}}`, "only spec.persistentVolumeReclaimPolicy")
		refused(`{"spec":{"mountOptions":["ro"]}}`, "only spec.persistentVolumeReclaimPolicy")
		refused(`{"metadata":{"annotations":{"pv.kubernetes.io/provisioned-by":"other"}}}`, "only its annotation")
		refused(`{"metadata":{"annotations":{"pv.kubernetes.io/provisioned-by":null}}}`, "only its annotation")
		refused(`{"metadata":{"labels":{"team":"a"}}}`, "labels, finalizers or owners")
		refused(`{"metadata":{"finalizers":["example.com/hold"]}}`, "labels, finalizers or owners")
		Expect(apierrors.IsForbidden(asAgent.Delete(ctx, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: pv.Name}}))).To(BeTrue(), "RBAC grants no delete")

		By("restoring the original policy and dropping the annotation is the agent's too")
		Expect(patch(asAgent, `{"metadata":{"annotations":{"`+replv1.OriginalReclaimPolicyAnnotation+`":null}},"spec":{"persistentVolumeReclaimPolicy":"Delete"}}`)).To(Succeed())

		By("the policy binds the agent only: an administrator still edits labels")
		Expect(patch(k8s, `{"metadata":{"labels":{"team":"a"}}}`)).To(Succeed())

		got := getPV(ctx, pv.Name)
		Expect(got.Spec.PersistentVolumeReclaimPolicy).To(Equal(corev1.PersistentVolumeReclaimDelete))
		Expect(got.Spec.ClaimRef).To(BeNil())
		Expect(got.Spec.CSI.VolumeHandle).To(Equal("h"))
		Expect(got.Spec.Capacity.Storage().String()).To(Equal("1Gi"))
		Expect(got.Annotations).To(Equal(map[string]string{"pv.kubernetes.io/provisioned-by": "csi.example.com"}))
		Expect(got.Finalizers).To(Equal(pv.Finalizers))
		Expect(k8s.Delete(ctx, got)).To(Succeed())
	})
})
