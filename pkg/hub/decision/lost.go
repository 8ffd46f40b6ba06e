package decision

import (
	"context"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterv1 "open-cluster-management.io/api/cluster/v1"
)

// Lost reports whether OCM holds cluster lost: not Available (False, or
// Unknown once its lease lapsed), or tainted so. Read it from the API
// server: the scheduler may act on OCM's taint before a cache has seen the
// condition that caused it. A cluster that is not registered is not lost.
func Lost(ctx context.Context, r client.Reader, cluster string) (bool, error) {
	var mc clusterv1.ManagedCluster
	if err := r.Get(ctx, client.ObjectKey{Name: cluster}, &mc); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if slices.ContainsFunc(mc.Spec.Taints, func(t clusterv1.Taint) bool {
		return t.Key == clusterv1.ManagedClusterTaintUnreachable || t.Key == clusterv1.ManagedClusterTaintUnavailable
	}) {
		return true, nil
	}
	c := meta.FindStatusCondition(mc.Status.Conditions, clusterv1.ManagedClusterConditionAvailable)
	return c != nil && c.Status != metav1.ConditionTrue, nil
}
