package source

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// protect sets the PV bound to pvcName to Retain (remembering its policy in
// an annotation, in the same write) and puts the protection finalizer on the
// PVC. It returns why protection is not complete yet.
func (r *Reconciler) protect(ctx context.Context, rs *replv1.ReplicationSource, pvcName string, vs *replv1.SourceVolumeStatus) (string, error) {
	var pvc corev1.PersistentVolumeClaim
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: rs.Namespace, Name: pvcName}, &pvc); apierrors.IsNotFound(err) {
		vs.Protected = false
		return fmt.Sprintf("PVC %s not found", pvcName), nil
	} else if err != nil {
		return "", err
	}
	if pvc.Spec.VolumeName == "" {
		vs.Protected = false
		return fmt.Sprintf("PVC %s is not bound to a volume yet", pvcName), nil
	}
	var pv corev1.PersistentVolume
	if err := r.Reader.Get(ctx, types.NamespacedName{Name: pvc.Spec.VolumeName}, &pv); err != nil {
		vs.Protected = false
		if apierrors.IsNotFound(err) {
			return fmt.Sprintf("PV %s of PVC %s not found", pvc.Spec.VolumeName, pvcName), nil
		}
		return "", err
	}
	vs.PersistentVolumeName = pv.Name
	orig, remembered := pv.Annotations[replv1.OriginalReclaimPolicyAnnotation]
	if !remembered || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		p := map[string]any{
			"metadata": map[string]any{"resourceVersion": pv.ResourceVersion},
			"spec":     map[string]any{"persistentVolumeReclaimPolicy": corev1.PersistentVolumeReclaimRetain},
		}
		if !remembered {
			orig = string(pv.Spec.PersistentVolumeReclaimPolicy)
			p["metadata"].(map[string]any)["annotations"] = map[string]string{replv1.OriginalReclaimPolicyAnnotation: orig}
		}
		raw, _ := json.Marshal(p)
		if err := r.Client.Patch(ctx, &pv, client.RawPatch(types.MergePatchType, raw)); err != nil {
			return "", fmt.Errorf("setting PV %s to Retain: %w", pv.Name, err)
		}
		klog.FromContext(ctx).Info("Protected source PV", "pv", pv.Name, "originalReclaimPolicy", orig)
	}
	vs.OriginalReclaimPolicy = corev1.PersistentVolumeReclaimPolicy(orig)
	if !controllerutil.ContainsFinalizer(&pvc, replv1.PVCProtectionFinalizer) {
		patch := client.MergeFromWithOptions(pvc.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(&pvc, replv1.PVCProtectionFinalizer)
		if err := r.Client.Patch(ctx, &pvc, patch); err != nil {
			return "", fmt.Errorf("adding the protection finalizer to PVC %s: %w", pvcName, err)
		}
	}
	vs.Protected = true
	return "", nil
}

// markMovedOut labels the source PVCs moved-out once the hub compared both
// digests (spec.hubVerified): the app has left this cluster for good, so a
// migration back may reuse them. A sender's own verification is not enough:
// the hub may still find the digests differ and roll back.
func (r *Reconciler) markMovedOut(ctx context.Context, rs *replv1.ReplicationSource) error {
	rs.Status.MovedOut = false
	if !rs.Spec.HubVerified {
		return nil
	}
	for _, v := range rs.Spec.Volumes {
		var pvc corev1.PersistentVolumeClaim
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: rs.Namespace, Name: v.PVCName}, &pvc); apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return err
		}
		if err := r.setMovedOut(ctx, rs, &pvc, true); err != nil {
			return err
		}
	}
	rs.Status.MovedOut = true
	return nil
}

// setMovedOut sets or removes this migration's moved-out label on a PVC.
func (r *Reconciler) setMovedOut(ctx context.Context, rs *replv1.ReplicationSource, pvc *corev1.PersistentVolumeClaim, on bool) error {
	has := pvc.Labels[replv1.MovedOutLabel] == rs.Spec.MigrationID
	if has == on {
		return nil
	}
	var value any // nil removes the label
	if on {
		value = rs.Spec.MigrationID
	}
	raw, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{replv1.MovedOutLabel: value}}})
	if err := r.Client.Patch(ctx, pvc, client.RawPatch(types.MergePatchType, raw)); err != nil {
		return fmt.Errorf("labelling PVC %s moved-out=%v: %w", pvc.Name, on, err)
	}
	return nil
}

func (r *Reconciler) release(ctx context.Context, pvName string) error {
	var pv corev1.PersistentVolume
	if err := r.Reader.Get(ctx, types.NamespacedName{Name: pvName}, &pv); err != nil {
		return client.IgnoreNotFound(err)
	}
	orig, ok := pv.Annotations[replv1.OriginalReclaimPolicyAnnotation]
	if !ok {
		return nil
	}
	raw, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": pv.ResourceVersion, "annotations": map[string]any{replv1.OriginalReclaimPolicyAnnotation: nil}},
		"spec":     map[string]any{"persistentVolumeReclaimPolicy": orig},
	})
	if err := r.Client.Patch(ctx, &pv, client.RawPatch(types.MergePatchType, raw)); err != nil {
		return fmt.Errorf("restoring reclaim policy %s of PV %s: %w", orig, pvName, err)
	}
	klog.FromContext(ctx).Info("Released source PV", "pv", pvName, "reclaimPolicy", orig)
	return nil
}
