// Package addon tests the hub addon manager and the agent together on a real
// kube-apiserver and etcd (envtest). The same API server plays hub and spoke.
package addon

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	clusterclient "open-cluster-management.io/api/client/cluster/clientset/versioned"
	workclient "open-cluster-management.io/api/client/work/clientset/versioned"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stateful-migration/stateful-migration/pkg/addon/manager"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/test/integration/framework"
)

const testImage = "registry.example/stateful-migration:test"

var (
	testEnv       *envtest.Environment
	cfg           *rest.Config
	kubeClient    kubernetes.Interface
	addonClient   addonclient.Interface
	workClient    workclient.Interface
	clusterClient clusterclient.Interface
	suiteCtx      context.Context
	stopSuite     context.CancelFunc
)

func TestAddon(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "Addon integration suite")
}

var _ = BeforeSuite(func() {
	crds, err := framework.ClusterCRDs()
	Expect(err).NotTo(HaveOccurred())
	addonCRDs, err := framework.AddonCRDs()
	Expect(err).NotTo(HaveOccurred())
	testEnv = &envtest.Environment{ErrorIfCRDPathMissing: true, CRDDirectoryPaths: append(crds, addonCRDs...)}
	ctrl.SetLogger(klog.NewKlogr())
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	Expect(framework.StoreAddonsAsV1beta1(context.Background(), cfg)).To(Succeed())

	kubeClient = kubernetes.NewForConfigOrDie(cfg)
	addonClient = addonclient.NewForConfigOrDie(cfg)
	workClient = workclient.NewForConfigOrDie(cfg)
	clusterClient = clusterclient.NewForConfigOrDie(cfg)

	suiteCtx, stopSuite = context.WithCancel(context.Background())

	By("installing the hub side exactly as `make deploy` does")
	installHub()

	By("running the addon manager as its own ServiceAccount, with only the shipped RBAC")
	managerCfg := impersonate(framework.ManagerIdentity)
	mgr, err := ctrl.NewManager(managerCfg, ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(manager.AddAddonManager(mgr, managerCfg, testImage)).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(suiteCtx)).To(Succeed())
	}()
})

// installHub applies manifests/ as `make deploy` does.
func installHub() {
	Expect(framework.InstallHub(cfg, GinkgoT().TempDir())).To(Succeed())
	_, err := addonClient.AddonV1beta1().ClusterManagementAddOns().Get(suiteCtx, uplink.AddonName, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
}

var _ = AfterSuite(func() {
	if stopSuite != nil {
		stopSuite()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})
