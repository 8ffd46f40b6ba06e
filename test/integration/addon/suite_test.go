// Package addon tests the hub addon manager and the agent together on a real
// kube-apiserver and etcd (envtest). The same API server plays hub and spoke.
package addon

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
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
	apiDir := moduleDir("open-cluster-management.io/api")
	testEnv = &envtest.Environment{
		ErrorIfCRDPathMissing: true,
		CRDDirectoryPaths: []string{
			filepath.Join(apiDir, "cluster/v1/0000_00_clusters.open-cluster-management.io_managedclusters.crd.yaml"),
			filepath.Join(apiDir, "work/v1/0000_00_work.open-cluster-management.io_manifestworks.crd.yaml"),
			filepath.Join(apiDir, "addon/v1beta1/0000_00_addon.open-cluster-management.io_clustermanagementaddons.crd.yaml"),
			filepath.Join(apiDir, "addon/v1beta1/0000_01_addon.open-cluster-management.io_managedclusteraddons.crd.yaml"),
			filepath.Join(apiDir, "addon/v1beta1/0000_02_addon.open-cluster-management.io_addondeploymentconfigs.crd.yaml"),
		},
	}
	ctrl.SetLogger(klog.NewKlogr())
	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	storeAddonsAsV1beta1(cfg)

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

func moduleDir(module string) string {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	Expect(err).NotTo(HaveOccurred(), "locating module %s", module)
	return strings.TrimSpace(string(out))
}

// storeAddonsAsV1beta1 does what OCM's conversion webhook makes possible on a
// real hub: serve the v1beta1 addon API that addon-framework speaks.
func storeAddonsAsV1beta1(cfg *rest.Config) {
	client := apiextensionsclient.NewForConfigOrDie(cfg)
	ctx := context.Background()
	for _, name := range []string{
		"managedclusteraddons.addon.open-cluster-management.io",
		"clustermanagementaddons.addon.open-cluster-management.io",
	} {
		crd, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		for i, v := range crd.Spec.Versions {
			crd.Spec.Versions[i].Storage = v.Name == "v1beta1"
		}
		crd, err = client.ApiextensionsV1().CustomResourceDefinitions().Update(ctx, crd, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		crd.Status.StoredVersions = []string{"v1beta1"}
		_, err = client.ApiextensionsV1().CustomResourceDefinitions().UpdateStatus(ctx, crd, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
	}
}
