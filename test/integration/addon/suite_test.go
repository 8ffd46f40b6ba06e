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
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	clusterclient "open-cluster-management.io/api/client/cluster/clientset/versioned"
	workclient "open-cluster-management.io/api/client/work/clientset/versioned"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stateful-migration/stateful-migration/pkg/addon/manager"
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
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(manager.AddAddonManager(mgr, cfg, testImage)).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(suiteCtx)).To(Succeed())
	}()

	_, err = addonClient.AddonV1beta1().ClusterManagementAddOns().Create(suiteCtx, &addonv1beta1.ClusterManagementAddOn{
		ObjectMeta: metav1.ObjectMeta{Name: manager.AddonName},
		Spec: addonv1beta1.ClusterManagementAddOnSpec{
			InstallStrategy: addonv1beta1.InstallStrategy{Type: addonv1beta1.AddonInstallStrategyManual},
		},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if stopSuite != nil {
		stopSuite()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})
