package addon

import (
	"context"
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	workclient "open-cluster-management.io/api/client/work/clientset/versioned"

	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

func deploymentOf(objs []runtime.Object) *appsv1.Deployment {
	for _, o := range objs {
		if d, ok := o.(*appsv1.Deployment); ok {
			return d
		}
	}
	return nil
}

var _ = Describe("Hub addon manager", func() {
	ctx := context.Background()

	It("renders the agent ManifestWork and grants the agent only its own addon on the hub", func() {
		enableAddon(ctx, "cluster1")

		By("rendering every agent object into the cluster's ManifestWork")
		var objs []runtime.Object
		Eventually(func() error {
			var err error
			objs, err = agentManifests(ctx, "cluster1")
			return err
		}).Should(Succeed())
		kinds := map[string]int{}
		for _, o := range objs {
			kinds[o.GetObjectKind().GroupVersionKind().Kind]++
		}
		Expect(kinds).To(Equal(map[string]int{"ServiceAccount": 1, "Role": 1, "RoleBinding": 1, "Deployment": 1,
			// the agent's standing ClusterRole and binding, the replicator ClusterRole the hub binds per app
			// namespace, the work agent's rights on replication objects (aggregated)
			"ClusterRole": 3, "ClusterRoleBinding": 1,
			// ReplicationSource, ReplicationDestination
			"CustomResourceDefinition": 2,
			// the agent may change only the reclaim policy and our annotation on a PV
			"ValidatingAdmissionPolicy": 1, "ValidatingAdmissionPolicyBinding": 1}))
		d := deploymentOf(objs)
		Expect(d.Namespace).To(Equal(uplink.DefaultAgentNamespace))
		Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal(testImage))
		Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--cluster-name=cluster1"))

		By("registering a hub identity for the agent")
		agent := impersonateEventually(ctx, "cluster1")
		agentAddons := addonclient.NewForConfigOrDie(agent).AddonV1beta1().ManagedClusterAddOns("cluster1")

		By("letting that identity patch its own ManagedClusterAddOn status")
		patch := []byte(`{"status":{"conditions":[{"type":"Probe","status":"True","reason":"Probe","message":"m","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`)
		Eventually(func() error {
			_, err := agentAddons.Patch(ctx, uplink.AddonName, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
			return err
		}).Should(Succeed())

		By("letting it keep its fallback lease in its cluster namespace, and no other lease")
		leases := kubernetes.NewForConfigOrDie(agent).CoordinationV1().Leases("cluster1")
		Eventually(func() error {
			_, err := leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: uplink.AddonName}}, metav1.CreateOptions{})
			return err
		}).Should(Succeed())
		own, err := leases.Get(ctx, uplink.AddonName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = leases.Update(ctx, own, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = leases.Get(ctx, "someone-else", metav1.GetOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "read another lease: %v", err)

		By("refusing everything else")
		Expect(apierrors.IsForbidden(agentAddons.Delete(ctx, uplink.AddonName, metav1.DeleteOptions{}))).To(BeTrue(), "delete own addon")
		_, err = agentAddons.Patch(ctx, uplink.AddonName, types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "patch own addon spec: %v", err)
		_, err = addonclient.NewForConfigOrDie(agent).AddonV1beta1().ManagedClusterAddOns("default").List(ctx, metav1.ListOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "list addons of another namespace: %v", err)
		_, err = workclient.NewForConfigOrDie(agent).WorkV1().ManifestWorks("cluster1").List(ctx, metav1.ListOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "read ManifestWorks: %v", err)
		_, err = kubernetes.NewForConfigOrDie(agent).CoreV1().Secrets("cluster1").List(ctx, metav1.ListOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "read secrets: %v", err)
	})

	It("honours an AddOnDeploymentConfig and reports one that is missing", func() {
		enableAddon(ctx, "cluster2")
		Eventually(func() error { _, err := agentManifests(ctx, "cluster2"); return err }).Should(Succeed())

		By("referencing a config that does not exist")
		setDeploymentConfig(ctx, "cluster2", "absent")
		Eventually(func() string {
			addon, err := addonClient.AddonV1beta1().ManagedClusterAddOns("cluster2").Get(ctx, uplink.AddonName, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			if c := meta.FindStatusCondition(addon.Status.Conditions, addonv1beta1.ManagedClusterAddOnManifestApplied); c != nil && c.Status == metav1.ConditionFalse {
				return c.Message
			}
			return ""
		}).Should(ContainSubstring("AddOnDeploymentConfig cluster2/absent referenced by this addon does not exist"))

		By("creating it: the agent is re-rendered with its values")
		_, err := addonClient.AddonV1beta1().AddOnDeploymentConfigs("cluster2").Create(ctx, &addonv1beta1.AddOnDeploymentConfig{
			ObjectMeta: metav1.ObjectMeta{Name: "absent", Namespace: "cluster2"},
			Spec: addonv1beta1.AddOnDeploymentConfigSpec{
				AgentInstallNamespace: "custom-agent-ns",
				NodePlacement:         &addonv1beta1.NodePlacement{NodeSelector: map[string]string{"disk": "ssd"}},
				Registries:            []addonv1beta1.ImageMirror{{Source: "registry.example", Mirror: "mirror.local"}},
			},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			objs, err := agentManifests(ctx, "cluster2")
			g.Expect(err).NotTo(HaveOccurred())
			d := deploymentOf(objs)
			g.Expect(d.Namespace).To(Equal("custom-agent-ns"))
			g.Expect(d.Spec.Template.Spec.NodeSelector).To(Equal(map[string]string{"disk": "ssd"}))
			g.Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal("mirror.local/stateful-migration:test"))
		}).Should(Succeed())
	})
})

func impersonateEventually(ctx context.Context, cluster string) *rest.Config {
	var cfg *rest.Config
	Eventually(func() error {
		as, err := agentHubSubject(ctx, cluster)
		if err != nil {
			return err
		}
		cfg = impersonate(as)
		return nil
	}, 30*time.Second).Should(Succeed())
	return cfg
}

// setDeploymentConfig does what a user does (spec.configs) and records the
// reference in the status as OCM's addon manager does from that spec.
func setDeploymentConfig(ctx context.Context, cluster, name string) {
	// A merge patch: the addon manager writes the same object meanwhile, and
	// a read-modify-update raced it (409 Conflict).
	configs, err := json.Marshal(map[string]any{"spec": map[string]any{"configs": []addonv1beta1.AddOnConfig{{
		ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: "addon.open-cluster-management.io", Resource: "addondeploymentconfigs"},
		ConfigReferent:      addonv1beta1.ConfigReferent{Namespace: cluster, Name: name},
	}}}})
	Expect(err).NotTo(HaveOccurred())
	_, err = addonClient.AddonV1beta1().ManagedClusterAddOns(cluster).Patch(ctx, uplink.AddonName, types.MergePatchType, configs, metav1.PatchOptions{})
	Expect(err).NotTo(HaveOccurred())
	ref := []addonv1beta1.ConfigReference{{
		ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: "addon.open-cluster-management.io", Resource: "addondeploymentconfigs"},
		DesiredConfig:       &addonv1beta1.ConfigSpecHash{ConfigReferent: addonv1beta1.ConfigReferent{Namespace: cluster, Name: name}},
	}}
	raw, err := json.Marshal(map[string]any{"status": map[string]any{"configReferences": ref}})
	Expect(err).NotTo(HaveOccurred())
	_, err = addonClient.AddonV1beta1().ManagedClusterAddOns(cluster).Patch(ctx, uplink.AddonName, types.MergePatchType, raw, metav1.PatchOptions{}, "status")
	Expect(err).NotTo(HaveOccurred())
}
