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

// pass is one reconcile of a ReplicationSource: what its steps found so far.
type pass struct {
	rs *replv1.ReplicationSource
	// vols: one status per spec volume, carried over from the last reconcile.
	vols []replv1.SourceVolumeStatus
	// phases of the volumes once the senders step ran (nil before).
	phases  []replv1.SourcePhase
	use     appUse
	requeue time.Duration
}

// wait asks to look again within d.
func (p *pass) wait(d time.Duration) {
	if d > 0 && (p.requeue == 0 || d < p.requeue) {
		p.requeue = d
	}
}

// note keeps the first thing the user should know.
func (p *pass) note(msg string) {
	if msg != "" && p.rs.Status.LastError == "" {
		p.rs.Status.LastError = msg
	}
}

// converge runs the steps in order (a step may end the pass) and sets the
// status from what they found; it returns how soon to look again.
func (r *Reconciler) converge(ctx context.Context, rs *replv1.ReplicationSource) (time.Duration, error) {
	p := &pass{rs: rs}
	prev := map[string]replv1.SourceVolumeStatus{}
	for _, v := range rs.Status.Volumes {
		prev[v.PVCName] = v
	}
	for _, v := range rs.Spec.Volumes {
		vs := prev[v.PVCName]
		vs.PVCName = v.PVCName
		p.vols = append(p.vols, vs)
	}
	rs.Status.Volumes, rs.Status.LastError = nil, ""
	for _, step := range []func(context.Context, *pass) (bool, error){r.protectVolumes, r.findAppPods, r.runPreQuiesce, r.runSenders} {
		done, err := step(ctx, p)
		if err != nil {
			return 0, err
		}
		if done {
			break
		}
	}
	rs.Status.Volumes = p.vols
	r.summarize(rs, p.phases)
	return p.requeue, nil
}

// protectVolumes comes before anything else: nothing replicates until every
// PV is Retain and every PVC carries our finalizer.
func (r *Reconciler) protectVolumes(ctx context.Context, p *pass) (bool, error) {
	st := &p.rs.Status
	protected := true
	for i := range p.vols {
		msg, err := r.protect(ctx, p.rs, p.vols[i].PVCName, &p.vols[i])
		if err != nil {
			return true, err
		}
		if msg != "" {
			p.note(msg)
			p.wait(2 * time.Second)
		}
		protected = protected && p.vols[i].Protected
	}
	st.Protected = protected
	if protected {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: replv1.ConditionVolumesProtected, Status: metav1.ConditionTrue,
			Reason: "Protected", Message: "every source PV is Retain and every source PVC carries the protection finalizer"})
	} else {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: replv1.ConditionVolumesProtected, Status: metav1.ConditionFalse,
			Reason: "NotProtected", Message: st.LastError})
	}
	return false, nil
}

// findAppPods finds who else uses the volumes (the Quiescing gate); an
// unprotected source goes no further.
func (r *Reconciler) findAppPods(ctx context.Context, p *pass) (bool, error) {
	st := &p.rs.Status
	use, err := r.appPods(ctx, p.rs)
	if err != nil {
		return true, err
	}
	p.use = use
	st.PodsUsingVolumes = int32(len(use.pods))
	if len(use.pods) > 0 {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: replv1.ConditionVolumesInUse, Status: metav1.ConditionTrue,
			Reason: "AppPodsRunning", Message: fmt.Sprintf("%d pod(s) other than the movers mount the source PVCs", len(use.pods))})
	} else {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: replv1.ConditionVolumesInUse, Status: metav1.ConditionFalse,
			Reason: "NoAppPods", Message: "no pod other than the movers mounts the source PVCs"})
	}
	return !st.Protected, nil
}

// runPreQuiesce runs the app's pre-quiesce hook once the hub asks, before the final sync.
func (r *Reconciler) runPreQuiesce(ctx context.Context, p *pass) (bool, error) {
	if h := p.rs.Spec.PreQuiesceHook; h != nil && !p.rs.Spec.FinalSync {
		p.wait(r.preQuiesce(ctx, p.rs, h))
	}
	return false, nil
}

// runSenders keeps a sender per volume and reads its progress.
func (r *Reconciler) runSenders(ctx context.Context, p *pass) (bool, error) {
	st := &p.rs.Status
	p.phases = make([]replv1.SourcePhase, len(p.vols))
	var rates senderRates
	for i, v := range p.rs.Spec.Volumes {
		phase, err := r.runSender(ctx, p, v, &p.vols[i], &rates)
		if err != nil {
			return true, err
		}
		p.phases[i] = phase
	}
	st.Throughput = rates.throughput
	st.EstimatedFinalSyncMillis = rates.estimate
	st.LagSeconds = int64(math.Ceil(rates.lagSeconds))
	return false, nil
}

// senderRates sums the senders' throughput and keeps their worst lag and estimate.
type senderRates struct {
	throughput, estimate int64
	lagSeconds           float64
}

// runSender is one volume's sender: started toward its receiver, told to
// finish once the app is gone, its digest taken when it verified.
func (r *Reconciler) runSender(ctx context.Context, p *pass, v replv1.SourceVolume, vs *replv1.SourceVolumeStatus, rates *senderRates) (replv1.SourcePhase, error) {
	rs := p.rs
	if vs.Digest != "" {
		// Done: make sure no mover of this volume is left.
		_, err := r.deletePod(ctx, rs, moverpod.RoleSender, v.PVCName)
		return replv1.SourceVerified, err
	}
	if v.Destination == "" {
		p.note(fmt.Sprintf("waiting for the destination endpoint of PVC %s", v.PVCName))
		return replv1.SourcePending, nil
	}
	if waiting, err := moverpod.WaitingForTLS(ctx, r.Reader, rs.Namespace, rs.Spec.TLSSecretName); err != nil || waiting != "" {
		p.note(waiting)
		p.wait(2 * time.Second)
		return replv1.SourcePending, err
	}
	final := rs.Spec.FinalSync && len(p.use.pods) == 0
	finish := ""
	if final {
		finish = finishValue(rs)
	}
	pod, err := r.ensureSender(ctx, rs, v.PVCName, v.Destination, p.use.node[v.PVCName], p.use.tolerations[v.PVCName], finish, vs)
	if err != nil || pod == nil {
		p.wait(time.Second)
		if final {
			return replv1.SourceFinalSync, err
		}
		return replv1.SourcePending, err
	}
	ms := moverpod.Read(ctx, r.Logs, pod)
	phase := replv1.SourceInitialSync
	if pr := ms.Progress; pr != nil {
		vs.BytesTotal, vs.BytesCopied, vs.LagBytes = pr.BytesTotal, pr.BytesCopied, pr.LagBytes
		rates.throughput += int64(pr.ThroughputBps)
		rates.lagSeconds = math.Max(rates.lagSeconds, pr.LagSeconds)
		rates.estimate = max(rates.estimate, int64(math.Ceil(pr.EstimatedFinalSeconds*1000))+FinishSignal.Milliseconds())
		if pr.Phase == progress.Syncing || pr.Phase == progress.FinalSync || pr.Phase == progress.Verifying || pr.Phase == progress.Completed {
			phase = replv1.SourceSyncing
		}
		vs.FinalSyncCold = vs.FinalSyncCold || (final && pr.FinalSyncCold)
		vs.FinalPassFull = vs.FinalPassFull || (final && pr.FinalPassFull)
		vs.UnseenChange = cmp.Or(pr.UnseenChange, vs.UnseenChange)
	}
	if rs.Spec.FinalSync {
		phase = replv1.SourceFinalSync
	}
	if final && (pod.Status.Phase == corev1.PodSucceeded || moverpod.Finished(ms.Progress)) {
		if pr := ms.Progress; pr != nil && pr.Verified && pr.Digest != "" {
			vs.Digest = pr.Digest
			return replv1.SourceVerified, nil
		}
		p.note(fmt.Sprintf("sender of %s finished but its digest could not be read from its log or termination message", v.PVCName))
	}
	if ms.LastError != "" {
		p.note(fmt.Sprintf("sender of %s: %s (restarts: %d)", v.PVCName, ms.LastError, ms.Restarts))
		if ms.Restarts >= FailAfterRestarts {
			phase = replv1.SourceFailed
		}
	}
	if !final && rs.Spec.FinalSync && len(p.use.pods) > 0 {
		p.note(fmt.Sprintf("final sync waits for %d pod(s) to stop using the source PVCs", len(p.use.pods)))
	}
	if final {
		p.wait(moverpod.FinalPoll) // the app is down: report the digest at once
	}
	p.wait(r.Poll)
	return phase, nil
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
