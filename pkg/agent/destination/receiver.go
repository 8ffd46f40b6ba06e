package destination

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

func (r *Reconciler) ensureReceiver(ctx context.Context, rd *replv1.ReplicationDestination, v replv1.DestinationVolume) (*corev1.Pod, error) {
	name := moverpod.PodName(rd.Spec.MigrationID, moverpod.RoleReceiver, v.PVCName)
	block := ptr.Deref(v.VolumeMode, corev1.PersistentVolumeFilesystem) == corev1.PersistentVolumeBlock
	args := moverpod.ReceiverArgs(block, rd.Namespace+"/"+v.PVCName, standbyPoints(&rd.Spec))
	var pod corev1.Pod
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: rd.Namespace, Name: name}, &pod)
	if err == nil {
		if c := pod.Spec.Containers[0].Args; rd.Spec.Standby && pod.DeletionTimestamp.IsZero() && (len(c) < 2 || !slices.Equal(c[2:], args)) {
			// The policy's points changed: a standby's receiver restarts
			// with them (rolling back a pass it was in, as after a crash).
			klog.FromContext(ctx).Info("Restarting standby receiver with new points", "pod", name, "args", args)
			return nil, client.IgnoreNotFound(r.Client.Delete(ctx, &pod))
		}
		if pod.Status.Phase == corev1.PodFailed && pod.DeletionTimestamp.IsZero() {
			// Evicted or its node lost: the receiver resumes from what is on
			// the volume, so a fresh pod carries on.
			klog.FromContext(ctx).Info("Replacing failed receiver", "pod", name, "reason", pod.Status.Reason)
			return nil, client.IgnoreNotFound(r.Client.Delete(ctx, &pod))
		}
		if !pod.DeletionTimestamp.IsZero() {
			return nil, nil
		}
		return &pod, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, err
	}
	return nil, r.createMover(ctx, rd, v, moverpod.PodSpec{Name: name, Role: moverpod.RoleReceiver, Block: block, Args: args})
}

// standbyPoints is how a standby's receivers keep points (nil: not one).
func standbyPoints(spec *replv1.ReplicationDestinationSpec) *moverpod.Points {
	if !spec.Standby {
		return nil
	}
	p := &moverpod.Points{Exact: spec.ExactPoints}
	if spec.PerFileAfter != nil {
		p.PerFileAfter = spec.PerFileAfter.Duration
	}
	return p
}

// createMover creates a mover pod of rd for volume v; s names its role, name
// and arguments, the rest comes from rd.
func (r *Reconciler) createMover(ctx context.Context, rd *replv1.ReplicationDestination, v replv1.DestinationVolume, s moverpod.PodSpec) error {
	s.Namespace, s.MigrationID, s.PVCName, s.TLSSecret = rd.Namespace, rd.Spec.MigrationID, v.PVCName, rd.Spec.TLSSecretName
	s.Image, s.Resources, s.Capacity = rd.Spec.MoverImage, rd.Spec.MoverResources, v.Capacity
	if s.Image == "" {
		s.Image = r.Image
	}
	want := moverpod.Pod(s)
	if err := controllerutil.SetControllerReference(rd, want, r.Client.Scheme()); err != nil {
		return err
	}
	if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s pod %s/%s: %w", s.Role, rd.Namespace, s.Name, err)
	}
	return nil
}

func (r *Reconciler) removeReceiver(ctx context.Context, rd *replv1.ReplicationDestination, pvcName string) error {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: rd.Namespace, Name: moverpod.PodName(rd.Spec.MigrationID, moverpod.RoleReceiver, pvcName)}}
	if err := r.Client.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
		return err
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: rd.Namespace, Name: moverpod.ServiceName(rd.Spec.MigrationID, pvcName)}}
	return client.IgnoreNotFound(r.Client.Delete(ctx, svc))
}
