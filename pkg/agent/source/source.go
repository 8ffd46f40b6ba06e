// Package source reconciles ReplicationSources: protect the app's volumes
// first (PV reclaim policy Retain, a finalizer on each PVC), then run a
// continuous sender per PVC next to the app's pod, and once the hub asks for
// the final sync and no pod but the movers uses the PVCs, tell that sender
// to finish; its verified digest is reported.
package source

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stateful-migration/stateful-migration/pkg/agent/frame"
	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
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
type Reconciler struct{ frame.Deps }

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return r.Watch(mgr, "replicationsource", &replv1.ReplicationSource{}, func() client.ObjectList { return &replv1.ReplicationSourceList{} }, r)
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return frame.Steps[*replv1.ReplicationSource]{
		Client:   r.Client,
		New:      func() *replv1.ReplicationSource { return &replv1.ReplicationSource{} },
		Cleanup:  r.cleanup,
		Withdraw: r.withdraw,
		Converge: func(ctx context.Context, rs *replv1.ReplicationSource) (time.Duration, error) {
			requeue, err := r.converge(ctx, rs)
			if err == nil {
				err = r.markMovedOut(ctx, rs)
			}
			return requeue, err
		},
		Report: func(ctx context.Context, rs *replv1.ReplicationSource) error {
			return r.Reporter.SyncSource(ctx, rs, false)
		},
	}.Reconcile(ctx, req)
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
