package destination

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// cleanup removes receivers and Services (the PVCs stay: they hold the app's
// data), hands verified PVCs to the app, withdraws the hub condition, then
// lets the object go.
func (r *Reconciler) cleanup(ctx context.Context, rd *replv1.ReplicationDestination) error {
	r.Hooks.Forget(rd.UID)
	if !controllerutil.ContainsFinalizer(rd, replv1.Finalizer) {
		return nil
	}
	for _, v := range rd.Spec.Volumes {
		if err := r.removeReceiver(ctx, rd, v.PVCName); err != nil {
			return err
		}
	}
	if rd.Spec.HubVerified {
		if err := r.handOver(ctx, rd); err != nil {
			return err
		}
	}
	if err := r.Reporter.SyncDestination(ctx, rd, true); err != nil {
		return err
	}
	moverpod.Forget(rd.Namespace, rd.Spec.MigrationID)
	patch := client.MergeFromWithOptions(rd.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(rd, replv1.Finalizer)
	return client.IgnoreNotFound(r.Client.Patch(ctx, rd, patch))
}
