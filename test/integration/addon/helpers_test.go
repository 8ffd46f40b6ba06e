package addon

import (
	"context"
	"fmt"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"

	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/test/integration/framework"
)

// enableAddon does what `clusteradm addon enable` and OCM's addon manager do:
// a cluster namespace, the ManagedCluster, and a ManagedClusterAddOn owned by
// the ClusterManagementAddOn.
func enableAddon(ctx context.Context, cluster string) {
	_, err := kubeClient.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cluster}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = clusterClient.ClusterV1().ManagedClusters().Create(ctx, &clusterv1.ManagedCluster{
		ObjectMeta: metav1.ObjectMeta{Name: cluster},
		Spec:       clusterv1.ManagedClusterSpec{HubAcceptsClient: true},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	cma, err := addonClient.AddonV1beta1().ClusterManagementAddOns().Get(ctx, uplink.AddonName, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = addonClient.AddonV1beta1().ManagedClusterAddOns(cluster).Create(ctx, &addonv1beta1.ManagedClusterAddOn{
		ObjectMeta: metav1.ObjectMeta{
			Name: uplink.AddonName, Namespace: cluster,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "addon.open-cluster-management.io/v1beta1", Kind: "ClusterManagementAddOn",
				Name: cma.Name, UID: cma.UID,
			}},
		},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
}

// agentManifests decodes the objects of the addon's ManifestWork in cluster.
func agentManifests(ctx context.Context, cluster string) ([]runtime.Object, error) {
	work, err := workClient.WorkV1().ManifestWorks(cluster).Get(ctx, "addon-stateful-migration-deploy-0", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	s := runtime.NewScheme()
	Expect(scheme.AddToScheme(s)).To(Succeed())
	Expect(apiextensionsv1.AddToScheme(s)).To(Succeed()) // the spoke CRDs travel with the agent
	decoder := serializer.NewCodecFactory(s).UniversalDeserializer()
	var objs []runtime.Object
	for _, m := range work.Spec.Workload.Manifests {
		obj, _, err := decoder.Decode(m.Raw, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("decoding manifest: %w", err)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// agentHubSubject is the identity OCM registration gives the agent on the hub,
// as recorded in the ManagedClusterAddOn status.
func agentHubSubject(ctx context.Context, cluster string) (rest.ImpersonationConfig, error) {
	addon, err := addonClient.AddonV1beta1().ManagedClusterAddOns(cluster).Get(ctx, uplink.AddonName, metav1.GetOptions{})
	if err != nil {
		return rest.ImpersonationConfig{}, err
	}
	for _, r := range addon.Status.Registrations {
		if r.Type == addonv1beta1.KubeClient && r.KubeClient != nil && r.KubeClient.Subject.User != "" {
			return rest.ImpersonationConfig{UserName: r.KubeClient.Subject.User, Groups: r.KubeClient.Subject.Groups}, nil
		}
	}
	return rest.ImpersonationConfig{}, fmt.Errorf("no kube client registration yet in %+v", addon.Status.Registrations)
}

func impersonate(as rest.ImpersonationConfig) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = as
	return c
}

// writeKubeconfig writes a kubeconfig that authenticates as the envtest admin
// and impersonates as, standing in for the agent's hub client certificate.
func writeKubeconfig(path string, as rest.ImpersonationConfig) {
	Expect(framework.WriteKubeconfig(cfg, path, as)).To(Succeed())
}

// applyAgentRBAC creates what the work agent would apply from the ManifestWork
// (namespace, ServiceAccount, Role, RoleBinding) so the agent can run with
// exactly the spoke rights its templates grant.
func applyAgentRBAC(ctx context.Context, objs []runtime.Object) rest.ImpersonationConfig {
	var sa *corev1.ServiceAccount
	for _, o := range objs {
		ns := o.(metav1.Object).GetNamespace()
		if ns == "" {
			continue // cluster-scoped
		}
		_, err := kubeClient.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if !apierrors.IsAlreadyExists(err) {
			Expect(err).NotTo(HaveOccurred())
		}
	}
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			sa = o
			_, err = kubeClient.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = kubeClient.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = kubeClient.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		}
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(sa).NotTo(BeNil())
	return rest.ImpersonationConfig{
		UserName: fmt.Sprintf("system:serviceaccount:%s:%s", sa.Namespace, sa.Name),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + sa.Namespace, "system:authenticated"},
	}
}
