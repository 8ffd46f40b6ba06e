// Package together runs the hub and the agents together for the first time:
// three envtest API servers (hub, cluster1, cluster2), OCM's placement
// scheduler and our hub controllers on the hub, the real replication
// controllers on each spoke (as the agent's ServiceAccount, with the RBAC
// the addon manager renders), and test stand-ins for what has no API server
// of its own: the OCM work agent, the ManifestWorkReplicaSet controller
// delivering the app, and kubelet + PV controller + mover pods per spoke.
package together

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	addonfake "open-cluster-management.io/api/client/addon/clientset/versioned/fake"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"

	addonagent "github.com/stateful-migration/stateful-migration/pkg/addon/agent"
	"github.com/stateful-migration/stateful-migration/pkg/addon/manager"
	"github.com/stateful-migration/stateful-migration/pkg/agent/replication"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/hub"
	"github.com/stateful-migration/stateful-migration/test/integration/framework"
)

const (
	timeout    = 60 * time.Second
	interval   = 50 * time.Millisecond
	clusterSet = "global"
	moverImage = "registry.example/stateful-migration:test"
)

// spoke is one managed cluster: its API server, an admin client (the work
// agent's and the kubelet's rights) and the running agent.
type spoke struct {
	name    string
	env     *envtest.Environment
	cfg     *rest.Config
	k8s     client.Client
	kube    kubernetes.Interface
	dyn     dynamic.Interface
	agentSA rbacv1.Subject
	hostIP  string
}

var (
	hubEnv   *envtest.Environment
	hubCfg   *rest.Config
	hubK8s   client.WithWatch
	addons   addonclient.Interface
	spokes   = map[string]*spoke{}
	net      = newNetwork()
	suiteCtx context.Context
	cancel   context.CancelFunc
)

func TestTogether(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Hub and agents together")
}

func hubScheme() *k8sruntime.Scheme {
	s := framework.Scheme()
	utilruntime.Must(hub.AddToScheme(s))
	return s
}

func spokeScheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(replv1.AddToScheme(s))
	return s
}

func hubCRDs() []string {
	dir, err := framework.ModuleDir("open-cluster-management.io/api")
	Expect(err).NotTo(HaveOccurred())
	return []string{
		filepath.Join(dir, "work/v1/0000_00_work.open-cluster-management.io_manifestworks.crd.yaml"),
		filepath.Join(dir, "work/v1alpha1/0000_00_work.open-cluster-management.io_manifestworkreplicasets.crd.yaml"),
		filepath.Join(dir, "addon/v1beta1/0000_00_addon.open-cluster-management.io_clustermanagementaddons.crd.yaml"),
		filepath.Join(dir, "addon/v1beta1/0000_01_addon.open-cluster-management.io_managedclusteraddons.crd.yaml"),
	}
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(klog.NewKlogr())
	suiteCtx, cancel = context.WithCancel(context.Background())
	var err error

	By("starting the hub: OCM cluster/work/addon APIs, our CRDs, the placement scheduler and our hub controllers")
	hubEnv, err = framework.NewEnv(hubCRDs()...)
	Expect(err).NotTo(HaveOccurred())
	hubCfg, err = hubEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	Expect(framework.StoreAddonsAsV1beta1(suiteCtx, hubCfg)).To(Succeed())
	hubK8s, err = client.NewWithWatch(hubCfg, client.Options{Scheme: hubScheme()})
	Expect(err).NotTo(HaveOccurred())
	addons, err = addonclient.NewForConfig(hubCfg)
	Expect(err).NotTo(HaveOccurred())
	framework.StartScheduler(suiteCtx, hubCfg)
	startHub()

	Expect(hubK8s.Create(suiteCtx, &clusterv1beta2.ManagedClusterSet{
		ObjectMeta: metav1.ObjectMeta{Name: clusterSet},
		Spec: clusterv1beta2.ManagedClusterSetSpec{ClusterSelector: clusterv1beta2.ManagedClusterSelector{
			SelectorType: clusterv1beta2.LabelSelector, LabelSelector: &metav1.LabelSelector{},
		}},
	})).To(Succeed())

	for i, name := range []string{"cluster1", "cluster2"} {
		By("starting " + name + ": API server with the spoke CRDs, the agent's RBAC, the agent, the work agent and kubelet stand-ins")
		Expect(hubK8s.Create(suiteCtx, &clusterv1.ManagedCluster{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"env": name}},
			Spec:       clusterv1.ManagedClusterSpec{HubAcceptsClient: true},
		})).To(Succeed())
		Expect(hubK8s.Create(suiteCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
		Expect(hubK8s.Create(suiteCtx, &addonv1beta1.ManagedClusterAddOn{
			ObjectMeta: metav1.ObjectMeta{Name: uplink.AddonName, Namespace: name},
		})).To(Succeed())

		s := &spoke{name: name, hostIP: []string{"192.0.2.11", "192.0.2.12"}[i]}
		s.env = &envtest.Environment{ErrorIfCRDPathMissing: true, CRDDirectoryPaths: []string{framework.SpokeCRDs()}}
		s.cfg, err = s.env.Start()
		Expect(err).NotTo(HaveOccurred())
		s.k8s, err = client.New(s.cfg, client.Options{Scheme: spokeScheme()})
		Expect(err).NotTo(HaveOccurred())
		s.kube = kubernetes.NewForConfigOrDie(s.cfg)
		s.dyn = dynamic.NewForConfigOrDie(s.cfg)
		for _, sc := range []string{"standard", "fast"} {
			Expect(s.k8s.Create(suiteCtx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: sc}, Provisioner: "csi.example.com"})).To(Succeed())
		}
		s.agentSA = installAgentRBAC(suiteCtx, s)
		startAgent(s)
		spokes[name] = s

		hc, err := rest.HTTPClientFor(s.cfg)
		Expect(err).NotTo(HaveOccurred())
		mapper, err := apiutil.NewDynamicRESTMapper(s.cfg, hc)
		Expect(err).NotTo(HaveOccurred())
		wa := &workAgent{cluster: name, hub: hubK8s, spoke: s.dyn, mapper: mapper, applied: map[string][]appliedRef{}}
		go wa.run(suiteCtx)
		go (&kubelet{s: s}).run(suiteCtx)
	}
})

var _ = AfterSuite(func() {
	if cancel != nil {
		cancel()
	}
	for _, s := range spokes {
		Expect(s.env.Stop()).To(Succeed())
	}
	if hubEnv != nil {
		Expect(hubEnv.Stop()).To(Succeed())
	}
})

// startHub runs the hub controllers (placement enrolment + sequencing) as the manager does.
func startHub() {
	mgr, err := ctrl.NewManager(hubCfg, ctrl.Options{
		Scheme:  hubScheme(),
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(hub.SetupWithManager(mgr, hub.Options{})).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(suiteCtx)).To(Succeed())
	}()
}

// startAgent runs the real replication controllers as the agent's
// ServiceAccount on the spoke; the uplink is the agent's StatusWriter on
// its ManagedClusterAddOn (hub admin: the hub-side RBAC is not under test).
func startAgent(s *spoke) {
	agentCfg := rest.CopyConfig(s.cfg)
	agentCfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + s.agentSA.Namespace + ":" + s.agentSA.Name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + s.agentSA.Namespace, "system:authenticated"},
	}
	mgr, err := ctrl.NewManager(agentCfg, ctrl.Options{
		Scheme:                 spokeScheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Two agents in one process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	writer := addonagent.NewStatusWriter(addons, s.name, uplink.AddonName)
	Expect(replication.Setup(mgr, replication.Options{
		MoverImage: moverImage, Writer: writer, Logs: net, Poll: 300 * time.Millisecond,
	})).To(Succeed())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(suiteCtx)).To(Succeed())
	}()
}

// installAgentRBAC renders the agent addon for the spoke and creates its
// ServiceAccount, Role/Bindings and ClusterRoles (the CRDs are installed by envtest).
func installAgentRBAC(ctx context.Context, s *spoke) rbacv1.Subject {
	agentAddon, err := manager.NewAgentAddon(kubefake.NewClientset(), addonfake.NewSimpleClientset(), moverImage)
	Expect(err).NotTo(HaveOccurred())
	objs, err := agentAddon.Manifests(ctx, &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: s.name}},
		&addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Name: uplink.AddonName, Namespace: s.name}})
	Expect(err).NotTo(HaveOccurred())
	var sa rbacv1.Subject
	Expect(s.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: uplink.DefaultAgentNamespace}})).To(Succeed())
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			Expect(o.Namespace).To(Equal(uplink.DefaultAgentNamespace))
			Expect(s.k8s.Create(ctx, o)).To(Succeed())
			sa = rbacv1.Subject{Kind: "ServiceAccount", Name: o.Name, Namespace: o.Namespace}
		case *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, *rbacv1.Role, *rbacv1.RoleBinding,
			*admissionv1.ValidatingAdmissionPolicy, *admissionv1.ValidatingAdmissionPolicyBinding:
			obj := o.(client.Object)
			Eventually(func() error { return client.IgnoreAlreadyExists(s.k8s.Create(ctx, obj)) }, timeout, interval).Should(Succeed())
		}
	}
	Expect(sa.Name).To(Equal(replv1.AgentServiceAccount))
	return sa
}
