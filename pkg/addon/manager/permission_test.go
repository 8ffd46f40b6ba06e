package manager

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"

	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

// The grant is applied once per agent identity, not on every report the
// agent writes on its ManagedClusterAddOn; a new identity is granted again.
func TestHubPermissionsAppliedOncePerIdentity(t *testing.T) {
	kube := kubefake.NewClientset()
	grant := hubPermissions(kube)
	cluster := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: "c1"}}
	addon := &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: "c1", Name: uplink.AddonName}}
	as := func(user string) {
		addon.Status.Registrations = []addonv1beta1.RegistrationConfig{{Type: addonv1beta1.KubeClient,
			KubeClient: &addonv1beta1.KubeClientConfig{Subject: addonv1beta1.KubeClientSubject{BaseSubject: addonv1beta1.BaseSubject{User: user}}}}}
	}
	as("agent-1")
	if err := grant(context.Background(), cluster, addon); err != nil {
		t.Fatal(err)
	}
	first := len(kube.Actions())
	if first == 0 {
		t.Fatal("nothing granted")
	}
	for range 5 { // the agent's reports
		if err := grant(context.Background(), cluster, addon.DeepCopy()); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(kube.Actions()); n != first {
		t.Fatalf("%d more requests for an unchanged identity", n-first)
	}
	as("agent-2")
	if err := grant(context.Background(), cluster, addon); err != nil {
		t.Fatal(err)
	}
	if len(kube.Actions()) == first {
		t.Fatal("a new identity was not granted")
	}
}
