// Package destination reconciles ReplicationDestinations: the app's PVCs
// created ahead of the app, one receiver pod and Service per PVC, the
// endpoint and, after the final sync, the verified digest.
package destination

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
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

// Reconciler reconciles ReplicationDestinations.
type Reconciler struct {
	// Client reads pods and PVCs from the cache and writes.
	Client client.Client
	// Reader reads what the agent does not cache (services, secrets,
	// storage classes) straight from the API server with namespaced rights.
	Reader   client.Reader
	Logs     moverpod.LogSource
	Reporter *report.Reporter
	// Image is the mover image unless the spec names one (the agent's image).
	Image string
	// Poll is how often running receivers' progress is read.
	Poll time.Duration
	// Hooks runs the post-launch check.
	Hooks *hooks.Runner
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("replicationdestination").
		For(&replv1.ReplicationDestination{}).
		Owns(&corev1.Pod{}).
		// The app's pods: once the data is verified, their readiness is
		// what the hub waits for.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.forNamespace)).
		Watches(&corev1.PersistentVolumeClaim{}, handler.EnqueueRequestsFromMapFunc(r.forNamespace)).
		WatchesRawSource(r.Hooks.Source()).
		Complete(r)
}

func (r *Reconciler) forNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var list replv1.ReplicationDestinationList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, d := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: d.Namespace, Name: d.Name}})
	}
	return reqs
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var rd replv1.ReplicationDestination
	if err := r.Client.Get(ctx, req.NamespacedName, &rd); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !rd.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.cleanup(ctx, &rd)
	}
	if !controllerutil.ContainsFinalizer(&rd, replv1.Finalizer) {
		patch := client.MergeFromWithOptions(rd.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(&rd, replv1.Finalizer)
		if err := r.Client.Patch(ctx, &rd, patch); err != nil {
			return ctrl.Result{}, err
		}
	}

	old := rd.Status.DeepCopy()
	requeue, err := r.converge(ctx, &rd)
	if err == nil {
		err = r.appReadiness(ctx, &rd)
	}
	if h := rd.Spec.PostLaunchHook; err == nil && h != nil && rd.Status.AppReady {
		if d := r.postLaunch(ctx, &rd, h); d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}
	if apierrors.IsForbidden(err) {
		// Typically the hub's RoleBinding smig-<id>-replicator has not
		// arrived (or was removed): say so and look again soon.
		rd.Status.LastError = fmt.Sprintf("not allowed in namespace %s (are the hub's RoleBindings smig-%[2]s-replicator to ClusterRole %[3]s and smig-%[2]s-tls-reader there?): %[4]v",
			rd.Namespace, rd.Spec.MigrationID, replv1.ReplicatorClusterRole, err)
		meta.SetStatusCondition(&rd.Status.Conditions, metav1.Condition{Type: replv1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: "Forbidden", Message: rd.Status.LastError})
		requeue, err = 2*time.Second, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	rd.Status.ObservedGeneration = rd.Generation
	if !equality.Semantic.DeepEqual(old, &rd.Status) {
		if err := r.Client.Status().Update(ctx, &rd); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err := r.Reporter.SyncDestination(ctx, &rd, false); err != nil {
		return ctrl.Result{}, err
	}
	// Verified volumes: the digest is recorded, the receiver and its
	// Service have done their job.
	for _, v := range rd.Status.Volumes {
		if v.Digest != "" {
			if err := r.removeReceiver(ctx, &rd, v.PVCName); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// converge walks the steps for every volume and sets rd.Status; it returns
// how soon to look again (0: only on events).
func (r *Reconciler) converge(ctx context.Context, rd *replv1.ReplicationDestination) (time.Duration, error) {
	st := &rd.Status
	prev := map[string]replv1.DestinationVolumeStatus{}
	for _, v := range st.Volumes {
		prev[v.PVCName] = v
	}
	st.Volumes = nil
	st.LastError = ""
	st.BytesReceived = 0
	var requeue time.Duration
	wait := func(d time.Duration) {
		if requeue == 0 || d < requeue {
			requeue = d
		}
	}
	var failed, preparing, receiving, verified int
	var failure string
	for _, v := range rd.Spec.Volumes {
		vs := replv1.DestinationVolumeStatus{PVCName: v.PVCName, Phase: replv1.DestinationPreparing}
		if p := prev[v.PVCName]; p.Digest != "" {
			// Verified is final: the receiver is gone, the digest stays.
			vs = p
			st.Volumes = append(st.Volumes, vs)
			st.BytesReceived += vs.BytesReceived
			verified++
			continue
		}
		msg, fatal, d, err := r.volume(ctx, rd, v, &vs)
		if err != nil {
			return 0, err
		}
		if d > 0 {
			wait(d)
		}
		switch {
		case fatal:
			vs.Phase = replv1.DestinationFailed
			failed++
			if failure == "" {
				failure = msg
			}
		case msg != "" && st.LastError == "":
			st.LastError = msg
		}
		switch vs.Phase {
		case replv1.DestinationPreparing:
			preparing++
		case replv1.DestinationReceiving:
			receiving++
		case replv1.DestinationVerified:
			verified++
		}
		st.BytesReceived += vs.BytesReceived
		st.Volumes = append(st.Volumes, vs)
	}
	st.Endpoint = ""
	if len(st.Volumes) > 0 {
		st.Endpoint = st.Volumes[0].Endpoint
	}
	cond := metav1.Condition{Type: replv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Progressing", Message: "receivers are being prepared or are receiving"}
	switch {
	case failed > 0:
		st.Phase = replv1.DestinationFailed
		st.LastError = failure
		cond = metav1.Condition{Type: replv1.ConditionReady, Status: metav1.ConditionFalse, Reason: "Failed", Message: failure}
	case verified == len(rd.Spec.Volumes):
		st.Phase = replv1.DestinationVerified
		digests := map[string]string{}
		for _, v := range st.Volumes {
			digests[rd.Namespace+"/"+v.PVCName] = v.Digest
		}
		st.Digest = uplink.CombineDigests(digests)
		cond.Reason, cond.Message = "Verified", "every volume passed the final sync's verification"
	case preparing > 0:
		st.Phase = replv1.DestinationPreparing
		if st.LastError != "" {
			cond.Message = st.LastError
		}
	case receiving > 0 || verified > 0:
		st.Phase = replv1.DestinationReceiving
	default:
		st.Phase = replv1.DestinationReady
		cond.Reason, cond.Message = "Ready", "every receiver is listening at its endpoint"
	}
	if st.Phase != replv1.DestinationVerified {
		st.Digest = ""
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	return requeue, nil
}

// volume converges one volume: class check, PVC, TLS secret, Service,
// receiver pod, endpoint, progress. It returns a message (a wait reason or,
// when fatal, a failure) and how soon to poll again.
func (r *Reconciler) volume(ctx context.Context, rd *replv1.ReplicationDestination, v replv1.DestinationVolume, vs *replv1.DestinationVolumeStatus) (string, bool, time.Duration, error) {
	ns, id := rd.Namespace, rd.Spec.MigrationID

	// 1. PVC, created ahead of the app (never deleted by the agent).
	var pvc corev1.PersistentVolumeClaim
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: v.PVCName}, &pvc)
	switch {
	case apierrors.IsNotFound(err):
		if v.StorageClassName != nil && *v.StorageClassName != "" {
			var sc storagev1.StorageClass
			if err := r.Reader.Get(ctx, types.NamespacedName{Name: *v.StorageClassName}, &sc); apierrors.IsNotFound(err) {
				return fmt.Sprintf("StorageClass %q does not exist on this cluster: map the source class of PVC %s to an existing class in the MigrationPolicy",
					*v.StorageClassName, v.PVCName), true, 0, nil
			} else if err != nil {
				return "", false, 0, err
			}
		}
		if err := r.Client.Create(ctx, NewPVC(rd, v)); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", false, 0, fmt.Errorf("creating PVC %s/%s: %w", ns, v.PVCName, err)
		}
		return fmt.Sprintf("creating PVC %s", v.PVCName), false, time.Second, nil
	case err != nil:
		return "", false, 0, err
	case pvc.Labels[replv1.MigrationIDLabel] != id:
		if refused, err := r.adopt(ctx, rd, v, &pvc); err != nil || refused != "" {
			return refused, refused != "", 0, err
		}
		return fmt.Sprintf("reusing PVC %s, left here by an earlier migration: only what changed since is copied", v.PVCName), false, time.Second, nil
	}

	// 2. The migration's TLS Secret (delivered by the hub's ManifestWork).
	if waiting, err := moverpod.WaitingForTLS(ctx, r.Reader, ns, rd.Spec.TLSSecretName); err != nil || waiting != "" {
		return waiting, false, 2 * time.Second, err
	}

	if rd.Spec.Promote { // failover: no more receiving
		return r.promote(ctx, rd, v, vs)
	}

	// 3. Service exposing the receiver.
	svc, err := r.ensureService(ctx, rd, v.PVCName)
	if err != nil {
		return "", false, 0, err
	}

	// 4. Receiver pod.
	pod, err := r.ensureReceiver(ctx, rd, v)
	if err != nil || pod == nil {
		return "waiting for the receiver pod", false, time.Second, err
	}

	// 5. Endpoint.
	vs.Endpoint = Endpoint(svc, pod)

	// 6. Progress.
	ms := moverpod.Read(ctx, r.Logs, pod)
	if p := ms.Progress; p != nil {
		vs.BytesReceived = p.BytesCopied
		if p.Point != nil {
			vs.Point = &replv1.VolumePoint{Time: metav1.NewTime(p.Point.Time), Digest: p.Point.Digest, Exact: p.Point.Exact}
		}
	}
	poll := r.Poll
	if rd.Spec.FinalSync {
		poll = moverpod.FinalPoll // the app is down until the hub has both digests
	}
	switch {
	case pod.Status.Phase == corev1.PodSucceeded || moverpod.Finished(ms.Progress):
		if ms.Progress != nil && ms.Progress.Verified && ms.Progress.Digest != "" {
			vs.Phase, vs.Digest = replv1.DestinationVerified, ms.Progress.Digest
			return "", false, 0, nil
		}
		vs.Phase = replv1.DestinationReceiving
		return fmt.Sprintf("receiver for %s finished but its digest could not be read from its log or termination message", v.PVCName), false, 5 * time.Second, nil
	case vs.Endpoint == "":
		msg := "waiting for the receiver endpoint"
		if rd.Spec.EndpointType == replv1.EndpointLoadBalancer {
			msg = fmt.Sprintf("waiting for a load balancer address on Service %s", svc.Name)
		}
		return msg, false, 2 * time.Second, nil
	case pod.Status.Phase != corev1.PodRunning:
		return fmt.Sprintf("receiver pod %s is %s", pod.Name, pod.Status.Phase), false, 0, nil
	case ms.Progress != nil && (ms.Progress.Phase == progress.Receiving || ms.Progress.BytesCopied > 0):
		vs.Phase = replv1.DestinationReceiving
	default:
		vs.Phase = replv1.DestinationReady
	}
	if ms.LastError != "" {
		return fmt.Sprintf("receiver for %s: %s (restarts: %d)", v.PVCName, ms.LastError, ms.Restarts), false, poll, nil
	}
	return "", false, poll, nil
}

// adopt takes over an existing PVC of the app's name when nothing uses it
// and it is either one an earlier migration moved the app's data away from
// (MovedOutLabel: a move back copies only what changed) or a leftover of a
// destination that was removed before the hub verified it (a failed or
// rolled-back migration: its partial copy is resumed). It returns why it
// refuses, or "".
func (r *Reconciler) adopt(ctx context.Context, rd *replv1.ReplicationDestination, v replv1.DestinationVolume, pvc *corev1.PersistentVolumeClaim) (string, error) {
	ref := fmt.Sprintf("PVC %s/%s already exists", pvc.Namespace, pvc.Name)
	earlier := pvc.Labels[replv1.MigrationIDLabel]
	active, err := r.destinationExists(ctx, pvc.Namespace, earlier)
	if err != nil {
		return "", err
	}
	switch {
	case active:
		return fmt.Sprintf("%s and migration %s is still writing into it: wait for it to end", ref, earlier), nil
	case pvc.Labels[replv1.MovedOutLabel] == "" && earlier == "":
		return ref + " and holds no data an earlier migration moved away: refusing to write into it (delete it, or move the app elsewhere)", nil
	case !pvc.DeletionTimestamp.IsZero():
		return ref + " and is being deleted: wait until it is gone", nil
	case ptr.Deref(pvc.Spec.VolumeMode, corev1.PersistentVolumeFilesystem) != ptr.Deref(v.VolumeMode, corev1.PersistentVolumeFilesystem):
		return ref + " with another volume mode than the source's: delete it", nil
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if c, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok && c.Cmp(size) > 0 {
		size = c
	}
	if size.Cmp(v.Capacity) < 0 {
		return fmt.Sprintf("%s and is smaller (%s) than the source volume (%s): delete it", ref, size.String(), v.Capacity.String()), nil
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(pvc.Namespace)); err != nil {
		return "", err
	}
	for i := range pods.Items {
		if p := &pods.Items[i]; !moverpod.Terminated(p) && moverpod.UsesPVC(p, pvc.Name) {
			return fmt.Sprintf("%s and pod %s uses it: refusing to write into it", ref, p.Name), nil
		}
	}
	log.FromContext(ctx).Info("Reusing a PVC an earlier migration left", "pvc", pvc.Name,
		"movedOutBy", pvc.Labels[replv1.MovedOutLabel], "leftBy", pvc.Labels[replv1.MigrationIDLabel])
	raw, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": pvc.ResourceVersion,
		"labels":          map[string]any{replv1.MigrationIDLabel: rd.Spec.MigrationID, replv1.MovedOutLabel: nil},
	}})
	if err := r.Client.Patch(ctx, pvc, client.RawPatch(types.MergePatchType, raw)); err != nil {
		return "", fmt.Errorf("adopting PVC %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	return "", nil
}

// destinationExists tells whether a ReplicationDestination of migrationID is
// in namespace: a PVC labelled with a migration that has none is a leftover.
func (r *Reconciler) destinationExists(ctx context.Context, namespace, migrationID string) (bool, error) {
	if migrationID == "" {
		return false, nil
	}
	var list replv1.ReplicationDestinationList
	if err := r.Client.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return false, err
	}
	for _, d := range list.Items {
		if d.Spec.MigrationID == migrationID {
			return true, nil
		}
	}
	return false, nil
}

// appReadiness, once the hub verified the data (spec.hubVerified), finds for
// each PVC a Ready pod of the app that mounts it: the app runs here.
func (r *Reconciler) appReadiness(ctx context.Context, rd *replv1.ReplicationDestination) error {
	st := &rd.Status
	st.AppReady = false
	for i := range st.Volumes {
		st.Volumes[i].AppPod = ""
	}
	if !rd.Spec.HubVerified || st.Phase != replv1.DestinationVerified {
		return nil
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(rd.Namespace)); err != nil {
		return err
	}
	st.AppReady = len(st.Volumes) > 0
	for i := range st.Volumes {
		v := &st.Volumes[i]
		for j := range pods.Items {
			if p := &pods.Items[j]; !moverpod.IsMover(p) && p.DeletionTimestamp.IsZero() && moverpod.UsesPVC(p, v.PVCName) && moverpod.PodReady(p) {
				v.AppPod = p.Name
				break
			}
		}
		st.AppReady = st.AppReady && v.AppPod != ""
	}
	return nil
}

// handOver gives the verified PVCs to the app: without the migration-ID
// label they are the app's own, never a leftover a later migration reuses.
func (r *Reconciler) handOver(ctx context.Context, rd *replv1.ReplicationDestination) error {
	for _, v := range rd.Spec.Volumes {
		var pvc corev1.PersistentVolumeClaim
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: rd.Namespace, Name: v.PVCName}, &pvc); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return err
		}
		if pvc.Labels[replv1.MigrationIDLabel] != rd.Spec.MigrationID {
			continue
		}
		raw, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{replv1.MigrationIDLabel: nil}}})
		if err := r.Client.Patch(ctx, &pvc, client.RawPatch(types.MergePatchType, raw)); err != nil {
			return fmt.Errorf("handing PVC %s/%s to the app: %w", pvc.Namespace, pvc.Name, err)
		}
	}
	return nil
}

// NewPVC is the PVC created for the app. It carries only what the app's own
// manifest will agree with (name, size, access modes, volume mode, the mapped
// class) plus one label under the agent's own prefix: no owner reference
// (the PVC outlives the ReplicationDestination), no app.kubernetes.io labels
// (an app or Helm may set those), no annotations.
func NewPVC(rd *replv1.ReplicationDestination, v replv1.DestinationVolume) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: rd.Namespace, Name: v.PVCName,
			Labels: map[string]string{replv1.MigrationIDLabel: rd.Spec.MigrationID},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      v.AccessModes,
			VolumeMode:       ptr.To(ptr.Deref(v.VolumeMode, corev1.PersistentVolumeFilesystem)),
			StorageClassName: v.StorageClassName,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: v.Capacity,
			}},
		},
	}
}

func (r *Reconciler) ensureService(ctx context.Context, rd *replv1.ReplicationDestination, pvcName string) (*corev1.Service, error) {
	name := moverpod.ServiceName(rd.Spec.MigrationID, pvcName)
	var svc corev1.Service
	err := r.Reader.Get(ctx, types.NamespacedName{Namespace: rd.Namespace, Name: name}, &svc)
	if err == nil {
		if string(svc.Spec.Type) == string(endpointType(rd)) {
			return &svc, r.annotate(ctx, rd, &svc)
		}
		// Type changed (not expected: the hub sets it once): replace.
		if err := r.Client.Delete(ctx, &svc); client.IgnoreNotFound(err) != nil {
			return nil, err
		}
	} else if !apierrors.IsNotFound(err) {
		return nil, err
	}
	sel := moverpod.Labels(rd.Spec.MigrationID, moverpod.RoleReceiver, pvcName)
	delete(sel, replv1.ManagedByLabel)
	want := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: rd.Namespace, Name: name, Labels: moverpod.Labels(rd.Spec.MigrationID, moverpod.RoleReceiver, pvcName),
			Annotations: rd.Spec.ServiceAnnotations},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceType(endpointType(rd)),
			Selector: sel,
			Ports: []corev1.ServicePort{{Name: "mover", Port: replv1.ReceiverPort, Protocol: corev1.ProtocolTCP,
				TargetPort: intstr.FromInt32(replv1.ReceiverPort)}},
			PublishNotReadyAddresses: true,
		},
	}
	if err := controllerutil.SetControllerReference(rd, want, r.Client.Scheme()); err != nil {
		return nil, err
	}
	if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating Service %s/%s: %w", rd.Namespace, name, err)
	}
	if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(want), &svc); err != nil {
		return nil, err
	}
	return &svc, nil
}

// annotate keeps the policy's annotations on an existing Service (the
// hub may add them after the Service was made); others are left alone.
func (r *Reconciler) annotate(ctx context.Context, rd *replv1.ReplicationDestination, svc *corev1.Service) error {
	missing := map[string]any{}
	for k, v := range rd.Spec.ServiceAnnotations {
		if got, ok := svc.Annotations[k]; !ok || got != v {
			missing[k] = v
		}
	}
	if len(missing) == 0 {
		return nil
	}
	raw, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": missing}})
	if err := r.Client.Patch(ctx, svc, client.RawPatch(types.MergePatchType, raw)); err != nil {
		return fmt.Errorf("annotating Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

func endpointType(rd *replv1.ReplicationDestination) replv1.EndpointType {
	if rd.Spec.EndpointType == "" {
		return replv1.EndpointClusterIP
	}
	return rd.Spec.EndpointType
}

// Endpoint is where the source reaches the receiver: the load balancer
// address, a node address and the node port (the receiver's own node), or
// the cluster IP (for networks that span clusters).
func Endpoint(svc *corev1.Service, pod *corev1.Pod) string {
	port := strconv.Itoa(replv1.ReceiverPort)
	switch svc.Spec.Type {
	case corev1.ServiceTypeLoadBalancer:
		for _, in := range svc.Status.LoadBalancer.Ingress {
			host := in.IP
			if host == "" {
				host = in.Hostname
			}
			if host != "" {
				return net.JoinHostPort(host, port)
			}
		}
		return ""
	case corev1.ServiceTypeNodePort:
		if pod == nil || pod.Status.HostIP == "" || len(svc.Spec.Ports) == 0 || svc.Spec.Ports[0].NodePort == 0 {
			return ""
		}
		return net.JoinHostPort(pod.Status.HostIP, strconv.Itoa(int(svc.Spec.Ports[0].NodePort)))
	default:
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			return ""
		}
		return net.JoinHostPort(svc.Spec.ClusterIP, port)
	}
}

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
			log.FromContext(ctx).Info("Restarting standby receiver with new points", "pod", name, "args", args)
			return nil, client.IgnoreNotFound(r.Client.Delete(ctx, &pod))
		}
		if pod.Status.Phase == corev1.PodFailed && pod.DeletionTimestamp.IsZero() {
			// Evicted or its node lost: the receiver resumes from what is on
			// the volume, so a fresh pod carries on.
			log.FromContext(ctx).Info("Replacing failed receiver", "pod", name, "reason", pod.Status.Reason)
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
