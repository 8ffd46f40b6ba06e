// Package agent tests the agent's replication controllers on a real
// kube-apiserver and etcd (envtest). The same API server plays hub and
// spoke. There is no kubelet, scheduler or controller-manager: the test plays
// them (pod phases, node names, termination messages, mover logs, PVC
// binding, final deletion of terminating pods).
package agent

import (
	"context"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	addonfake "open-cluster-management.io/api/client/addon/clientset/versioned/fake"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	addonagent "github.com/stateful-migration/stateful-migration/pkg/addon/agent"
	"github.com/stateful-migration/stateful-migration/pkg/addon/manager"
	"github.com/stateful-migration/stateful-migration/pkg/agent/replication"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/test/integration/framework"
)

const (
	clusterName = "cluster1"
	moverImage  = "registry.example/stateful-migration:test"
	execNode    = "node-exec"
)

var (
	testEnv     *envtest.Environment
	cfg         *rest.Config
	kubeClient  kubernetes.Interface
	addonClient addonclient.Interface
	k8s         client.Client // admin, with the replication scheme
	agentCfg    *rest.Config  // the agent's spoke identity, with exactly its rendered rights
	agentSA     rbacv1.Subject
	logs        = &fakeLogs{m: map[string]string{}}
	execKubelet *framework.ExecKubelet
	suiteCtx    context.Context
	stopSuite   context.CancelFunc
)

func TestAgent(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "Agent replication integration suite")
}

var _ = BeforeSuite(func() {
	crds, err := framework.AddonCRDs()
	Expect(err).NotTo(HaveOccurred())
	// The spoke CRDs exactly as the agent templates ship them.
	testEnv = &envtest.Environment{ErrorIfCRDPathMissing: true, CRDDirectoryPaths: append(crds, framework.SpokeCRDs())}
	ctrl.SetLogger(klog.NewKlogr())
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	Expect(framework.StoreAddonsAsV1beta1(context.Background(), cfg)).To(Succeed())

	kubeClient = kubernetes.NewForConfigOrDie(cfg)
	addonClient = addonclient.NewForConfigOrDie(cfg)
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(replv1.AddToScheme(scheme)).To(Succeed())
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	suiteCtx, stopSuite = context.WithCancel(context.Background())

	By("installing the agent's spoke RBAC exactly as the addon manager renders it")
	agentSA = installAgentRBAC(suiteCtx)
	agentCfg = rest.CopyConfig(cfg)
	agentCfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + agentSA.Namespace + ":" + agentSA.Name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + agentSA.Namespace, "system:authenticated"},
	}

	By("enabling the addon on the hub: the cluster namespace and the ManagedClusterAddOn")
	_, err = kubeClient.CoreV1().Namespaces().Create(suiteCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterName}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = addonClient.AddonV1beta1().ManagedClusterAddOns(clusterName).Create(suiteCtx, &addonv1beta1.ManagedClusterAddOn{
		ObjectMeta: metav1.ObjectMeta{Name: uplink.AddonName, Namespace: clusterName},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())

	_, err = kubeClient.StorageV1().StorageClasses().Create(suiteCtx, storageClass("fast"), metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())

	go fakeKubelet(suiteCtx)

	By("a node whose kubelet serves exec (hooks)")
	execKubelet, err = framework.StartExecKubelet()
	Expect(err).NotTo(HaveOccurred())
	Expect(execKubelet.RegisterNode(suiteCtx, kubeClient, execNode)).To(Succeed())
})

var _ = AfterSuite(func() {
	if stopSuite != nil {
		stopSuite()
	}
	if execKubelet != nil {
		execKubelet.Close()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// agentRun is one running agent (the replication controllers in a manager
// with the agent's identity).
type agentRun struct {
	cancel context.CancelFunc
	done   chan error
}

// startAgent starts the replication controllers as the agent does: the
// spoke through the agent's ServiceAccount, the hub through the StatusWriter.
func startAgent() *agentRun {
	mgr, err := ctrl.NewManager(agentCfg, ctrl.Options{
		Scheme:                 newScheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Each spec starts a fresh agent in the same process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	writer := addonagent.NewStatusWriter(addonClient, clusterName, uplink.AddonName)
	Expect(replication.Setup(mgr, replication.Options{
		MoverImage: moverImage, Writer: writer, Logs: logs, Poll: 300 * time.Millisecond,
	})).To(Succeed())
	ctx, cancel := context.WithCancel(suiteCtx)
	run := &agentRun{cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- mgr.Start(ctx) }()
	return run
}

func (a *agentRun) stop() {
	a.cancel()
	Eventually(a.done, 30*time.Second).Should(Receive(BeNil()))
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(s)).To(Succeed())
	return s
}

// installAgentRBAC renders the agent addon and creates its ServiceAccount,
// standing ClusterRole/Binding and the replicator ClusterRole.
func installAgentRBAC(ctx context.Context) rbacv1.Subject {
	agentAddon, err := manager.NewAgentAddon(kubefake.NewClientset(), addonfake.NewSimpleClientset(), moverImage)
	Expect(err).NotTo(HaveOccurred())
	objs, err := agentAddon.Manifests(ctx, &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: clusterName}},
		&addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Name: uplink.AddonName, Namespace: clusterName}})
	Expect(err).NotTo(HaveOccurred())
	var sa rbacv1.Subject
	var roles, policies int
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			_, err := kubeClient.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Namespace}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			_, err = kubeClient.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			sa = rbacv1.Subject{Kind: "ServiceAccount", Name: o.Name, Namespace: o.Namespace}
		case *rbacv1.ClusterRole:
			_, err := kubeClient.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			roles++
		case *rbacv1.ClusterRoleBinding:
			_, err := kubeClient.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
		case *admissionv1.ValidatingAdmissionPolicy:
			_, err := kubeClient.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, o, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			policies++
		case *admissionv1.ValidatingAdmissionPolicyBinding:
			_, err := kubeClient.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, o, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			policies++
		case *apiextensionsv1.CustomResourceDefinition:
			// Installed by envtest from the same files.
		}
	}
	Expect(policies).To(Equal(2)) // the PV admission policy and its binding
	Expect(roles).To(Equal(3))    // agent, replicator, and the work agent's aggregated role
	Expect(sa.Name).To(Equal(replv1.AgentServiceAccount))
	return sa
}

// appNamespace creates an app namespace and, as the hub's ManifestWork does,
// binds the replicator ClusterRole to the agent there.
func appNamespace(ctx context.Context, name string) {
	_, err := kubeClient.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = kubeClient.RbacV1().RoleBindings(name).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "smig-test-replicator", Namespace: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: replv1.ReplicatorClusterRole},
		Subjects:   []rbacv1.Subject{agentSA},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
}

// tlsSecret creates a migration's TLS Secret and, as the hub's ManifestWork
// does, a Role letting the agent read that Secret by name (and no other).
func tlsSecret(ctx context.Context, ns, name string) {
	_, err := kubeClient.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"ca.crt": []byte("ca"), "tls.crt": []byte("crt"), "tls.key": []byte("key")},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	reader := name + "-reader"
	_, err = kubeClient.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: reader, Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}, ResourceNames: []string{name}}},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = kubeClient.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: reader, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: reader},
		Subjects:   []rbacv1.Subject{agentSA},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
}

// fakeKubelet finishes the deletion of pods being deleted, as a kubelet does
// once their containers stopped.
func fakeKubelet(ctx context.Context) {
	defer GinkgoRecover()
	for ctx.Err() == nil {
		pods, err := kubeClient.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, p := range pods.Items {
				if p.DeletionTimestamp != nil {
					err := kubeClient.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
					if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
						GinkgoWriter.Printf("fake kubelet: %v\n", err)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fakeLogs plays pods/log: the test sets a mover pod's log lines.
type fakeLogs struct {
	mu sync.Mutex
	m  map[string]string
}

func (f *fakeLogs) set(ns, pod, lines string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m[ns+"/"+pod] = lines
}

func (f *fakeLogs) Tail(_ context.Context, pod *corev1.Pod, _ int64) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.m[pod.Namespace+"/"+pod.Name]
	if !ok {
		return nil, apierrors.NewNotFound(corev1.Resource("pods/log"), pod.Name)
	}
	return []byte(s), nil
}
