package destination

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// promote readies a standby's volume for the app (spec.promote, a
// failover): the receiver stops first, since it writes the volume; then a
// promote pod rolls the volume back to its last committed point, rereads
// it against the point's digest and removes the undo log. That digest
// becomes the volume's, as a verified final sync's would.
func (r *Reconciler) promote(ctx context.Context, rd *replv1.ReplicationDestination, v replv1.DestinationVolume,
	vs *replv1.DestinationVolumeStatus) (string, bool, time.Duration, error) {
	if ptr.Deref(v.VolumeMode, corev1.PersistentVolumeFilesystem) == corev1.PersistentVolumeBlock {
		return fmt.Sprintf("PVC %s is a block volume: a standby keeps points in time for filesystem volumes only", v.PVCName), true, 0, nil
	}
	if err := r.removeReceiver(ctx, rd, v.PVCName); err != nil {
		return "", false, 0, err
	}
	var recv corev1.Pod
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: rd.Namespace, Name: moverpod.PodName(rd.Spec.MigrationID, moverpod.RoleReceiver, v.PVCName)}, &recv)
	switch {
	case err == nil:
		return fmt.Sprintf("promoting: waiting for the receiver of %s to stop", v.PVCName), false, time.Second, nil
	case !apierrors.IsNotFound(err):
		return "", false, 0, err
	}
	pod, err := r.ensurePromote(ctx, rd, v)
	if err != nil || pod == nil {
		return fmt.Sprintf("promoting: starting the promote pod of %s", v.PVCName), false, time.Second, err
	}
	ms := moverpod.Read(ctx, r.Logs, pod)
	if p := ms.Progress; p != nil && p.Point != nil {
		vs.Point = &replv1.VolumePoint{Time: metav1.NewTime(p.Point.Time), Digest: p.Point.Digest, Exact: p.Point.Exact}
	}
	switch {
	case moverpod.Finished(ms.Progress):
		vs.Phase, vs.Digest = replv1.DestinationVerified, ms.Progress.Digest
		return "", false, 0, nil
	case pod.Status.Phase == corev1.PodFailed:
		why := ms.LastError
		if why == "" {
			why = "the promote pod failed"
		}
		return fmt.Sprintf("promoting %s: %s", v.PVCName, why), true, 0, nil
	}
	vs.Phase = replv1.DestinationReceiving
	return fmt.Sprintf("promoting %s: rolling back to its last point and checking it", v.PVCName), false, r.Poll, nil
}

// ensurePromote returns the volume's promote pod, creating it if needed
// (nil until it exists).
func (r *Reconciler) ensurePromote(ctx context.Context, rd *replv1.ReplicationDestination, v replv1.DestinationVolume) (*corev1.Pod, error) {
	name := moverpod.PodName(rd.Spec.MigrationID, moverpod.RolePromote, v.PVCName)
	var pod corev1.Pod
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: rd.Namespace, Name: name}, &pod)
	if err == nil {
		return &pod, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, err
	}
	return nil, r.createMover(ctx, rd, v, moverpod.PodSpec{Name: name, Role: moverpod.RolePromote, Args: moverpod.PromoteArgs()})
}
