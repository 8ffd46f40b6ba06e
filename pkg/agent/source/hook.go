package source

import (
	"context"
	"time"

	"github.com/stateful-migration/stateful-migration/pkg/agent/hooks"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// preQuiesce runs the pre-quiesce hook once in the app's running pods; a
// failure is final (the hub fails the attempt, the app stays here).
func (r *Reconciler) preQuiesce(ctx context.Context, rs *replv1.ReplicationSource, h *replv1.Hook) time.Duration {
	var pvcs []string
	for _, v := range rs.Spec.Volumes {
		pvcs = append(pvcs, v.PVCName)
	}
	return r.Hooks.Step(rs, h, hooks.In(ctx, r.Client, rs.Namespace, pvcs, h, false), &rs.Status.PreQuiesceHook, 0, time.Now())
}
