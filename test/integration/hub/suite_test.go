package hub_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	clusterv1 "open-cluster-management.io/api/cluster/v1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"

	"github.com/stateful-migration/stateful-migration/pkg/hub"
	"github.com/stateful-migration/stateful-migration/test/integration/framework"
)

const (
	timeout  = 30 * time.Second
	interval = 100 * time.Millisecond
	// clusterSet selects every ManagedCluster; each test namespace binds it.
	clusterSet = "global"
)

var (
	testEnv *envtest.Environment
	cfg     *rest.Config
	k8s     client.Client
	cancel  context.CancelFunc
)

func TestHub(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Hub controllers")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(klog.NewKlogr())
	var err error
	mwrs, err := framework.ManifestWorkReplicaSetCRD()
	Expect(err).NotTo(HaveOccurred())
	testEnv, err = framework.NewEnv(mwrs)
	Expect(err).NotTo(HaveOccurred())
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())

	k8s, err = client.New(cfg, client.Options{Scheme: framework.Scheme()})
	Expect(err).NotTo(HaveOccurred())

	var ctx context.Context
	ctx, cancel = context.WithCancel(context.Background())
	framework.StartScheduler(ctx, cfg)

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  framework.Scheme(),
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(hub.SetupPlacement(mgr, hub.Options{})).To(Succeed()) // this suite plays the sequencing controller
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()

	By("creating four clusters, labelled env=a, b, c, d, and a clusterset holding all")
	Expect(k8s.Create(ctx, &clusterv1beta2.ManagedClusterSet{
		ObjectMeta: metav1.ObjectMeta{Name: clusterSet},
		Spec: clusterv1beta2.ManagedClusterSetSpec{ClusterSelector: clusterv1beta2.ManagedClusterSelector{
			SelectorType: clusterv1beta2.LabelSelector, LabelSelector: &metav1.LabelSelector{},
		}},
	})).To(Succeed())
	for name, env := range map[string]string{"cluster1": "a", "cluster2": "b", "cluster3": "c", "cluster4": "d"} {
		Expect(k8s.Create(ctx, &clusterv1.ManagedCluster{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"env": env}},
			Spec:       clusterv1.ManagedClusterSpec{HubAcceptsClient: true},
		})).To(Succeed())
	}
})

var _ = AfterSuite(func() {
	if cancel != nil {
		cancel()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// newNamespace creates a namespace bound to the global clusterset.
func newNamespace(prefix string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	Expect(k8s.Create(context.Background(), ns)).To(Succeed())
	Expect(k8s.Create(context.Background(), &clusterv1beta2.ManagedClusterSetBinding{
		ObjectMeta: metav1.ObjectMeta{Name: clusterSet, Namespace: ns.Name},
		Spec:       clusterv1beta2.ManagedClusterSetBindingSpec{ClusterSet: clusterSet},
	})).To(Succeed())
	// The app of the suite's policies delivers into namespace "app".
	Expect(k8s.Create(context.Background(), framework.AppDelivery(ns.Name, "app", []string{"app", "late"}, "app"))).To(Succeed())
	return ns.Name
}
