package destination

import (
	"context"

	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// cleanup removes receivers and Services (the PVCs stay: they hold the app's
// data) and hands verified PVCs to the app.
func (r *Reconciler) cleanup(ctx context.Context, rd *replv1.ReplicationDestination) error {
	r.Hooks.Forget(rd.UID)
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
	return nil
}

// withdraw takes the destination out of the uplink and forgets its movers' progress.
func (r *Reconciler) withdraw(ctx context.Context, rd *replv1.ReplicationDestination) error {
	moverpod.Forget(rd.Namespace, rd.Spec.MigrationID)
	return r.Reporter.SyncDestination(ctx, rd, true)
}
