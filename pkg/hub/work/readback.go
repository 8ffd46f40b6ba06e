// What the work agent reports back in a migration's works, and what the
// hub reads back from the works it wrote.

package work

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	workv1 "open-cluster-management.io/api/work/v1"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// ProbedVolumes reads the PVC probes' feedback in the source work. A volume
// whose size is not reported yet is in pending. Capacity is the larger of
// the request and the bound capacity, so the data always fits.
func ProbedVolumes(w *workv1.ManifestWork, refs []VolumeRef, classMap map[string]string) (vols []Volume, pending []string, err error) {
	for _, ref := range refs {
		values := map[string]string{}
		for _, mc := range w.Status.ResourceStatus.Manifests {
			rm := mc.ResourceMeta
			if rm.Kind != "PersistentVolumeClaim" || rm.Group != "" || rm.Namespace != ref.Namespace || rm.Name != ref.PVCName {
				continue
			}
			for _, fv := range mc.StatusFeedbacks.Values {
				if fv.Value.String != nil {
					values[fv.Name] = *fv.Value.String
				}
			}
		}
		size := values[FeedbackRequest]
		if size == "" {
			pending = append(pending, ref.Key())
			continue
		}
		q, perr := resource.ParseQuantity(size)
		if perr != nil {
			return nil, nil, fmt.Errorf("PVC %s reports size %q: %w", ref.Key(), size, perr)
		}
		if c, cerr := resource.ParseQuantity(values[FeedbackCapacity]); cerr == nil && c.Cmp(q) > 0 {
			q = c
		}
		v := Volume{Namespace: ref.Namespace, PVCName: ref.PVCName, Capacity: q,
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}}
		if am := values[FeedbackAccessMode]; am != "" {
			v.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.PersistentVolumeAccessMode(am)}
		}
		if vm := values[FeedbackVolumeMode]; vm != "" {
			mode := corev1.PersistentVolumeMode(vm)
			v.VolumeMode = &mode
		}
		if sc := values[FeedbackStorageClass]; sc != "" {
			if mapped, ok := classMap[sc]; ok {
				sc = mapped
			}
			v.StorageClassName = &sc
		}
		vols = append(vols, v)
	}
	return vols, pending, nil
}

// Applied tells whether the work agent applied the current generation of w.
func Applied(w *workv1.ManifestWork) bool {
	c := meta.FindStatusCondition(w.Status.Conditions, workv1.WorkApplied)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration >= w.Generation
}

// Available tells whether w is Available for its current generation.
func Available(w *workv1.ManifestWork) bool {
	c := meta.FindStatusCondition(w.Status.Conditions, workv1.WorkAvailable)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration >= w.Generation
}

// SourceEndpoints reads back the per-volume destinations written in a source
// work's ReplicationSources, for a Migration whose status does not record
// them (written by a hub from before status.source).
func SourceEndpoints(w *workv1.ManifestWork) map[string]string {
	if w == nil {
		return nil
	}
	var out map[string]string
	for _, mf := range w.Spec.Workload.Manifests {
		var rs replv1.ReplicationSource
		if json.Unmarshal(mf.Raw, &rs) != nil || rs.Kind != "ReplicationSource" {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		for _, v := range rs.Spec.Volumes {
			out[rs.Namespace+"/"+v.PVCName] = v.Destination
		}
	}
	return out
}

// SourceReleases tells whether every ReplicationSource in w has releaseSource set.
func SourceReleases(w *workv1.ManifestWork) bool {
	if w == nil {
		return false
	}
	n := 0
	for _, mf := range w.Spec.Workload.Manifests {
		var rs replv1.ReplicationSource
		if json.Unmarshal(mf.Raw, &rs) != nil || rs.Kind != "ReplicationSource" {
			continue
		}
		if !rs.Spec.ReleaseSource {
			return false
		}
		n++
	}
	return n > 0
}

// HasReplication tells whether w still lists a ReplicationSource or
// ReplicationDestination.
func HasReplication(w *workv1.ManifestWork) bool {
	for _, mf := range w.Spec.Workload.Manifests {
		if isReplication(mf) {
			return true
		}
	}
	return false
}

// WithoutReplication returns w's spec without its ReplicationSources and
// ReplicationDestinations; the TLS Secret, the RoleBinding, the namespaces
// and the PVC probes stay. It is the first step of removing a work: the
// agent cleans up a replication object (movers, PVC finalizer, its report)
// with the rights the RoleBinding gives it, so the RoleBinding must outlive
// the replication object (docs/protocol.md, "Cleanup order").
func WithoutReplication(w *workv1.ManifestWork) *workv1.ManifestWork {
	next := w.DeepCopy()
	next.Spec.Workload.Manifests = nil
	for _, mf := range w.Spec.Workload.Manifests {
		if !isReplication(mf) {
			next.Spec.Workload.Manifests = append(next.Spec.Workload.Manifests, mf)
		}
	}
	return next
}

func isReplication(mf workv1.Manifest) bool {
	var tm metav1.TypeMeta
	if json.Unmarshal(mf.Raw, &tm) != nil {
		return false
	}
	return tm.APIVersion == replv1.GroupVersion.String() && (tm.Kind == "ReplicationSource" || tm.Kind == "ReplicationDestination")
}

// AppliedOrUnknown tells whether the work agent applied the current
// generation of w, or never reported on w at all (nothing was applied).
func AppliedOrUnknown(w *workv1.ManifestWork) bool {
	return meta.FindStatusCondition(w.Status.Conditions, workv1.WorkApplied) == nil || Applied(w)
}
