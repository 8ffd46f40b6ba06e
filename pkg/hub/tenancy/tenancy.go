// Package tenancy holds the hub's two trust rules, shared by the placement
// and sequencing controllers (docs/tenancy.md):
//
//   - a namespace's apps may run only on clusters of the ManagedClusterSets
//     bound to it (ClustersOutsideBoundSets, the rule OCM's scheduler applies);
//   - a MigrationPolicy may name only spoke namespaces its app already owns:
//     those the ManifestWorkReplicaSets using its Placement deliver manifests
//     into (AppNamespaces). Whoever may write such a ManifestWorkReplicaSet
//     can already put workloads there through OCM, so the policy grants no
//     new reach.
package tenancy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterv1 "open-cluster-management.io/api/cluster/v1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	workv1alpha1 "open-cluster-management.io/api/work/v1alpha1"
	clustersdk "open-cluster-management.io/sdk-go/pkg/apis/cluster/v1beta2"
)

// ClustersOutsideBoundSets returns those of clusters that no
// ManagedClusterSet bound to the Placement's namespace selects (intersected
// with the Placement's spec.clusterSets when set), or that do not exist.
func ClustersOutsideBoundSets(ctx context.Context, r client.Reader, p *clusterv1beta1.Placement, clusters ...string) ([]string, error) {
	var bindings clusterv1beta2.ManagedClusterSetBindingList
	if err := r.List(ctx, &bindings, client.InNamespace(p.Namespace)); err != nil {
		return nil, fmt.Errorf("listing ManagedClusterSetBindings of %s: %w", p.Namespace, err)
	}
	var selectors []labels.Selector
	for _, b := range bindings.Items {
		// A binding is named after its set; the scheduler uses the same rule.
		if b.Spec.ClusterSet != b.Name || len(p.Spec.ClusterSets) > 0 && !slices.Contains(p.Spec.ClusterSets, b.Name) {
			continue
		}
		set := &clusterv1beta2.ManagedClusterSet{}
		if err := r.Get(ctx, client.ObjectKey{Name: b.Name}, set); err != nil {
			if client.IgnoreNotFound(err) == nil {
				continue
			}
			return nil, err
		}
		sel, err := clustersdk.BuildClusterSelector(set)
		if err != nil || sel == nil {
			continue // a misconfigured set selects nothing
		}
		selectors = append(selectors, sel)
	}
	var out []string
	for _, name := range clusters {
		mc := &clusterv1.ManagedCluster{}
		if err := r.Get(ctx, client.ObjectKey{Name: name}, mc); err != nil {
			if client.IgnoreNotFound(err) != nil {
				return nil, err
			}
			out = append(out, name)
			continue
		}
		if !slices.ContainsFunc(selectors, func(s labels.Selector) bool { return s.Matches(labels.Set(mc.Labels)) }) {
			out = append(out, name)
		}
	}
	return out, nil
}

// AppNamespaces returns the spoke namespaces the ManifestWorkReplicaSets of
// namespace ns that use Placement placement deliver manifests into (each
// manifest's metadata.namespace, and the name of a Namespace manifest), and
// the names of those ManifestWorkReplicaSets. Without the
// ManifestWorkReplicaSet API it returns nothing: no namespace is owned.
func AppNamespaces(ctx context.Context, r client.Reader, ns, placement string) (sets.Set[string], []string, error) {
	var l workv1alpha1.ManifestWorkReplicaSetList
	if err := r.List(ctx, &l, client.InNamespace(ns)); err != nil {
		if meta.IsNoMatchError(err) {
			return sets.New[string](), nil, nil
		}
		return nil, nil, fmt.Errorf("listing ManifestWorkReplicaSets of %s: %w", ns, err)
	}
	owned := sets.New[string]()
	var names []string
	for _, mwrs := range l.Items {
		if !slices.ContainsFunc(mwrs.Spec.PlacementRefs, func(r workv1alpha1.LocalPlacementReference) bool { return r.Name == placement }) {
			continue
		}
		names = append(names, mwrs.Name)
		for _, mf := range mwrs.Spec.ManifestWorkTemplate.Workload.Manifests {
			var obj struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(mf.Raw, &obj); err != nil {
				continue
			}
			if obj.Metadata.Namespace != "" {
				owned.Insert(obj.Metadata.Namespace)
			}
			if obj.APIVersion == "v1" && obj.Kind == "Namespace" && obj.Metadata.Name != "" {
				owned.Insert(obj.Metadata.Name)
			}
		}
	}
	return owned, names, nil
}

// ForeignNamespaces returns the namespaces of want that owned lacks, sorted.
func ForeignNamespaces(want []string, owned sets.Set[string]) []string {
	return sets.List(sets.New(want...).Difference(owned))
}
