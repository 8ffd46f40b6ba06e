package source

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// cleanup removes the movers and the PVC finalizers. The PV keeps Retain
// unless spec.releaseSource asks to restore its original policy (restored
// before the finalizer goes, so a Delete policy then applies).
func (r *Reconciler) cleanup(ctx context.Context, rs *replv1.ReplicationSource) error {
	r.Hooks.Forget(rs.UID)
	for _, v := range rs.Spec.Volumes {
		if _, err := r.deletePod(ctx, rs, moverpod.RoleSender, v.PVCName); err != nil {
			return err
		}
		var pvc corev1.PersistentVolumeClaim
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: rs.Namespace, Name: v.PVCName}, &pvc)
		if apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return err
		}
		if !rs.Spec.HubVerified {
			// Rolled back or failed: the app stays here, its PVC is live.
			if err := r.setMovedOut(ctx, rs, &pvc, false); err != nil {
				return err
			}
		}
		if rs.Spec.ReleaseSource && pvc.Spec.VolumeName != "" {
			if err := r.release(ctx, pvc.Spec.VolumeName); err != nil {
				return err
			}
		}
		if controllerutil.ContainsFinalizer(&pvc, replv1.PVCProtectionFinalizer) {
			patch := client.MergeFromWithOptions(pvc.DeepCopy(), client.MergeFromWithOptimisticLock{})
			controllerutil.RemoveFinalizer(&pvc, replv1.PVCProtectionFinalizer)
			if err := r.Client.Patch(ctx, &pvc, patch); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
	}
	return nil
}

// withdraw takes the source out of the uplink and forgets its movers' progress.
func (r *Reconciler) withdraw(ctx context.Context, rs *replv1.ReplicationSource) error {
	moverpod.Forget(rs.Namespace, rs.Spec.MigrationID)
	return r.Reporter.SyncSource(ctx, rs, true)
}
