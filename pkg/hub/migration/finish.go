package migration

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	workv1 "open-cluster-management.io/api/work/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
	"github.com/stateful-migration/stateful-migration/pkg/hub/reports"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

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
		rep *reports.Report
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
		return r.creds.Delete(ctx, r.Client, r.APIReader, s.m)
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
