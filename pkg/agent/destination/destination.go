// Package destination reconciles ReplicationDestinations: the app's PVCs
// created ahead of the app, one receiver pod and Service per PVC, the
// endpoint and, after the final sync, the verified digest.
package destination

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stateful-migration/stateful-migration/pkg/agent/frame"
	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
)

// Reconciler reconciles ReplicationDestinations.
type Reconciler struct{ frame.Deps }

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return r.Watch(mgr, "replicationdestination", &replv1.ReplicationDestination{}, func() client.ObjectList { return &replv1.ReplicationDestinationList{} }, r)
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return frame.Steps[*replv1.ReplicationDestination]{
		Client:   r.Client,
		New:      func() *replv1.ReplicationDestination { return &replv1.ReplicationDestination{} },
		Cleanup:  r.cleanup,
		Withdraw: r.withdraw,
		Converge: r.steps,
		Report:   r.report,
	}.Reconcile(ctx, req)
}

// steps: the volumes, then the app on them, then its post-launch check.
func (r *Reconciler) steps(ctx context.Context, rd *replv1.ReplicationDestination) (time.Duration, error) {
	requeue, err := r.converge(ctx, rd)
	if err == nil {
		err = r.appReadiness(ctx, rd)
	}
	if h := rd.Spec.PostLaunchHook; err == nil && h != nil && rd.Status.AppReady {
		if d := r.postLaunch(ctx, rd, h); d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}
	return requeue, err
}

// report tells the hub; a verified volume's receiver and Service have then
// done their job (its digest is recorded).
func (r *Reconciler) report(ctx context.Context, rd *replv1.ReplicationDestination) error {
	if err := r.Reporter.SyncDestination(ctx, rd, false); err != nil {
		return err
	}
	for _, v := range rd.Status.Volumes {
		if v.Digest != "" {
			if err := r.removeReceiver(ctx, rd, v.PVCName); err != nil {
				return err
			}
		}
	}
	return nil
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
	var t tally
	for _, v := range rd.Spec.Volumes {
		vs := replv1.DestinationVolumeStatus{PVCName: v.PVCName, Phase: replv1.DestinationPreparing}
		if p := prev[v.PVCName]; p.Digest != "" {
			// Verified is final: the receiver is gone, the digest stays.
			vs = p
			st.Volumes = append(st.Volumes, vs)
			st.BytesReceived += vs.BytesReceived
			t.verified++
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
			t.failed++
			if t.failure == "" {
				t.failure = msg
			}
		case msg != "" && st.LastError == "":
			st.LastError = msg
		}
		switch vs.Phase {
		case replv1.DestinationPreparing:
			t.preparing++
		case replv1.DestinationReceiving:
			t.receiving++
		case replv1.DestinationVerified:
			t.verified++
		}
		st.BytesReceived += vs.BytesReceived
		st.Volumes = append(st.Volumes, vs)
	}
	summarize(rd, t)
	return requeue, nil
}

// tally counts the volumes by phase; failure is the first fatal message.
type tally struct {
	failed, preparing, receiving, verified int
	failure                                string
}

// summarize sets the object's phase, digest and Ready condition from the tally.
func summarize(rd *replv1.ReplicationDestination, t tally) {
	st := &rd.Status
	cond := metav1.Condition{Type: replv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Progressing", Message: "receivers are being prepared or are receiving"}
	switch {
	case t.failed > 0:
		st.Phase = replv1.DestinationFailed
		st.LastError = t.failure
		cond = metav1.Condition{Type: replv1.ConditionReady, Status: metav1.ConditionFalse, Reason: "Failed", Message: t.failure}
	case t.verified == len(rd.Spec.Volumes):
		st.Phase = replv1.DestinationVerified
		digests := map[string]string{}
		for _, v := range st.Volumes {
			digests[rd.Namespace+"/"+v.PVCName] = v.Digest
		}
		st.Digest = uplink.CombineDigests(digests)
		cond.Reason, cond.Message = "Verified", "every volume passed the final sync's verification"
	case t.preparing > 0:
		st.Phase = replv1.DestinationPreparing
		if st.LastError != "" {
			cond.Message = st.LastError
		}
	case t.receiving > 0 || t.verified > 0:
		st.Phase = replv1.DestinationReceiving
	default:
		st.Phase = replv1.DestinationReady
		cond.Reason, cond.Message = "Ready", "every receiver is listening at its endpoint"
	}
	if st.Phase != replv1.DestinationVerified {
		st.Digest = ""
	}
	meta.SetStatusCondition(&st.Conditions, cond)
}

// volume converges one volume: its PVC, the migration's TLS Secret, then
// the receiver (or, on failover, the promotion). It returns a message (a
// wait reason or, when fatal, a failure) and how soon to poll again.
func (r *Reconciler) volume(ctx context.Context, rd *replv1.ReplicationDestination, v replv1.DestinationVolume, vs *replv1.DestinationVolumeStatus) (string, bool, time.Duration, error) {
	if msg, fatal, d, err := r.ensurePVC(ctx, rd, v); err != nil || msg != "" {
		return msg, fatal, d, err
	}
	if waiting, err := moverpod.WaitingForTLS(ctx, r.Reader, rd.Namespace, rd.Spec.TLSSecretName); err != nil || waiting != "" {
		return waiting, false, 2 * time.Second, err
	}
	if rd.Spec.Promote { // failover: no more receiving
		return r.promote(ctx, rd, v, vs)
	}
	return r.receive(ctx, rd, v, vs)
}

// ensurePVC creates the volume's PVC ahead of the app (the agent never
// deletes it) or adopts one an earlier migration left; no message: it is
// this migration's, go on.
func (r *Reconciler) ensurePVC(ctx context.Context, rd *replv1.ReplicationDestination, v replv1.DestinationVolume) (string, bool, time.Duration, error) {
	ns, id := rd.Namespace, rd.Spec.MigrationID
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
	return "", false, 0, nil
}

// receive keeps the volume's Service and receiver, its endpoint, and reads
// the receiver's progress.
func (r *Reconciler) receive(ctx context.Context, rd *replv1.ReplicationDestination, v replv1.DestinationVolume, vs *replv1.DestinationVolumeStatus) (string, bool, time.Duration, error) {
	svc, err := r.ensureService(ctx, rd, v.PVCName)
	if err != nil {
		return "", false, 0, err
	}

	pod, err := r.ensureReceiver(ctx, rd, v)
	if err != nil || pod == nil {
		return "waiting for the receiver pod", false, time.Second, err
	}
	vs.Endpoint = Endpoint(svc, pod)
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
