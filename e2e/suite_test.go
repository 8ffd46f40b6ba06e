// Package e2e runs stateful-migration on real kind clusters with real OCM:
// `make test-e2e` brings up hub, cluster1 and cluster2 (hack/e2e/fleet.sh) and
// runs this suite against them.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterv1 "open-cluster-management.io/api/cluster/v1"

	"github.com/stateful-migration/stateful-migration/test/integration/framework"
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "stateful-migration e2e (kind + OCM)")
}

// cluster is one kind cluster of the fleet.
type cluster struct {
	name string
	cfg  *rest.Config
	kube kubernetes.Interface
	c    client.Client
}

var (
	hub, cluster1, cluster2 *cluster
	writerImage             string
	postgresImage           string
)

func connect(name, env string) *cluster {
	path := os.Getenv(env)
	Expect(path).NotTo(BeEmpty(), "%s is not set: run `make test-e2e` (it brings up the fleet and sets it)", env)
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	Expect(err).NotTo(HaveOccurred(), "kubeconfig %s of %s", path, name)
	cfg.QPS, cfg.Burst = 50, 100
	c, err := client.New(cfg, client.Options{Scheme: framework.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	return &cluster{name: name, cfg: cfg, kube: kubernetes.NewForConfigOrDie(cfg), c: c}
}

var _ = BeforeSuite(func(ctx context.Context) {
	hub = connect("hub", "E2E_KUBECONFIG_HUB")
	cluster1 = connect("cluster1", "E2E_KUBECONFIG_CLUSTER1")
	cluster2 = connect("cluster2", "E2E_KUBECONFIG_CLUSTER2")
	writerImage = os.Getenv("E2E_WRITER_IMAGE")
	Expect(writerImage).NotTo(BeEmpty(), "E2E_WRITER_IMAGE is not set")
	postgresImage = os.Getenv("E2E_POSTGRES_IMAGE")
	Expect(postgresImage).NotTo(BeEmpty(), "E2E_POSTGRES_IMAGE is not set")

	By("checking both clusters are joined and the addon is available on them")
	for _, c := range []*cluster{cluster1, cluster2} {
		Eventually(func(g Gomega) {
			mc := &clusterv1.ManagedCluster{}
			g.Expect(hub.c.Get(ctx, client.ObjectKey{Name: c.name}, mc)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(mc.Status.Conditions, clusterv1.ManagedClusterConditionAvailable)).To(BeTrue(), "ManagedCluster %s not Available", c.name)
			// The Placement in testdata selects clusters by this label.
			if mc.Labels[nameLabel] != c.name {
				patch := []byte(fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, nameLabel, c.name))
				g.Expect(hub.c.Patch(ctx, mc, client.RawPatch("application/merge-patch+json", patch))).To(Succeed())
			}
			g.Expect(addonAvailable(ctx, c.name)).To(Succeed())
		}, 3*time.Minute, 2*time.Second).Should(Succeed())
	}
}, NodeTimeout(5*time.Minute))

const nameLabel = "e2e.stateful-migration.io/name"
