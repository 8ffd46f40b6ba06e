package e2e

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

// What the addon manager installs narrows the agent where RBAC is too
// coarse: OCM's work agent applies the PV admission policy, and the managed
// cluster's API server enforces it on the agent's own identity.
var _ = Describe("The agent's rights on a managed cluster", func() {
	It("may change a PersistentVolume's reclaim policy but nothing else, and read no Secret", func(ctx context.Context) {
		for _, c := range []*cluster{cluster1, cluster2} {
			By("the PV admission policy is applied on " + c.name)
			Eventually(func() error {
				_, err := c.kube.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Get(ctx, "stateful-migration-agent-persistentvolumes", metav1.GetOptions{})
				return err
			}, 2*time.Minute, 2*time.Second).Should(Succeed())
			_, err := c.kube.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "stateful-migration-agent-persistentvolumes", metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())

			pv, err := c.kube.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{
				ObjectMeta: metav1.ObjectMeta{Name: "e2e-rights-probe", Labels: map[string]string{"team": "b"}},
				Spec: corev1.PersistentVolumeSpec{
					Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")},
					AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
					PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp/e2e-rights-probe"}},
				},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func(ctx context.Context) {
				c.kube.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
			})

			cfg := rest.CopyConfig(c.cfg)
			cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + uplink.DefaultAgentNamespace + ":" + replv1.AgentServiceAccount,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + uplink.DefaultAgentNamespace, "system:authenticated"}}
			agent := kubernetes.NewForConfigOrDie(cfg)
			patch := func(body string) error {
				_, err := agent.CoreV1().PersistentVolumes().Patch(ctx, pv.Name, types.MergePatchType, []byte(body), metav1.PatchOptions{})
				return err
			}
			By("the agent's own change is admitted; a label change is refused by the policy")
			Expect(patch(`{"spec":{"persistentVolumeReclaimPolicy":"Delete"}}`)).To(Succeed())
			Eventually(func() error { return patch(`{"metadata":{"labels":{"team":"a"}}}`) }, time.Minute, time.Second).
				Should(MatchError(ContainSubstring("may not change a PersistentVolume's labels")))
			Expect(patch(`{"spec":{"claimRef":{"namespace":"default","name":"x"}}}`)).To(MatchError(ContainSubstring("only spec.persistentVolumeReclaimPolicy")))

			By("the agent reads no Secret outside a migration's by-name Role")
			_, err = agent.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-abcdef", metav1.GetOptions{})
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "get secret: %v", err)
			_, err = agent.CoreV1().Secrets(uplink.DefaultAgentNamespace).List(ctx, metav1.ListOptions{})
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "list secrets: %v", err)
		}
	})
})
