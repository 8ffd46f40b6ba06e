package manager

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonfake "open-cluster-management.io/api/client/addon/clientset/versioned/fake"
	clusterv1 "open-cluster-management.io/api/cluster/v1"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

const testImage = "registry.example/stateful-migration:v1"

func render(t *testing.T, addon *addonv1beta1.ManagedClusterAddOn, configs ...runtime.Object) ([]runtime.Object, error) {
	t.Helper()
	return renderFor(t, &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "cluster1"}}, addon, configs...)
}

func renderFor(t *testing.T, cluster *clusterv1.ManagedCluster, addon *addonv1beta1.ManagedClusterAddOn, configs ...runtime.Object) ([]runtime.Object, error) {
	t.Helper()
	agentAddon, err := NewAgentAddon(kubefake.NewClientset(), addonfake.NewSimpleClientset(configs...), testImage)
	if err != nil {
		t.Fatalf("building agent addon: %v", err)
	}
	return agentAddon.Manifests(context.Background(), cluster, addon)
}

func newAddon() *addonv1beta1.ManagedClusterAddOn {
	return &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Name: uplink.AddonName, Namespace: "cluster1"}}
}

// withConfig references adc the way OCM's addon manager records it.
func withConfig(t *testing.T, addon *addonv1beta1.ManagedClusterAddOn, adc *addonv1beta1.AddOnDeploymentConfig) *addonv1beta1.ManagedClusterAddOn {
	t.Helper()
	hash, err := utils.GetAddOnDeploymentConfigSpecHash(adc)
	if err != nil {
		t.Fatal(err)
	}
	addon.Status.ConfigReferences = []addonv1beta1.ConfigReference{{
		ConfigGroupResource: addonv1beta1.ConfigGroupResource{Group: "addon.open-cluster-management.io", Resource: "addondeploymentconfigs"},
		DesiredConfig: &addonv1beta1.ConfigSpecHash{
			ConfigReferent: addonv1beta1.ConfigReferent{Namespace: adc.Namespace, Name: adc.Name},
			SpecHash:       hash,
		},
	}}
	return addon
}

type rendered struct {
	sa                 *corev1.ServiceAccount
	role               *rbacv1.Role
	roleBinding        *rbacv1.RoleBinding
	deployment         *appsv1.Deployment
	clusterRoles       map[string]*rbacv1.ClusterRole
	clusterRoleBinding *rbacv1.ClusterRoleBinding
	crds               map[string]*apiextensionsv1.CustomResourceDefinition
	pvPolicy           *admissionv1.ValidatingAdmissionPolicy
	pvPolicyBinding    *admissionv1.ValidatingAdmissionPolicyBinding
}

func sortObjects(t *testing.T, objs []runtime.Object) rendered {
	t.Helper()
	r := rendered{clusterRoles: map[string]*rbacv1.ClusterRole{}, crds: map[string]*apiextensionsv1.CustomResourceDefinition{}}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			r.sa = o
		case *rbacv1.Role:
			r.role = o
		case *rbacv1.RoleBinding:
			r.roleBinding = o
		case *appsv1.Deployment:
			r.deployment = o
		case *rbacv1.ClusterRole:
			r.clusterRoles[o.Name] = o
		case *rbacv1.ClusterRoleBinding:
			if r.clusterRoleBinding != nil {
				t.Errorf("two ClusterRoleBindings: %s, %s", r.clusterRoleBinding.Name, o.Name)
			}
			r.clusterRoleBinding = o
		case *apiextensionsv1.CustomResourceDefinition:
			r.crds[o.Name] = o
		case *admissionv1.ValidatingAdmissionPolicy:
			r.pvPolicy = o
		case *admissionv1.ValidatingAdmissionPolicyBinding:
			r.pvPolicyBinding = o
		default:
			t.Errorf("unexpected object %T", o)
		}
	}
	if r.sa == nil || r.role == nil || r.roleBinding == nil || r.deployment == nil || r.clusterRoleBinding == nil {
		t.Fatalf("missing objects, got %d: %+v", len(objs), r)
	}
	if len(objs) != 12 {
		t.Errorf("want exactly 12 objects (SA, Role, RoleBinding, Deployment, 3 ClusterRoles, ClusterRoleBinding, 2 CRDs, PV admission policy and binding), got %d", len(objs))
	}
	for _, name := range []string{agentClusterRole, replv1.ReplicatorClusterRole, workClusterRole} {
		if r.clusterRoles[name] == nil {
			t.Errorf("ClusterRole %s not rendered (got %v)", name, keys(r.clusterRoles))
		}
	}
	for _, name := range []string{"replicationsources.replication.migration.open-cluster-management.io", "replicationdestinations.replication.migration.open-cluster-management.io"} {
		if r.crds[name] == nil {
			t.Errorf("CRD %s not rendered (got %v)", name, keys(r.crds))
		}
	}
	return r
}

const (
	agentClusterRole = "open-cluster-management:stateful-migration:agent"
	workClusterRole  = "open-cluster-management:stateful-migration:work"
)

// OCM's work agent applies the replication objects; it gets rights on exactly
// those through aggregation, and no namespace admin does.
func TestWorkAgentMayApplyReplicationObjectsOnly(t *testing.T) {
	objs, err := render(t, newAddon())
	if err != nil {
		t.Fatal(err)
	}
	cr := sortObjects(t, objs).clusterRoles[workClusterRole]
	if cr.Labels["open-cluster-management.io/aggregate-to-work"] != "true" {
		t.Errorf("work ClusterRole is not aggregated to the work agent: %v", cr.Labels)
	}
	if len(cr.Labels) != 1 {
		t.Errorf("work ClusterRole must aggregate to nothing else: %v", cr.Labels)
	}
	allowed := map[string][]string{
		replv1.GroupVersion.Group:      {"replicationsources", "replicationdestinations"},
		"admissionregistration.k8s.io": {"validatingadmissionpolicies", "validatingadmissionpolicybindings"},
	}
	for _, rule := range cr.Rules {
		if len(rule.APIGroups) != 1 || allowed[rule.APIGroups[0]] == nil {
			t.Errorf("work ClusterRole reaches beyond the replication API and admission policies: %+v", rule)
			continue
		}
		for _, res := range rule.Resources {
			if !slices.Contains(allowed[rule.APIGroups[0]], res) {
				t.Errorf("work ClusterRole grants %s", res)
			}
		}
	}
}

func keys[T any](m map[string]T) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestManifestsDefaults(t *testing.T) {
	objs, err := render(t, newAddon())
	if err != nil {
		t.Fatal(err)
	}
	r := sortObjects(t, objs)
	for _, ns := range []string{r.sa.Namespace, r.role.Namespace, r.roleBinding.Namespace, r.deployment.Namespace, r.roleBinding.Subjects[0].Namespace} {
		if ns != uplink.DefaultAgentNamespace {
			t.Errorf("namespace = %q, want %q", ns, uplink.DefaultAgentNamespace)
		}
	}
	spec := r.deployment.Spec.Template.Spec
	c := spec.Containers[0]
	if c.Image != testImage {
		t.Errorf("image = %q, want %q", c.Image, testImage)
	}
	wantArgs := []string{"agent", "--hub-kubeconfig=/var/run/hub/kubeconfig", "--cluster-name=cluster1", "--addon-namespace=" + uplink.DefaultAgentNamespace, "--mover-image=" + testImage}
	if strings.Join(c.Args, " ") != strings.Join(wantArgs, " ") {
		t.Errorf("args = %v, want %v", c.Args, wantArgs)
	}
	if got := spec.Volumes[0].Secret.SecretName; got != "stateful-migration-hub-kubeconfig" {
		t.Errorf("hub kubeconfig secret = %q", got)
	}
	if spec.ServiceAccountName != r.sa.Name || r.roleBinding.Subjects[0].Name != r.sa.Name || r.roleBinding.RoleRef.Name != r.role.Name {
		t.Errorf("service account, role and binding do not line up")
	}
	crb := r.clusterRoleBinding
	if crb.RoleRef.Name != agentClusterRole || crb.Subjects[0].Name != r.sa.Name || crb.Subjects[0].Namespace != uplink.DefaultAgentNamespace {
		t.Errorf("agent ClusterRoleBinding does not bind the agent's ServiceAccount to its ClusterRole: %+v", crb)
	}
	if spec.NodeSelector != nil || spec.Tolerations != nil || c.Env != nil {
		t.Errorf("no placement or env expected without a config: %v %v %v", spec.NodeSelector, spec.Tolerations, c.Env)
	}
}

func TestManifestsFromAddOnDeploymentConfig(t *testing.T) {
	seconds := int64(30)
	adc := &addonv1beta1.AddOnDeploymentConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "custom", Namespace: "cluster1"},
		Spec: addonv1beta1.AddOnDeploymentConfigSpec{
			AgentInstallNamespace: "migration-agent",
			NodePlacement: &addonv1beta1.NodePlacement{
				// Legal values that naive YAML templating would turn into a bool and a number.
				NodeSelector: map[string]string{"example.com/ssd": "true", "example.com/rack": "0123"},
				Tolerations: []corev1.Toleration{{
					Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "io",
					Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &seconds,
				}},
			},
			Registries:  []addonv1beta1.ImageMirror{{Source: "registry.example", Mirror: "mirror.local:5000"}},
			ProxyConfig: addonv1beta1.ProxyConfig{HTTPSProxy: "http://proxy.local:3128", NoProxy: "10.0.0.0/8"},
		},
	}
	objs, err := render(t, withConfig(t, newAddon(), adc), adc)
	if err != nil {
		t.Fatal(err)
	}
	r := sortObjects(t, objs)
	for _, ns := range []string{r.sa.Namespace, r.role.Namespace, r.roleBinding.Namespace, r.deployment.Namespace, r.roleBinding.Subjects[0].Namespace} {
		if ns != "migration-agent" {
			t.Errorf("namespace = %q, want migration-agent", ns)
		}
	}
	spec := r.deployment.Spec.Template.Spec
	c := spec.Containers[0]
	if c.Image != "mirror.local:5000/stateful-migration:v1" {
		t.Errorf("image = %q, want the mirrored image", c.Image)
	}
	if !strings.Contains(strings.Join(c.Args, " "), "--addon-namespace=migration-agent") {
		t.Errorf("args do not carry the install namespace: %v", c.Args)
	}
	if !strings.Contains(strings.Join(c.Args, " "), "--mover-image=mirror.local:5000/stateful-migration:v1") {
		t.Errorf("movers do not run the (mirrored) agent image: %v", c.Args)
	}
	if s := r.clusterRoleBinding.Subjects[0]; s.Namespace != "migration-agent" {
		t.Errorf("ClusterRoleBinding subject namespace = %q, want migration-agent", s.Namespace)
	}
	if spec.NodeSelector["example.com/ssd"] != "true" || spec.NodeSelector["example.com/rack"] != "0123" {
		t.Errorf("node selector = %v", spec.NodeSelector)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Key != "dedicated" || *spec.Tolerations[0].TolerationSeconds != 30 {
		t.Errorf("tolerations = %+v", spec.Tolerations)
	}
	env, _ := json.Marshal(c.Env)
	if len(c.Env) != 2 || !strings.Contains(string(env), "proxy.local:3128") || !strings.Contains(string(env), "NO_PROXY") {
		t.Errorf("env = %s", env)
	}
}

func TestManifestsMissingDeploymentConfig(t *testing.T) {
	adc := &addonv1beta1.AddOnDeploymentConfig{ObjectMeta: metav1.ObjectMeta{Name: "gone", Namespace: "cluster1"}}
	// Referenced, but not present on the hub.
	_, err := render(t, withConfig(t, newAddon(), adc))
	if err == nil || !strings.Contains(err.Error(), "AddOnDeploymentConfig cluster1/gone referenced by this addon does not exist") {
		t.Fatalf("want an error naming the missing config, got %v", err)
	}
}

func TestAgentHubRoleIsScopedToOwnAddon(t *testing.T) {
	for _, rule := range AgentHubRole().Rules {
		for _, res := range rule.Resources {
			if res == "events" || res == "leases" && len(rule.Verbs) == 1 && rule.Verbs[0] == "create" {
				continue
			}
			if len(rule.ResourceNames) != 1 || rule.ResourceNames[0] != uplink.AddonName {
				t.Errorf("rule on %s is not limited to the addon's own object: %+v", res, rule)
			}
		}
		for _, verb := range rule.Verbs {
			if verb == "*" || verb == "delete" || verb == "create" && rule.Resources[0] != "events" && rule.Resources[0] != "leases" {
				t.Errorf("verb %q too broad in %+v", verb, rule)
			}
		}
	}
}

// The agent's standing ClusterRole reads cluster-wide but writes nothing
// namespaced: PVCs, pods, services and secrets of an app namespace come only
// with the replicator role the hub binds there.
func TestAgentClusterRoleWritesNothingNamespaced(t *testing.T) {
	objs, err := render(t, newAddon())
	if err != nil {
		t.Fatal(err)
	}
	r := sortObjects(t, objs)
	for _, rule := range r.clusterRoles[agentClusterRole].Rules {
		for _, res := range rule.Resources {
			for _, verb := range rule.Verbs {
				allowed := verb == "get" || verb == "list" || verb == "watch" ||
					res == "persistentvolumes" && verb == "patch" ||
					strings.HasPrefix(res, "replication") && (verb == "patch" || verb == "update")
				if !allowed || res == "secrets" || verb == "*" || res == "*" {
					t.Errorf("agent ClusterRole grants %s on %s", verb, res)
				}
				if res == "persistentvolumes" && verb != "get" && verb != "patch" {
					t.Errorf("agent ClusterRole grants %s on persistentvolumes (want get, patch)", verb)
				}
			}
		}
	}
	for _, rule := range r.clusterRoles[replv1.ReplicatorClusterRole].Rules {
		if slices.Contains(rule.Resources, "secrets") {
			t.Errorf("replicator ClusterRole grants %v on secrets (the TLS Secret is readable by name through the work's Role)", rule.Verbs)
		}
		for _, verb := range rule.Verbs {
			if verb == "*" || verb == "list" || verb == "watch" || verb == "delete" && rule.Resources[0] == "persistentvolumeclaims" {
				t.Errorf("replicator ClusterRole grants %s on %v", verb, rule.Resources)
			}
		}
	}
}

func TestManifestsInvalidDeploymentConfig(t *testing.T) {
	adc := &addonv1beta1.AddOnDeploymentConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "broken", Namespace: "cluster1"},
		Spec: addonv1beta1.AddOnDeploymentConfigSpec{NodePlacement: &addonv1beta1.NodePlacement{
			NodeSelector: map[string]string{"bad key!": "ok"},
			Tolerations:  []corev1.Toleration{{Key: "k", Operator: "Maybe", Effect: "Sometimes"}},
		}},
	}
	_, err := render(t, withConfig(t, newAddon(), adc), adc)
	if err == nil {
		t.Fatal("an invalid config must not render")
	}
	for _, want := range []string{"AddOnDeploymentConfig cluster1/broken", `key "bad key!"`, `operator "Maybe"`, `effect "Sometimes"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// The PV admission policy needs ValidatingAdmissionPolicy v1 (Kubernetes
// 1.30); older spokes get the agent without it rather than a work that never applies.
func TestPVAdmissionPolicyOnlyWhereSupported(t *testing.T) {
	for version, want := range map[string]bool{"": true, "v1.30.0": true, "v1.35.8": true, "v1.29.9": false, "v1.28.2+k3s1": false} {
		cluster := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "cluster1"}}
		cluster.Status.Version.Kubernetes = version
		objs, err := renderFor(t, cluster, newAddon())
		if err != nil {
			t.Fatal(err)
		}
		var policy *admissionv1.ValidatingAdmissionPolicy
		var binding *admissionv1.ValidatingAdmissionPolicyBinding
		for _, o := range objs {
			switch o := o.(type) {
			case *admissionv1.ValidatingAdmissionPolicy:
				policy = o
			case *admissionv1.ValidatingAdmissionPolicyBinding:
				binding = o
			}
		}
		if (policy != nil) != want || (binding != nil) != want {
			t.Errorf("Kubernetes %q: policy %v binding %v, want both %v", version, policy != nil, binding != nil, want)
			continue
		}
		if !want {
			continue
		}
		if binding.Spec.PolicyName != policy.Name || !slices.Equal(binding.Spec.ValidationActions, []admissionv1.ValidationAction{admissionv1.Deny}) {
			t.Errorf("binding %+v does not enforce policy %s", binding.Spec, policy.Name)
		}
		agent := "system:serviceaccount:" + uplink.DefaultAgentNamespace + ":" + replv1.AgentServiceAccount
		if len(policy.Spec.MatchConditions) != 1 || !strings.Contains(policy.Spec.MatchConditions[0].Expression, `"`+agent+`"`) {
			t.Errorf("policy does not match the agent %s only: %+v", agent, policy.Spec.MatchConditions)
		}
	}
}
