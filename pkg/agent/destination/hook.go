package destination

import (
	"context"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/agent/hooks"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// postLaunchRetry is how soon a failed post-launch check runs again: the app
// may still be recovering (a database replaying its log).
const postLaunchRetry = 3 * time.Second

// postLaunch runs the post-launch check in the app's Ready pods until it
// succeeds; the hub completes the migration only then.
func (r *Reconciler) postLaunch(ctx context.Context, rd *replv1.ReplicationDestination, h *replv1.Hook) time.Duration {
	var pvcs []string
	for _, v := range rd.Spec.Volumes {
		pvcs = append(pvcs, v.PVCName)
	}
	return r.Hooks.Step(rd, h, hooks.In(ctx, r.Client, rd.Namespace, pvcs, h, true), &rd.Status.PostLaunchHook, postLaunchRetry, time.Now())
}
