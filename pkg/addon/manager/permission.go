package manager

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"open-cluster-management.io/addon-framework/pkg/agent"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"

	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

// AgentHubRole is everything the agent may do on the hub, bound in its own
// cluster namespace only: read and report on its own ManagedClusterAddOn, keep
// its lease there when the managed cluster has no Lease API (addon-framework's
// fallback), and record events. Progress travels up through that status; work travels down
// through ManifestWork, which the agent never reads.
func AgentHubRole() *rbacv1.Role {
	return &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "open-cluster-management:stateful-migration:agent"},
		Rules: []rbacv1.PolicyRule{
			{
				APIGroups:     []string{"addon.open-cluster-management.io"},
				Resources:     []string{"managedclusteraddons"},
				ResourceNames: []string{uplink.AddonName},
				Verbs:         []string{"get", "list", "watch"},
			},
			{
				APIGroups:     []string{"addon.open-cluster-management.io"},
				Resources:     []string{"managedclusteraddons/status"},
				ResourceNames: []string{uplink.AddonName},
				Verbs:         []string{"patch"},
			},
			{
				APIGroups:     []string{"coordination.k8s.io"},
				Resources:     []string{"leases"},
				ResourceNames: []string{uplink.AddonName},
				Verbs:         []string{"get", "update"},
			},
			// create cannot be limited by name; the Role is in the cluster
			// namespace only.
			{
				APIGroups: []string{"coordination.k8s.io"},
				Resources: []string{"leases"},
				Verbs:     []string{"create"},
			},
			{
				APIGroups: []string{"", "events.k8s.io"},
				Resources: []string{"events"},
				Verbs:     []string{"create", "patch"},
			},
		},
	}
}

// hubPermissions grants AgentHubRole to the agent's hub identity in its
// cluster namespace. addon-framework calls it on every change of the
// ManagedClusterAddOn, and the agents report on that object's status: the
// grant is applied again only when the identity changed or every
// reapplyPermissions (so a deleted Role comes back), not two uncached reads
// per report (docs/scale.md).
func hubPermissions(kubeClient kubernetes.Interface) agent.PermissionConfigFunc {
	build := utils.NewRBACPermissionConfigBuilder(kubeClient).BindKubeClientRole(AgentHubRole()).Build()
	var mu sync.Mutex
	applied := map[string]time.Time{} // cluster and identity -> when granted
	return func(ctx context.Context, cluster *clusterv1.ManagedCluster, addon *addonv1beta1.ManagedClusterAddOn) error {
		who, err := json.Marshal(addon.Status.Registrations)
		if err != nil {
			return err
		}
		key := cluster.Name + "\x00" + string(who)
		mu.Lock()
		at, ok := applied[key]
		mu.Unlock()
		if ok && time.Since(at) < reapplyPermissions {
			return nil
		}
		if err := build(ctx, cluster, addon); err != nil {
			return err
		}
		mu.Lock()
		for k := range applied {
			if strings.HasPrefix(k, cluster.Name+"\x00") {
				delete(applied, k)
			}
		}
		applied[key] = time.Now()
		mu.Unlock()
		return nil
	}
}

// reapplyPermissions is how often an unchanged grant is checked again.
const reapplyPermissions = 10 * time.Minute
