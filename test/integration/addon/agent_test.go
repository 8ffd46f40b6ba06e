package addon

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"

	"github.com/stateful-migration/stateful-migration/pkg/addon/agent"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

var _ = Describe("Agent", func() {
	It("waits for its hub kubeconfig, then keeps its lease and reports without touching others' conditions", func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		enableAddon(ctx, "cluster3")

		By("running with exactly the rights the rendered manifests grant")
		var objs []runtime.Object
		Eventually(func() error { var err error; objs, err = agentManifests(ctx, "cluster3"); return err }).Should(Succeed())
		spokeIdentity := applyAgentRBAC(ctx, objs)
		hubIdentity := impersonateEventually(ctx, "cluster3").Impersonate
		installNS := deploymentOf(objs).Namespace

		By("a condition owned by someone else is already there")
		setForeignCondition(ctx, "cluster3", "Available", "lease is fresh")

		kubeconfig := filepath.Join(GinkgoT().TempDir(), "hub", "kubeconfig")
		opts := agent.NewOptions()
		opts.HubKubeconfig, opts.ClusterName, opts.AddonNamespace = kubeconfig, "cluster3", installNS
		opts.MetricsAddr, opts.ProbeAddr = "0", "0"
		opts.HubConfigPoll, opts.ReportInterval = 100*time.Millisecond, 200*time.Millisecond
		done := make(chan error, 1)
		go func() { done <- opts.Run(ctx, impersonate(spokeIdentity)) }()

		By("doing nothing until the hub kubeconfig exists")
		Consistently(func() bool {
			_, err := kubeClient.CoordinationV1().Leases(installNS).Get(ctx, uplink.AddonName, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		}, 2*time.Second).Should(BeTrue())
		writeKubeconfig(kubeconfig, hubIdentity)

		By("keeping its lease on the managed cluster")
		Eventually(func(g Gomega) {
			lease, err := kubeClient.CoordinationV1().Leases(installNS).Get(ctx, uplink.AddonName, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(lease.Spec.RenewTime).NotTo(BeNil())
		}).Should(Succeed())

		By("reporting its condition while another writer keeps changing its own")
		stopForeign := make(chan struct{})
		foreignDone := make(chan struct{})
		go func() {
			defer close(foreignDone)
			for i := 0; ; i++ {
				select {
				case <-stopForeign:
					return
				default:
				}
				setForeignCondition(ctx, "cluster3", "Foreign", fmt.Sprintf("write %d", i))
			}
		}()
		time.Sleep(2 * time.Second)
		close(stopForeign)
		<-foreignDone
		Eventually(func(g Gomega) {
			addon, err := addonClient.AddonV1beta1().ManagedClusterAddOns("cluster3").Get(ctx, uplink.AddonName, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			ready := meta.FindStatusCondition(addon.Status.Conditions, agent.ConditionAgentReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(ready.Message).To(ContainSubstring("cluster3"))
			g.Expect(meta.FindStatusCondition(addon.Status.Conditions, "Available")).NotTo(BeNil())
			g.Expect(meta.FindStatusCondition(addon.Status.Conditions, "Foreign")).NotTo(BeNil())
		}).Should(Succeed())

		By("coming back when someone removes it")
		removeCondition(ctx, "cluster3", agent.ConditionAgentReady)
		Eventually(func() *metav1.Condition {
			addon, err := addonClient.AddonV1beta1().ManagedClusterAddOns("cluster3").Get(ctx, uplink.AddonName, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			return meta.FindStatusCondition(addon.Status.Conditions, agent.ConditionAgentReady)
		}).ShouldNot(BeNil())

		cancel()
		Eventually(done).Should(Receive(BeNil()))
	})
})

// setForeignCondition writes a condition the way another controller would:
// a read-modify-write of the whole status guarded by resourceVersion.
func setForeignCondition(ctx context.Context, cluster, condType, message string) {
	Expect(retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		addon, err := addonClient.AddonV1beta1().ManagedClusterAddOns(cluster).Get(ctx, uplink.AddonName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		meta.SetStatusCondition(&addon.Status.Conditions, metav1.Condition{Type: condType, Status: metav1.ConditionTrue, Reason: "Test", Message: message})
		_, err = addonClient.AddonV1beta1().ManagedClusterAddOns(cluster).UpdateStatus(ctx, addon, metav1.UpdateOptions{})
		return err
	})).To(Succeed())
}

func removeCondition(ctx context.Context, cluster, condType string) {
	Expect(retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		addon, err := addonClient.AddonV1beta1().ManagedClusterAddOns(cluster).Get(ctx, uplink.AddonName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		meta.RemoveStatusCondition(&addon.Status.Conditions, condType)
		_, err = addonClient.AddonV1beta1().ManagedClusterAddOns(cluster).UpdateStatus(ctx, addon, metav1.UpdateOptions{})
		return err
	})).To(Succeed())
}
