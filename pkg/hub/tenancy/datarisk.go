package tenancy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workv1 "open-cluster-management.io/api/work/v1"
	workv1alpha1 "open-cluster-management.io/api/work/v1alpha1"
)

// Volume names one PVC a policy moves.
type Volume struct{ Namespace, Name string }

// DataRisks returns what the ManifestWorkReplicaSets of ns that use
// placement would do to the volumes when OCM removes the app from a cluster
// or delivers it to another, each with its fix:
//   - a Namespace or PVC manifest not orphaned on delete: OCM deletes it, and
//     the data, from the old cluster before (or while) the final copy reads it;
//   - a PVC manifest not applied server-side: it cannot adopt the PVC the
//     migration pre-created on the new cluster;
//   - a StatefulSet whose PVC retention policy deletes its PVCs with it.
func DataRisks(ctx context.Context, r client.Reader, ns, placement string, vols []Volume) ([]string, error) {
	var l workv1alpha1.ManifestWorkReplicaSetList
	if err := r.List(ctx, &l, client.InNamespace(ns)); err != nil {
		if meta.IsNoMatchError(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing ManifestWorkReplicaSets of %s: %w", ns, err)
	}
	var risks []string
	for i := range l.Items {
		m := &l.Items[i]
		if slices.ContainsFunc(m.Spec.PlacementRefs, func(r workv1alpha1.LocalPlacementReference) bool { return r.Name == placement }) {
			risks = append(risks, risksOf(m, vols)...)
		}
	}
	return risks, nil
}

func risksOf(m *workv1alpha1.ManifestWorkReplicaSet, vols []Volume) []string {
	t := &m.Spec.ManifestWorkTemplate
	var risks []string
	say := func(format string, args ...any) {
		risks = append(risks, fmt.Sprintf("ManifestWorkReplicaSet %s: ", m.Name)+fmt.Sprintf(format, args...))
	}
	inVolumeNS := func(ns string) bool {
		return slices.ContainsFunc(vols, func(v Volume) bool { return v.Namespace == ns })
	}
	for _, mf := range t.Workload.Manifests {
		var obj struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct{ Name, Namespace string }
		}
		if json.Unmarshal(mf.Raw, &obj) != nil {
			continue
		}
		switch {
		case obj.APIVersion == "v1" && obj.Kind == "Namespace" && inVolumeNS(obj.Metadata.Name):
			if !orphaned(t, "namespaces", "", obj.Metadata.Name) {
				say("Namespace %s is deleted, with its PVCs, when OCM removes the app from a cluster: add "+
					`{group: "", resource: namespaces, name: %s} to spec.manifestWorkTemplate.deleteOption.selectivelyOrphans.orphaningRules (propagationPolicy: SelectivelyOrphan)`,
					obj.Metadata.Name, obj.Metadata.Name)
			}
		case obj.APIVersion == "v1" && obj.Kind == "PersistentVolumeClaim" && slices.Contains(vols, Volume{obj.Metadata.Namespace, obj.Metadata.Name}):
			id := fmt.Sprintf(`{group: "", resource: persistentvolumeclaims, namespace: %s, name: %s}`, obj.Metadata.Namespace, obj.Metadata.Name)
			if !orphaned(t, "persistentvolumeclaims", obj.Metadata.Namespace, obj.Metadata.Name) {
				say("PVC %s/%s is deleted when OCM removes the app from a cluster: add %s to spec.manifestWorkTemplate.deleteOption.selectivelyOrphans.orphaningRules (propagationPolicy: SelectivelyOrphan)",
					obj.Metadata.Namespace, obj.Metadata.Name, id)
			}
			if !serverSideApplied(t, obj.Metadata.Namespace, obj.Metadata.Name) {
				say("PVC %s/%s cannot adopt the PVC the migration pre-creates on the new cluster: add {resourceIdentifier: %s, updateStrategy: {type: ServerSideApply}} to spec.manifestWorkTemplate.manifestConfigs",
					obj.Metadata.Namespace, obj.Metadata.Name, id)
			}
		case obj.APIVersion == "apps/v1" && obj.Kind == "StatefulSet" && inVolumeNS(obj.Metadata.Namespace):
			var sts appsv1.StatefulSet
			if json.Unmarshal(mf.Raw, &sts) != nil || !claimsAny(&sts, vols) {
				continue
			}
			if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p != nil && p.WhenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
				say("StatefulSet %s/%s deletes its PVCs when OCM removes it from a cluster: set spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Retain",
					sts.Namespace, sts.Name)
			}
		}
	}
	return risks
}

// orphaned tells whether the work leaves the object behind when deleted.
func orphaned(t *workv1.ManifestWorkSpec, resource, ns, name string) bool {
	d := t.DeleteOption
	if d == nil {
		return false
	}
	switch d.PropagationPolicy {
	case workv1.DeletePropagationPolicyTypeOrphan:
		return true
	case workv1.DeletePropagationPolicyTypeSelectivelyOrphan:
		return d.SelectivelyOrphan != nil && slices.ContainsFunc(d.SelectivelyOrphan.OrphaningRules, func(r workv1.OrphaningRule) bool {
			return r.Group == "" && r.Resource == resource && r.Namespace == ns && r.Name == name
		})
	}
	return false
}

func serverSideApplied(t *workv1.ManifestWorkSpec, ns, name string) bool {
	return slices.ContainsFunc(t.ManifestConfigs, func(c workv1.ManifestConfigOption) bool {
		id := c.ResourceIdentifier
		return id.Group == "" && id.Resource == "persistentvolumeclaims" && id.Namespace == ns && id.Name == name &&
			c.UpdateStrategy != nil && c.UpdateStrategy.Type == workv1.UpdateStrategyTypeServerSideApply
	})
}

// claimsAny tells whether the StatefulSet's claim templates make one of the
// volumes (<template>-<statefulset>-<ordinal>).
func claimsAny(sts *appsv1.StatefulSet, vols []Volume) bool {
	for _, tpl := range sts.Spec.VolumeClaimTemplates {
		prefix := tpl.Name + "-" + sts.Name + "-"
		if slices.ContainsFunc(vols, func(v Volume) bool { return v.Namespace == sts.Namespace && strings.HasPrefix(v.Name, prefix) }) {
			return true
		}
	}
	return false
}
