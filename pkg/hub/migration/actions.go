package migration

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	workv1 "open-cluster-management.io/api/work/v1"
	workv1alpha1 "open-cluster-management.io/api/work/v1alpha1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/credentials"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
	"github.com/stateful-migration/stateful-migration/pkg/hub/progress"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

// volumeRefs lists the PVCs that travel (the CRD requires at least one).
func volumeRefs(p *migrationv1alpha1.MigrationPolicy) []work.VolumeRef {
	var out []work.VolumeRef
	for _, v := range p.Spec.Volumes {
		for _, n := range v.Names {
			out = append(out, work.VolumeRef{Namespace: v.Namespace, PVCName: n})
		}
	}
	return out
}

func classMap(p *migrationv1alpha1.MigrationPolicy) map[string]string {
	out := map[string]string{}
	for _, m := range p.Spec.StorageClassMapping {
		out[m.Source] = m.Destination
	}
	return out
}

// destinationEndpoints returns the receivers the destination reports per
// volume; with a single volume the first endpoint serves.
func destinationEndpoints(dst *progress.Report, refs []work.VolumeRef) (map[string]string, []string) {
	out := map[string]string{}
	var missing []string
	for _, ref := range refs {
		var ep string
		if dst != nil {
			ep = dst.Endpoints[ref.Key()]
			if ep == "" && len(refs) == 1 {
				ep = dst.Endpoint
			}
		}
		if ep == "" {
			missing = append(missing, ref.Key())
			continue
		}
		out[ref.Key()] = ep
	}
	return out, missing
}

func (r *Reconciler) common(s *state, cluster, agentNS string, pair credentials.Pair, runsHook bool) work.Common {
	return work.Common{Migration: s.m, ID: s.id, Cluster: cluster, AgentNS: agentNS, Credentials: pair,
		MoverResources: s.policy.Spec.MoverResources, RunsHook: runsHook}
}

// ensureSourceWork writes the source work; endpoints nil means probes only.
func (r *Reconciler) ensureSourceWork(ctx context.Context, s *state, pair credentials.Pair, endpoints map[string]string, finalSync, release bool) (*workv1.ManifestWork, error) {
	refs := volumeRefs(s.policy)
	w, err := work.Source(work.SourceSpec{
		Common:    r.common(s, s.m.Spec.SourceCluster, agentNamespace(s.srcAddon), pair, s.policy.Spec.Hooks.PreQuiesce != nil),
		Volumes:   refs,
		Endpoints: endpoints, FinalSync: finalSync, ReleaseSource: release,
		QuiesceStart: s.m.Status.Timings.QuiesceStart,
		FullVerify:   s.policy.Spec.Verification == migrationv1alpha1.VerifyFull,
		HubVerified:  s.hubVerified(),
		PreQuiesce:   s.preQuiesceAsked(),
	})
	if err != nil {
		return nil, err
	}
	return r.ensureWork(ctx, w, s.srcWork)
}

// ensureReplicating keeps the source work with its ReplicationSources
// pointing at the receivers (written once, then read back from the work).
// releaseSource, once written, is never taken back.
func (r *Reconciler) ensureReplicating(ctx context.Context, s *state, finalSync, release bool) error {
	release = release || work.SourceReleases(s.srcWork)
	creds, err := credentials.Ensure(ctx, r.Client, r.APIReader, s.m)
	if err != nil {
		return err
	}
	endpoints := work.SourceEndpoints(s.srcWork)
	if endpoints == nil {
		refs := volumeRefs(s.policy)
		var missing []string
		if endpoints, missing = destinationEndpoints(s.dst, refs); len(missing) > 0 {
			return fmt.Errorf("destination endpoints of %v unknown", missing)
		}
	}
	_, err = r.ensureSourceWork(ctx, s, creds.Client, endpoints, finalSync, release)
	return err
}

// ensureWork creates want, or updates existing when the spec the hub last
// wrote differs. A work being deleted (previous attempt) is waited for.
func (r *Reconciler) ensureWork(ctx context.Context, want, existing *workv1.ManifestWork) (*workv1.ManifestWork, error) {
	if err := work.SetSpecHash(want); err != nil {
		return nil, err
	}
	if existing == nil {
		err := r.Create(ctx, want)
		if err == nil {
			klog.FromContext(ctx).V(1).Info("Created ManifestWork", "work", want.Namespace+"/"+want.Name)
			return want, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating ManifestWork %s/%s: %w", want.Namespace, want.Name, err)
		}
		// Created by the previous pass, not in the cache yet.
		existing = &workv1.ManifestWork{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(want), existing); err != nil {
			return nil, err
		}
	}
	if !existing.DeletionTimestamp.IsZero() {
		return nil, fmt.Errorf("ManifestWork %s/%s is still being deleted", existing.Namespace, existing.Name)
	}
	if existing.Annotations[work.SpecHashAnnotation] == want.Annotations[work.SpecHashAnnotation] {
		return existing, nil
	}
	next := existing.DeepCopy()
	next.Spec = want.Spec
	next.Labels, next.Annotations = want.Labels, want.Annotations
	if err := r.Update(ctx, next); err != nil {
		return nil, fmt.Errorf("updating ManifestWork %s/%s: %w", want.Namespace, want.Name, err)
	}
	return next, nil
}

// releaseApplied: the work agent applied the generation that sets releaseSource.
func releaseApplied(s *state) bool {
	return s.srcWork != nil && work.Applied(s.srcWork) && work.SourceReleases(s.srcWork)
}

// setActual adds add and removes remove from the Placement's actual
// clusters, reading the current ones from the API server. Reconciles of this
// controller are serialised, so two migrations of one Placement never
// interleave their read-modify-write.
func (r *Reconciler) setActual(ctx context.Context, s *state, add, remove string) error {
	if s.placement == nil {
		return nil
	}
	cur, err := decision.Clusters(ctx, r.APIReader, s.placement.Namespace, s.placement.Name)
	if err != nil {
		return err
	}
	next := sets.New(cur...)
	if add != "" {
		next.Insert(add)
	}
	if remove != "" {
		next.Delete(remove)
	}
	if slices.Equal(cur, sets.List(next)) {
		return nil
	}
	if err := decision.SetActualClusters(ctx, r.Client, s.placement, sets.List(next)); err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Actual clusters updated", "placement", s.placement.Name, "from", cur, "to", sets.List(next))
	r.placementEvent(s, corev1.EventTypeNormal, "ActualUpdated", "Migration %s (%s): clusters %v -> %v",
		s.m.Name, s.m.CurrentPhase(), cur, sets.List(next))
	return nil
}

// appAvailable: the app is Available on the destination when every
// ManifestWorkReplicaSet of the Placement (in the Migration's namespace) has
// its ManifestWork on the destination cluster Available for its current
// generation, and the destination agent reports each migrated PVC mounted by
// a Ready pod of the app (Available on a ManifestWork means the objects
// exist, not that the app runs). known is false when no
// ManifestWorkReplicaSet uses the Placement (another consumer, e.g. Argo
// CD): nothing on the hub then says whether the app is meant to run there.
func (r *Reconciler) appAvailable(ctx context.Context, s *state) (available, known bool, why string, err error) {
	var sets workv1alpha1.ManifestWorkReplicaSetList
	if err := r.List(ctx, &sets, client.InNamespace(s.m.Namespace)); err != nil {
		if meta.IsNoMatchError(err) {
			return false, false, "ManifestWorkReplicaSet API not served: app availability unknown, source data kept", nil
		}
		return false, false, "", err
	}
	var names []string
	for _, mwrs := range sets.Items {
		for _, ref := range mwrs.Spec.PlacementRefs {
			if ref.Name == s.m.Spec.PlacementName {
				names = append(names, mwrs.Name)
			}
		}
	}
	if len(names) == 0 {
		return false, false, fmt.Sprintf("No ManifestWorkReplicaSet in %s uses Placement %s: app availability unknown, source data kept",
			s.m.Namespace, s.m.Spec.PlacementName), nil
	}
	for _, n := range names {
		var works workv1.ManifestWorkList
		if err := r.List(ctx, &works, client.InNamespace(s.m.Spec.DestinationCluster),
			client.MatchingLabels{workv1alpha1.ManifestWorkReplicaSetControllerNameLabelKey: s.m.Namespace + "." + n}); err != nil {
			return false, true, "", err
		}
		if len(works.Items) == 0 {
			return false, true, fmt.Sprintf("Waiting for ManifestWorkReplicaSet %s to create its ManifestWork on %s", n, s.m.Spec.DestinationCluster), nil
		}
		for _, w := range works.Items {
			if !work.Available(&w) {
				return false, true, fmt.Sprintf("Waiting for ManifestWork %s/%s (ManifestWorkReplicaSet %s) to be Available", w.Namespace, w.Name, n), nil
			}
		}
	}
	switch {
	case s.dst == nil:
		return false, true, fmt.Sprintf("Waiting for cluster %s to report on its volumes", s.m.Spec.DestinationCluster), nil
	case !s.dst.HubVerified:
		return false, true, fmt.Sprintf("Waiting for cluster %s to learn that the data is verified (hubVerified)", s.m.Spec.DestinationCluster), nil
	case !s.dst.AppReady:
		return false, true, fmt.Sprintf("Waiting for the app's pods on %s that mount %v to be Ready", s.m.Spec.DestinationCluster, s.dst.AppWaiting), nil
	}
	if why := s.postLaunchPending(); why != "" {
		return false, true, why, nil
	}
	return true, true, "", nil
}

// deleteWorks removes both works in two steps; the work agents remove what
// they applied (credentials included) before the objects disappear. The
// agent cleans up a replication object (movers, PVC finalizer, its report)
// with the rights of the RoleBinding in the same work, so deleting the whole
// work at once would take those rights away mid-cleanup and leave the
// replication object, its movers and the PVC finalizer stuck. So: first the
// work is rewritten without its ReplicationSource/Destination; it is deleted
// only once the work agent applied that (or never reported) and the agent
// withdrew its condition for this migration. Callers call again on the next
// event (the agent's withdrawal wakes the Migration).
func (r *Reconciler) deleteWorks(ctx context.Context, s *state) error {
	for _, side := range []struct {
		w   *workv1.ManifestWork
		rep *progress.Report
	}{{s.srcWork, s.src}, {s.dstWork, s.dst}} {
		w := side.w
		if w == nil || !w.DeletionTimestamp.IsZero() || w == s.srcWork && keepFencedSource(s) {
			continue
		}
		if work.HasReplication(w) {
			next := work.WithoutReplication(w)
			if err := work.SetSpecHash(next); err != nil {
				return err
			}
			if err := r.Update(ctx, next); err != nil {
				return fmt.Errorf("removing the replication objects from ManifestWork %s/%s: %w", w.Namespace, w.Name, err)
			}
			klog.FromContext(ctx).V(1).Info("Removed replication objects from ManifestWork", "work", w.Namespace+"/"+w.Name)
			continue
		}
		if side.rep != nil || !work.AppliedOrUnknown(w) {
			continue // the agent is still cleaning up
		}
		if err := r.Delete(ctx, w); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting ManifestWork %s/%s: %w", w.Namespace, w.Name, err)
		}
	}
	return nil
}

// cleanup removes both works and, with creds, the hub credentials.
func (r *Reconciler) cleanup(ctx context.Context, s *state, creds bool) error {
	if err := r.deleteWorks(ctx, s); err != nil {
		return err
	}
	if creds || s.m.CurrentPhase().IsFinished() {
		return credentials.Delete(ctx, r.Client, r.APIReader, s.m)
	}
	return nil
}

// finalize handles a deleted Migration: if the app is between clusters it
// goes back to the source, then both clusters are cleaned. Once the
// destination holds verified data (Launching) actual is left as it is.
func (r *Reconciler) finalize(ctx context.Context, s *state) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(s.m, Finalizer) {
		return ctrl.Result{}, nil
	}
	if err := r.load(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	switch s.m.CurrentPhase() {
	case migrationv1alpha1.PhaseQuiescing, migrationv1alpha1.PhaseFinalSync, migrationv1alpha1.PhaseRollingBack:
		if err := r.setActual(ctx, s, s.m.Spec.SourceCluster, s.m.Spec.DestinationCluster); err != nil && !apierrors.IsNotFound(err) {
			if err != decision.ErrSchedulingEnabled {
				return ctrl.Result{}, err
			}
		}
	}
	if err := r.cleanup(ctx, s, true); err != nil {
		return ctrl.Result{}, err
	}
	if s.srcWork != nil || s.dstWork != nil {
		// Works are removed in steps (deleteWorks): keep the finalizer
		// until they are gone, or nobody would finish removing them.
		return ctrl.Result{RequeueAfter: pollLimit}, nil
	}
	before := s.m.DeepCopy()
	controllerutil.RemoveFinalizer(s.m, Finalizer)
	if err := r.Patch(ctx, s.m, client.MergeFrom(before)); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, err
	}
	r.phases.forget(s.m.Namespace, s.m.Name)
	return ctrl.Result{}, nil
}

func (r *Reconciler) placementEvent(s *state, typ, reason, note string, args ...any) {
	if s.placement == nil {
		return
	}
	r.Recorder.Eventf(s.placement, s.m, typ, reason, "Migrate", note, args...)
}

func setCond(m *migrationv1alpha1.Migration, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&m.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: m.Generation,
	})
}
