// Package source reconciles ReplicationSources: protect the app's volumes
// first (PV reclaim policy Retain, a finalizer on each PVC), then run a
// continuous sender per PVC next to the app's pod, and once the hub asks for
// the final sync and no pod but the movers uses the PVCs, tell that sender
// to finish; its verified digest is reported.
package source

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stateful-migration/stateful-migration/pkg/agent/hooks"
	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	"github.com/stateful-migration/stateful-migration/pkg/agent/report"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
)

// FinishSignal is the allowance for telling a running sender to finish:
// the annotation patch, the kubelet rewriting the downward API file, the
// sender's 50 ms poll (measured on kind: docs/e2e.md).
const FinishSignal = time.Second

// FailAfterRestarts: a mover that keeps failing this often is reported
// Failed (it keeps retrying; the hub decides whether to roll back).
const FailAfterRestarts = 5

// Reconciler reconciles ReplicationSources.
type Reconciler struct {
	Client   client.Client
	Reader   client.Reader // PVs, secrets: read uncached
	Logs     moverpod.LogSource
	Reporter *report.Reporter
	Image    string
	Poll     time.Duration
	Hooks    *hooks.Runner
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("replicationsource").
		For(&replv1.ReplicationSource{}).
		Owns(&corev1.Pod{}).
		// App pods come and go (their node, "no pod uses the PVC"); PVCs bind.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.forNamespace)).
		Watches(&corev1.PersistentVolumeClaim{}, handler.EnqueueRequestsFromMapFunc(r.forNamespace)).
		WatchesRawSource(r.Hooks.Source()).
		Complete(r)
}

func (r *Reconciler) forNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var list replv1.ReplicationSourceList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, s := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: s.Namespace, Name: s.Name}})
	}
	return reqs
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var rs replv1.ReplicationSource
	if err := r.Client.Get(ctx, req.NamespacedName, &rs); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !rs.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.cleanup(ctx, &rs)
	}
	if !controllerutil.ContainsFinalizer(&rs, replv1.Finalizer) {
		patch := client.MergeFromWithOptions(rs.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(&rs, replv1.Finalizer)
		if err := r.Client.Patch(ctx, &rs, patch); err != nil {
			return ctrl.Result{}, err
		}
	}
	old := rs.Status.DeepCopy()
	requeue, err := r.converge(ctx, &rs)
	if err == nil {
		err = r.markMovedOut(ctx, &rs)
	}
	if apierrors.IsForbidden(err) {
		// Typically the hub's RoleBinding smig-<id>-replicator has not
		// arrived (or was removed): say so and look again soon.
		rs.Status.LastError = fmt.Sprintf("not allowed in namespace %s (are the hub's RoleBindings smig-%[2]s-replicator to ClusterRole %[3]s and smig-%[2]s-tls-reader there?): %[4]v",
			rs.Namespace, rs.Spec.MigrationID, replv1.ReplicatorClusterRole, err)
		meta.SetStatusCondition(&rs.Status.Conditions, metav1.Condition{Type: replv1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: "Forbidden", Message: rs.Status.LastError})
		requeue, err = 2*time.Second, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	rs.Status.ObservedGeneration = rs.Generation
	if !equality.Semantic.DeepEqual(old, &rs.Status) {
		if err := r.Client.Status().Update(ctx, &rs); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err := r.Reporter.SyncSource(ctx, &rs, false); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

type appUse struct {
	pods        map[string]bool // pod names, any volume
	node        map[string]string
	tolerations map[string][]corev1.Toleration
	users       map[string]int
}

// appPods finds the pods, other than the movers, that mount the source PVCs
// and have not terminated. A pod being deleted still counts while any of its
// containers may run: it may write.
func (r *Reconciler) appPods(ctx context.Context, rs *replv1.ReplicationSource) (appUse, error) {
	u := appUse{pods: map[string]bool{}, node: map[string]string{}, tolerations: map[string][]corev1.Toleration{}, users: map[string]int{}}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(rs.Namespace)); err != nil {
		return u, err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if moverpod.IsMover(p) || moverpod.Terminated(p) || moverpod.Exited(p) {
			continue
		}
		for _, v := range rs.Spec.Volumes {
			if !moverpod.UsesPVC(p, v.PVCName) {
				continue
			}
			u.pods[p.Name] = true
			u.users[v.PVCName]++
			// Prefer a running pod's node; the first scheduled one otherwise.
			if p.Spec.NodeName != "" && (u.node[v.PVCName] == "" || p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp.IsZero()) {
				u.node[v.PVCName] = p.Spec.NodeName
				u.tolerations[v.PVCName] = p.Spec.Tolerations
			}
		}
	}
	return u, nil
}

func (r *Reconciler) converge(ctx context.Context, rs *replv1.ReplicationSource) (time.Duration, error) {
	st := &rs.Status
	prev := map[string]replv1.SourceVolumeStatus{}
	for _, v := range st.Volumes {
		prev[v.PVCName] = v
	}
	st.Volumes = nil
	st.LastError = ""
	var requeue time.Duration
	wait := func(d time.Duration) {
		if d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}
	note := func(msg string) {
		if msg != "" && st.LastError == "" {
			st.LastError = msg
		}
	}

	// 1. Protection, before anything else.
	protected := true
	vols := make([]replv1.SourceVolumeStatus, len(rs.Spec.Volumes))
	for i, v := range rs.Spec.Volumes {
		vs := prev[v.PVCName]
		vs.PVCName = v.PVCName
		msg, err := r.protect(ctx, rs, v.PVCName, &vs)
		if err != nil {
			return 0, err
		}
		if msg != "" {
			note(msg)
			wait(2 * time.Second)
		}
		protected = protected && vs.Protected
		vols[i] = vs
	}
	st.Protected = protected
	if protected {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: replv1.ConditionVolumesProtected, Status: metav1.ConditionTrue,
			Reason: "Protected", Message: "every source PV is Retain and every source PVC carries the protection finalizer"})
	} else {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: replv1.ConditionVolumesProtected, Status: metav1.ConditionFalse,
			Reason: "NotProtected", Message: st.LastError})
	}

	// 2. Who else uses the volumes.
	use, err := r.appPods(ctx, rs)
	if err != nil {
		return 0, err
	}
	st.PodsUsingVolumes = int32(len(use.pods))
	if len(use.pods) > 0 {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: replv1.ConditionVolumesInUse, Status: metav1.ConditionTrue,
			Reason: "AppPodsRunning", Message: fmt.Sprintf("%d pod(s) other than the movers mount the source PVCs", len(use.pods))})
	} else {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: replv1.ConditionVolumesInUse, Status: metav1.ConditionFalse,
			Reason: "NoAppPods", Message: "no pod other than the movers mounts the source PVCs"})
	}
	if !protected {
		st.Volumes = vols
		r.summarize(rs, nil)
		return requeue, nil
	}
	if h := rs.Spec.PreQuiesceHook; h != nil && !rs.Spec.FinalSync {
		wait(r.preQuiesce(ctx, rs, h))
	}

	// 3. Movers, per volume.
	final := rs.Spec.FinalSync && len(use.pods) == 0
	phases := make([]replv1.SourcePhase, len(vols))
	var throughput, estimate int64
	var lagSeconds float64
	for i, v := range rs.Spec.Volumes {
		vs := &vols[i]
		if vs.Digest != "" {
			phases[i] = replv1.SourceVerified
			// Done: make sure no mover of this volume is left.
			if _, err := r.deletePod(ctx, rs, moverpod.RoleSender, v.PVCName); err != nil {
				return 0, err
			}
			continue
		}
		dest := v.Destination
		if dest == "" && len(rs.Spec.Volumes) == 1 {
			dest = rs.Spec.Destination
		}
		if dest == "" {
			phases[i] = replv1.SourcePending
			note(fmt.Sprintf("waiting for the destination endpoint of PVC %s", v.PVCName))
			continue
		}
		if waiting, err := moverpod.WaitingForTLS(ctx, r.Reader, rs.Namespace, rs.Spec.TLSSecretName); err != nil {
			return 0, err
		} else if waiting != "" {
			phases[i] = replv1.SourcePending
			note(waiting)
			wait(2 * time.Second)
			continue
		}
		finish := ""
		if final {
			finish = finishValue(rs)
		}
		pod, err := r.ensureSender(ctx, rs, v.PVCName, dest, use.node[v.PVCName], use.tolerations[v.PVCName], finish, vs)
		if err != nil {
			return 0, err
		}
		if pod == nil {
			phases[i] = replv1.SourcePending
			if final {
				phases[i] = replv1.SourceFinalSync
			}
			wait(time.Second)
			continue
		}
		ms := moverpod.Read(ctx, r.Logs, pod)
		phases[i] = replv1.SourceInitialSync
		if p := ms.Progress; p != nil {
			vs.BytesTotal, vs.BytesCopied, vs.LagBytes = p.BytesTotal, p.BytesCopied, p.LagBytes
			throughput += int64(p.ThroughputBps)
			lagSeconds = math.Max(lagSeconds, p.LagSeconds)
			estimate = max(estimate, int64(math.Ceil(p.EstimatedFinalSeconds*1000))+FinishSignal.Milliseconds())
			if p.Phase == progress.Syncing || p.Phase == progress.FinalSync || p.Phase == progress.Verifying || p.Phase == progress.Completed {
				phases[i] = replv1.SourceSyncing
			}
		}
		if rs.Spec.FinalSync {
			phases[i] = replv1.SourceFinalSync
		}
		if p := ms.Progress; p != nil {
			vs.FinalSyncCold = vs.FinalSyncCold || (final && p.FinalSyncCold)
			vs.FinalPassFull = vs.FinalPassFull || (final && p.FinalPassFull)
			vs.UnseenChange = cmp.Or(p.UnseenChange, vs.UnseenChange)
		}
		if final && (pod.Status.Phase == corev1.PodSucceeded || moverpod.Finished(ms.Progress)) {
			if p := ms.Progress; p != nil && p.Verified && p.Digest != "" {
				vs.Digest = p.Digest
				phases[i] = replv1.SourceVerified
				continue
			}
			note(fmt.Sprintf("sender of %s finished but its digest could not be read from its log or termination message", v.PVCName))
		}
		if ms.LastError != "" {
			note(fmt.Sprintf("sender of %s: %s (restarts: %d)", v.PVCName, ms.LastError, ms.Restarts))
			if ms.Restarts >= FailAfterRestarts {
				phases[i] = replv1.SourceFailed
			}
		}
		if !final && rs.Spec.FinalSync && len(use.pods) > 0 {
			note(fmt.Sprintf("final sync waits for %d pod(s) to stop using the source PVCs", len(use.pods)))
		}
		if final {
			wait(moverpod.FinalPoll) // the app is down: report the digest at once
		}
		wait(r.Poll)
	}
	st.Volumes = vols
	st.Throughput = throughput
	st.EstimatedFinalSyncMillis = estimate
	st.LagSeconds = int64(math.Ceil(lagSeconds))
	r.summarize(rs, phases)
	return requeue, nil
}

// summarize sets the object's phase (its least advanced volume), totals,
// digest and Ready condition.
func (r *Reconciler) summarize(rs *replv1.ReplicationSource, phases []replv1.SourcePhase) {
	st := &rs.Status
	phase := replv1.SourceVerified
	if len(phases) == 0 {
		phase = replv1.SourcePending
	}
	for _, p := range phases {
		if uplink.SourceRank(p) < uplink.SourceRank(phase) {
			phase = p
		}
	}
	st.Phase = phase
	st.BytesTotal, st.BytesCopied, st.LagBytes = 0, 0, 0
	st.FinalSyncCold, st.FinalPassFull, st.UnseenChange = false, false, ""
	digests := map[string]string{}
	for i := range st.Volumes {
		v := &st.Volumes[i]
		if i < len(phases) {
			v.Phase = phases[i]
		}
		st.BytesTotal += v.BytesTotal
		st.BytesCopied += v.BytesCopied
		st.LagBytes += v.LagBytes
		st.FinalSyncCold = st.FinalSyncCold || v.FinalSyncCold
		st.FinalPassFull = st.FinalPassFull || v.FinalPassFull
		st.UnseenChange = cmp.Or(st.UnseenChange, v.UnseenChange)
		digests[rs.Namespace+"/"+v.PVCName] = v.Digest
	}
	st.Digest = ""
	if phase == replv1.SourceVerified {
		st.Digest = uplink.CombineDigests(digests)
		st.LagBytes, st.LagSeconds, st.Throughput, st.EstimatedFinalSyncMillis = 0, 0, 0, 0
	}
	c := metav1.Condition{Type: replv1.ConditionReady, Status: metav1.ConditionTrue, Reason: string(phase), Message: "replicating"}
	switch {
	case phase == replv1.SourceFailed:
		c.Status, c.Message = metav1.ConditionFalse, st.LastError
	case phase == replv1.SourceVerified:
		c.Message = "final sync verified"
	case st.LastError != "":
		c.Message = st.LastError
	}
	meta.SetStatusCondition(&st.Conditions, c)
}

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
		log.FromContext(ctx).Info("Protected source PV", "pv", pv.Name, "originalReclaimPolicy", orig)
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
			log.FromContext(ctx).Info("Replacing sender", "pod", pod.Name, "node", vs.Node, "appNode", node, "phase", pod.Status.Phase)
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
		log.FromContext(ctx).Info("Started a sender for the final sync: the earlier one is gone, this one rescans the whole volume",
			"pod", want.Name, "pvc", pvcName)
	}
	vs.Node = node
	return nil, nil
}

// finishSender asks a running sender to finish, once; a sender whose pod
// failed (evicted, node lost) is replaced.
func (r *Reconciler) finishSender(ctx context.Context, pod *corev1.Pod, finish string) (*corev1.Pod, error) {
	if pod.Status.Phase == corev1.PodFailed {
		log.FromContext(ctx).Info("Replacing failed sender", "pod", pod.Name, "reason", pod.Status.Reason)
		return nil, client.IgnoreNotFound(r.Client.Delete(ctx, pod))
	}
	if pod.Annotations[replv1.FinishAnnotation] != "" {
		return pod, nil
	}
	raw, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{replv1.FinishAnnotation: finish}}})
	if err := r.Client.Patch(ctx, pod, client.RawPatch(types.MergePatchType, raw)); err != nil {
		return nil, fmt.Errorf("asking sender %s to finish: %w", pod.Name, err)
	}
	log.FromContext(ctx).Info("Asked the running sender to finish", "pod", pod.Name)
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

// cleanup removes the movers and the PVC finalizers. The PV keeps Retain
// unless spec.releaseSource asks to restore its original policy (restored
// before the finalizer goes, so a Delete policy then applies).
func (r *Reconciler) cleanup(ctx context.Context, rs *replv1.ReplicationSource) error {
	r.Hooks.Forget(rs.UID)
	if !controllerutil.ContainsFinalizer(rs, replv1.Finalizer) {
		return nil
	}
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
	if err := r.Reporter.SyncSource(ctx, rs, true); err != nil {
		return err
	}
	moverpod.Forget(rs.Namespace, rs.Spec.MigrationID)
	patch := client.MergeFromWithOptions(rs.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(rs, replv1.Finalizer)
	return client.IgnoreNotFound(r.Client.Patch(ctx, rs, patch))
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
	log.FromContext(ctx).Info("Released source PV", "pv", pvName, "reclaimPolicy", orig)
	return nil
}
