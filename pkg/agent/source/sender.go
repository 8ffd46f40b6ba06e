package source

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

func (r *Reconciler) image(rs *replv1.ReplicationSource) string {
	if rs.Spec.MoverImage != "" {
		return rs.Spec.MoverImage
	}
	return r.Image
}

// volume returns whether the PVC is a block volume, and its size.
func (r *Reconciler) volume(ctx context.Context, rs *replv1.ReplicationSource, pvcName string) (bool, resource.Quantity, error) {
	var pvc corev1.PersistentVolumeClaim
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: rs.Namespace, Name: pvcName}, &pvc); err != nil {
		return false, resource.Quantity{}, err
	}
	size, ok := pvc.Status.Capacity[corev1.ResourceStorage]
	if !ok {
		size = pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	}
	return pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock, size, nil
}

func serverName(rs *replv1.ReplicationSource) string {
	if rs.Spec.ServerName != "" {
		return rs.Spec.ServerName
	}
	return replv1.DefaultServerName
}

// getPod returns the live mover pod, or nil if absent or being deleted
// (gone reports whether it is absent).
func (r *Reconciler) getPod(ctx context.Context, rs *replv1.ReplicationSource, role, pvcName string) (*corev1.Pod, bool, error) {
	var pod corev1.Pod
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: rs.Namespace, Name: moverpod.PodName(rs.Spec.MigrationID, role, pvcName)}, &pod)
	if apierrors.IsNotFound(err) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if !pod.DeletionTimestamp.IsZero() {
		return nil, false, nil
	}
	return &pod, false, nil
}

// deletePod deletes a mover pod and reports whether it is gone already.
func (r *Reconciler) deletePod(ctx context.Context, rs *replv1.ReplicationSource, role, pvcName string) (bool, error) {
	pod, gone, err := r.getPod(ctx, rs, role, pvcName)
	if err != nil || gone {
		return gone, err
	}
	if pod != nil {
		if err := r.Client.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
			return false, err
		}
	}
	return false, nil
}

// ensureSender keeps the continuous sender of pvcName running on the app
// pod's node (an RWO volume is attached there), or anywhere if no app pod
// runs. A sender left on another node than the app's (app rescheduled) is
// replaced, so that it never holds an RWO volume away from the app.
//
// With finish set (final sync asked, no app pod left) the running sender is
// told to finish by its FinishAnnotation: it has tracked every change since
// the initial copy, so the final sync costs what changed since its last
// pass. A sender that is gone by then is started with the annotation set; it
// finishes once it has caught up (a cold final sync, which it reports).
func (r *Reconciler) ensureSender(ctx context.Context, rs *replv1.ReplicationSource, pvcName, dest, node string, tolerations []corev1.Toleration, finish string, vs *replv1.SourceVolumeStatus) (*corev1.Pod, error) {
	pod, gone, err := r.getPod(ctx, rs, moverpod.RoleSender, pvcName)
	if err != nil {
		return nil, err
	}
	if pod != nil {
		vs.Node = moverpod.PinnedNode(pod)
		if pod.Spec.NodeName != "" {
			vs.Node = pod.Spec.NodeName
		}
		if finish != "" {
			return r.finishSender(ctx, pod, finish)
		}
		stale := node != "" && vs.Node != node
		if !stale && !senderArgsMatch(pod, dest) {
			stale = true
		}
		if stale || pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
			klog.FromContext(ctx).Info("Replacing sender", "pod", pod.Name, "node", vs.Node, "appNode", node, "phase", pod.Status.Phase)
			return nil, client.IgnoreNotFound(r.Client.Delete(ctx, pod))
		}
		return pod, nil
	}
	if !gone {
		return nil, nil // the old one is still terminating
	}
	block, size, err := r.volume(ctx, rs, pvcName)
	if err != nil {
		return nil, err
	}
	want := moverpod.Pod(moverpod.PodSpec{
		Namespace: rs.Namespace, Name: moverpod.PodName(rs.Spec.MigrationID, moverpod.RoleSender, pvcName),
		Image: r.image(rs), MigrationID: rs.Spec.MigrationID, Role: moverpod.RoleSender, PVCName: pvcName,
		Block: block, TLSSecret: rs.Spec.TLSSecretName, Node: node, Tolerations: tolerations, Finish: finish,
		Resources: rs.Spec.MoverResources, Capacity: size,
		Args: moverpod.SenderArgs(block, rs.Namespace+"/"+pvcName, dest, serverName(rs), rs.Spec.Compress, rs.Spec.FullVerify, rs.Spec.BandwidthLimit),
	})
	if err := controllerutil.SetControllerReference(rs, want, r.Client.Scheme()); err != nil {
		return nil, err
	}
	if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating sender pod %s/%s: %w", rs.Namespace, want.Name, err)
	}
	if finish != "" {
		klog.FromContext(ctx).Info("Started a sender for the final sync: the earlier one is gone, this one rescans the whole volume",
			"pod", want.Name, "pvc", pvcName)
	}
	vs.Node = node
	return nil, nil
}

// finishSender asks a running sender to finish, once; a sender whose pod
// failed (evicted, node lost) is replaced.
func (r *Reconciler) finishSender(ctx context.Context, pod *corev1.Pod, finish string) (*corev1.Pod, error) {
	if pod.Status.Phase == corev1.PodFailed {
		klog.FromContext(ctx).Info("Replacing failed sender", "pod", pod.Name, "reason", pod.Status.Reason)
		return nil, client.IgnoreNotFound(r.Client.Delete(ctx, pod))
	}
	if pod.Annotations[replv1.FinishAnnotation] != "" {
		return pod, nil
	}
	raw, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{replv1.FinishAnnotation: finish}}})
	if err := r.Client.Patch(ctx, pod, client.RawPatch(types.MergePatchType, raw)); err != nil {
		return nil, fmt.Errorf("asking sender %s to finish: %w", pod.Name, err)
	}
	klog.FromContext(ctx).Info("Asked the running sender to finish", "pod", pod.Name)
	return pod, nil
}

func senderArgsMatch(pod *corev1.Pod, dest string) bool {
	args := pod.Spec.Containers[0].Args
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--to" {
			return args[i+1] == dest
		}
	}
	return false
}

// finishValue is what the FinishAnnotation says: the hub's quiesce start,
// from which the sender rereads every changed file.
func finishValue(rs *replv1.ReplicationSource) string {
	if rs.Spec.QuiesceStartTime != nil {
		return rs.Spec.QuiesceStartTime.UTC().Format(time.RFC3339Nano)
	}
	return "finish"
}
