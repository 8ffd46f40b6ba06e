package destination

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// adopt takes over an existing PVC of the app's name when nothing uses it
// and it is either one an earlier migration moved the app's data away from
// (MovedOutLabel: a move back copies only what changed) or a leftover of a
// destination that was removed before the hub verified it (a failed or
// rolled-back migration: its partial copy is resumed). It returns why it
// refuses, or "".
func (r *Reconciler) adopt(ctx context.Context, rd *replv1.ReplicationDestination, v replv1.DestinationVolume, pvc *corev1.PersistentVolumeClaim) (string, error) {
	ref := fmt.Sprintf("PVC %s/%s already exists", pvc.Namespace, pvc.Name)
	earlier := pvc.Labels[replv1.MigrationIDLabel]
	active, err := r.destinationExists(ctx, pvc.Namespace, earlier)
	if err != nil {
		return "", err
	}
	switch {
	case active:
		return fmt.Sprintf("%s and migration %s is still writing into it: wait for it to end", ref, earlier), nil
	case pvc.Labels[replv1.MovedOutLabel] == "" && earlier == "":
		return ref + " and holds no data an earlier migration moved away: refusing to write into it (delete it, or move the app elsewhere)", nil
	case !pvc.DeletionTimestamp.IsZero():
		return ref + " and is being deleted: wait until it is gone", nil
	case ptr.Deref(pvc.Spec.VolumeMode, corev1.PersistentVolumeFilesystem) != ptr.Deref(v.VolumeMode, corev1.PersistentVolumeFilesystem):
		return ref + " with another volume mode than the source's: delete it", nil
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if c, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok && c.Cmp(size) > 0 {
		size = c
	}
	if size.Cmp(v.Capacity) < 0 {
		return fmt.Sprintf("%s and is smaller (%s) than the source volume (%s): delete it", ref, size.String(), v.Capacity.String()), nil
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(pvc.Namespace)); err != nil {
		return "", err
	}
	for i := range pods.Items {
		if p := &pods.Items[i]; !moverpod.Terminated(p) && moverpod.UsesPVC(p, pvc.Name) {
			return fmt.Sprintf("%s and pod %s uses it: refusing to write into it", ref, p.Name), nil
		}
	}
	klog.FromContext(ctx).Info("Reusing a PVC an earlier migration left", "pvc", pvc.Name,
		"movedOutBy", pvc.Labels[replv1.MovedOutLabel], "leftBy", pvc.Labels[replv1.MigrationIDLabel])
	raw, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": pvc.ResourceVersion,
		"labels":          map[string]any{replv1.MigrationIDLabel: rd.Spec.MigrationID, replv1.MovedOutLabel: nil},
	}})
	if err := r.Client.Patch(ctx, pvc, client.RawPatch(types.MergePatchType, raw)); err != nil {
		return "", fmt.Errorf("adopting PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	return "", nil
}

// destinationExists tells whether a ReplicationDestination of migrationID is
// in namespace: a PVC labelled with a migration that has none is a leftover.
func (r *Reconciler) destinationExists(ctx context.Context, namespace, migrationID string) (bool, error) {
	if migrationID == "" {
		return false, nil
	}
	var list replv1.ReplicationDestinationList
	if err := r.Client.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return false, err
	}
	for _, d := range list.Items {
		if d.Spec.MigrationID == migrationID {
			return true, nil
		}
	}
	return false, nil
}

// appReadiness, once the hub verified the data (spec.hubVerified), finds for
// each PVC a Ready pod of the app that mounts it: the app runs here.
func (r *Reconciler) appReadiness(ctx context.Context, rd *replv1.ReplicationDestination) error {
	st := &rd.Status
	st.AppReady = false
	for i := range st.Volumes {
		st.Volumes[i].AppPod = ""
	}
	if !rd.Spec.HubVerified || st.Phase != replv1.DestinationVerified {
		return nil
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(rd.Namespace)); err != nil {
		return err
	}
	st.AppReady = len(st.Volumes) > 0
	for i := range st.Volumes {
		v := &st.Volumes[i]
		for j := range pods.Items {
			if p := &pods.Items[j]; !moverpod.IsMover(p) && p.DeletionTimestamp.IsZero() && moverpod.UsesPVC(p, v.PVCName) && moverpod.PodReady(p) {
				v.AppPod = p.Name
				break
			}
		}
		st.AppReady = st.AppReady && v.AppPod != ""
	}
	return nil
}

// handOver gives the verified PVCs to the app: without the migration-ID
// label they are the app's own, never a leftover a later migration reuses.
func (r *Reconciler) handOver(ctx context.Context, rd *replv1.ReplicationDestination) error {
	for _, v := range rd.Spec.Volumes {
		var pvc corev1.PersistentVolumeClaim
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: rd.Namespace, Name: v.PVCName}, &pvc); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return err
		}
		if pvc.Labels[replv1.MigrationIDLabel] != rd.Spec.MigrationID {
			continue
		}
		raw, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{replv1.MigrationIDLabel: nil}}})
		if err := r.Client.Patch(ctx, &pvc, client.RawPatch(types.MergePatchType, raw)); err != nil {
			return fmt.Errorf("handing PVC %s/%s to the app: %w", pvc.Namespace, pvc.Name, err)
		}
	}
	return nil
}

// NewPVC is the PVC created for the app. It carries only what the app's own
// manifest will agree with (name, size, access modes, volume mode, the mapped
// class) plus one label under the agent's own prefix: no owner reference
// (the PVC outlives the ReplicationDestination), no app.kubernetes.io labels
// (an app or Helm may set those), no annotations.
func NewPVC(rd *replv1.ReplicationDestination, v replv1.DestinationVolume) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: rd.Namespace, Name: v.PVCName,
			Labels: map[string]string{replv1.MigrationIDLabel: rd.Spec.MigrationID},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      v.AccessModes,
			VolumeMode:       ptr.To(ptr.Deref(v.VolumeMode, corev1.PersistentVolumeFilesystem)),
			StorageClassName: v.StorageClassName,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: v.Capacity,
			}},
		},
	}
}
