package migration_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"

	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/hub"
	"github.com/stateful-migration/stateful-migration/pkg/hub/migration"
	"github.com/stateful-migration/stateful-migration/pkg/hub/placement"
	"github.com/stateful-migration/stateful-migration/test/integration/framework"
)

const (
	timeout    = 30 * time.Second
	interval   = 20 * time.Millisecond
	clusterSet = "global"
	// outsider is a managed cluster in no ManagedClusterSet.
	outsider = "outsider"
)

var (
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8s       client.WithWatch
	addons    addonclient.Interface
	cancel    context.CancelFunc
	suiteCtx  context.Context
	stopMgr   context.CancelFunc
	mgrDone   chan struct{}
	clusters  = map[string]string{"cluster1": "a", "cluster2": "b", "cluster3": "c", "cluster4": "d"}
	testScema = scheme()
)

func TestMigration(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Migration sequencing")
}

func scheme() *k8sruntime.Scheme {
	s := framework.Scheme()
	utilruntime.Must(hub.AddToScheme(s))
	return s
}

// ocmCRDs are the work and addon APIs the sequencing controller uses.
func ocmCRDs() []string {
	dir, err := framework.ModuleDir("open-cluster-management.io/api")
	Expect(err).NotTo(HaveOccurred())
	return []string{
		filepath.Join(dir, "work/v1/0000_00_work.open-cluster-management.io_manifestworks.crd.yaml"),
		filepath.Join(dir, "work/v1alpha1/0000_00_work.open-cluster-management.io_manifestworkreplicasets.crd.yaml"),
		filepath.Join(dir, "addon/v1beta1/0000_01_addon.open-cluster-management.io_managedclusteraddons.crd.yaml"),
	}
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(klog.NewKlogr())
	var err error
	testEnv, err = framework.NewEnv(ocmCRDs()...)
	Expect(err).NotTo(HaveOccurred())
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: testScema})
	Expect(err).NotTo(HaveOccurred())
	addons, err = addonclient.NewForConfig(cfg)
	Expect(err).NotTo(HaveOccurred())

	suiteCtx, cancel = context.WithCancel(context.Background())
	framework.StartScheduler(suiteCtx, cfg)
	startManager()

	Expect(k8s.Create(suiteCtx, &clusterv1beta2.ManagedClusterSet{
		ObjectMeta: metav1.ObjectMeta{Name: clusterSet},
		// Every cluster with an env label: "outsider" (none) is in no set.
		Spec: clusterv1beta2.ManagedClusterSetSpec{ClusterSelector: clusterv1beta2.ManagedClusterSelector{
			SelectorType: clusterv1beta2.LabelSelector, LabelSelector: &metav1.LabelSelector{
				MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpExists}},
			},
		}},
	})).To(Succeed())
	Expect(k8s.Create(suiteCtx, &clusterv1.ManagedCluster{
		ObjectMeta: metav1.ObjectMeta{Name: outsider},
		Spec:       clusterv1.ManagedClusterSpec{HubAcceptsClient: true},
	})).To(Succeed())
	Expect(k8s.Create(suiteCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: outsider}})).To(Succeed())
	Expect(framework.ApplyFile(suiteCtx, k8s, filepath.Join(framework.RepoRoot(), "manifests", "admissionpolicy.yaml"))).To(Succeed())
	for name, env := range clusters {
		Expect(k8s.Create(suiteCtx, &clusterv1.ManagedCluster{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"env": env}},
			Spec:       clusterv1.ManagedClusterSpec{HubAcceptsClient: true},
		})).To(Succeed())
		Expect(k8s.Create(suiteCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
		mca := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Name: uplink.AddonName, Namespace: name}}
		Expect(k8s.Create(suiteCtx, mca)).To(Succeed())
	}
})

var _ = AfterSuite(func() {
	stopManager()
	if cancel != nil {
		cancel()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// startManager runs the hub controllers (placement + sequencing) in-process.
func startManager() {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:     scheme(),
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	Expect((&placement.Reconciler{StandbyRenewAfter: standbyRenewal}).SetupWithManager(mgr)).To(Succeed())
	Expect((&migration.Reconciler{RetryBackoff: 300 * time.Millisecond, MaxRetryBackoff: time.Second}).SetupWithManager(mgr)).To(Succeed())
	var ctx context.Context
	ctx, stopMgr = context.WithCancel(suiteCtx)
	mgrDone = make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(mgrDone)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
}

// stopManager stops the hub controllers and waits until they are gone.
func stopManager() {
	if stopMgr == nil {
		return
	}
	stopMgr()
	Eventually(mgrDone, timeout).Should(BeClosed())
	stopMgr = nil
}
