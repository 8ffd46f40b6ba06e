// Package migration is the hub's sequencing controller: it drives each
// Migration through Preparing, InitialSync, Syncing, Quiescing, FinalSync,
// Launching and Completed (docs/protocol.md, "Sequencing"), talking to the
// two agents through ManifestWorks (pkg/hub/work) and reading their reports
// on their ManagedClusterAddOns (pkg/hub/progress). Every step is recorded in
// Migration.status before its side effect is made, and every side effect is
// idempotent, so a restarted manager resumes where it stopped.
package migration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"
	workv1alpha1 "open-cluster-management.io/api/work/v1alpha1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/hub/clients"
	"github.com/stateful-migration/stateful-migration/pkg/hub/credentials"
	"github.com/stateful-migration/stateful-migration/pkg/hub/reports"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

const (
	// ControllerName names the controller and its event source.
	ControllerName = "migration-sequencing"
	// Finalizer lets a deleted Migration give the app back and clean both clusters.
	Finalizer        = "migration.open-cluster-management.io/sequencing"
	indexMigrationID = "migrationID"
	indexPlacement   = "spec.placementName"
)

// Reconciler sequences Migrations.
type Reconciler struct {
	clients.Set
	// RetryBackoff is the wait before the second attempt; it doubles per
	// attempt up to MaxRetryBackoff. Defaults 10s and 5m.
	RetryBackoff, MaxRetryBackoff time.Duration

	phases phaseTracker
	creds  credentials.Keeper
	// Workers is how many objects are reconciled at once (0: one).
	Workers int
}

// SetupWithManager registers the controller, its indexes and watches.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.Fill(mgr, ControllerName)
	if r.RetryBackoff == 0 {
		r.RetryBackoff = 10 * time.Second
	}
	if r.MaxRetryBackoff == 0 {
		r.MaxRetryBackoff = 5 * time.Minute
	}
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(context.Background(), &migrationv1alpha1.Migration{}, indexMigrationID,
		func(o client.Object) []string {
			return []string{work.MigrationID(o.(*migrationv1alpha1.Migration))}
		}); err != nil {
		return err
	}
	if err := idx.IndexField(context.Background(), &migrationv1alpha1.Migration{}, indexPlacement,
		func(o client.Object) []string {
			return []string{o.(*migrationv1alpha1.Migration).Spec.PlacementName}
		}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&migrationv1alpha1.Migration{}).
		// Agents' reports: a written or withdrawn condition wakes its Migration.
		Watches(&addonv1beta1.ManagedClusterAddOn{}, r.onReports()).
		// Our works (status, deletion) and the app's works on a destination.
		Watches(&workv1.ManifestWork{}, handler.EnqueueRequestsFromMapFunc(r.forWork)).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.Workers)}).
		Complete(r)
}

// onReports wakes the Migrations whose agent report on a cluster's
// ManagedClusterAddOn changed: on an update only those (reports.ChangedIDs),
// otherwise every one it carries.
func (r *Reconciler) onReports() handler.EventHandler {
	conds := func(o client.Object) []metav1.Condition {
		if a, ok := o.(*addonv1beta1.ManagedClusterAddOn); ok && a.Name == uplink.AddonName {
			return a.Status.Conditions
		}
		return nil
	}
	add := func(ctx context.Context, ids []string, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		for _, req := range r.byIDs(ctx, ids) {
			q.Add(req)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, reports.MigrationIDs(conds(e.Object)), q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, reports.ChangedIDs(conds(e.ObjectOld), conds(e.ObjectNew)), q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, reports.MigrationIDs(conds(e.Object)), q)
		},
		GenericFunc: func(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, reports.MigrationIDs(conds(e.Object)), q)
		},
	}
}

func (r *Reconciler) byIDs(ctx context.Context, ids []string) []reconcile.Request {
	var out []reconcile.Request
	for _, id := range ids {
		var l migrationv1alpha1.MigrationList
		if err := r.List(ctx, &l, client.MatchingFields{indexMigrationID: id}); err != nil {
			klog.FromContext(ctx).Error(err, "listing migrations", "migrationID", id)
			continue
		}
		for _, m := range l.Items {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: m.Name}})
		}
	}
	return out
}

// forWork maps one of our ManifestWorks to its Migration, and an app's
// ManifestWork made by a ManifestWorkReplicaSet (labelled with its Placement)
// to the Migrations launching onto that cluster.
func (r *Reconciler) forWork(ctx context.Context, o client.Object) []reconcile.Request {
	if id := o.GetLabels()[work.MigrationIDLabel]; id != "" {
		return r.byIDs(ctx, []string{id})
	}
	placement := o.GetLabels()[workv1alpha1.ManifestWorkReplicaSetPlacementNameLabelKey]
	mwrs := o.GetLabels()[workv1alpha1.ManifestWorkReplicaSetControllerNameLabelKey]
	ns, _, ok := strings.Cut(mwrs, ".")
	if placement == "" || !ok {
		return nil
	}
	var l migrationv1alpha1.MigrationList
	if err := r.List(ctx, &l, client.InNamespace(ns), client.MatchingFields{indexPlacement: placement}); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, m := range l.Items {
		if m.Spec.DestinationCluster == o.GetNamespace() && m.CurrentPhase() == migrationv1alpha1.PhaseLaunching {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.Namespace, Name: m.Name}})
		}
	}
	return out
}

// Reconcile runs the current phase's step; when a step moves the Migration
// on, the new phase is recorded and its step runs at once, so the hub reacts
// to a report within one reconcile.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := klog.FromContext(ctx).WithValues("migration", req.NamespacedName)
	ctx = klog.NewContext(ctx, logger)

	m := &migrationv1alpha1.Migration{}
	if err := r.Get(ctx, req.NamespacedName, m); err != nil {
		if apierrors.IsNotFound(err) {
			r.phases.forget(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	s := &state{m: m, id: work.MigrationID(m), now: time.Now()}
	if !m.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, s)
	}
	if !controllerutil.ContainsFinalizer(m, Finalizer) {
		if m.CurrentPhase().IsFinished() {
			// Created finished (or finished before this controller ran): nothing to clean.
			r.phases.set(m)
			return ctrl.Result{}, nil
		}
		before := m.DeepCopy()
		controllerutil.AddFinalizer(m, Finalizer)
		if err := r.Patch(ctx, m, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, err
		}
	}

	var result ctrl.Result
	for range 12 { // at most one pass per phase
		phase := m.CurrentPhase()
		if err := r.load(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
		before := m.DeepCopy()
		res, err := r.step(ctx, s)
		if errors.Is(err, credentials.ErrRefused) {
			res, err = r.credentialsRefused(ctx, s, err)
		}
		if werr := r.writeStatus(ctx, before, m); werr != nil {
			return ctrl.Result{}, werr
		}
		r.phases.set(m)
		if err != nil {
			return ctrl.Result{}, err
		}
		result = res
		if m.CurrentPhase() == phase || m.CurrentPhase().IsFinished() && phase.IsFinished() {
			break
		}
	}
	return result, nil
}

// step runs the current phase's step; a finished migration is cleaned up.
func (r *Reconciler) step(ctx context.Context, s *state) (ctrl.Result, error) {
	steps := map[migrationv1alpha1.MigrationPhase]func(context.Context, *state) (ctrl.Result, error){
		migrationv1alpha1.PhasePending:     r.pending,
		migrationv1alpha1.PhasePreparing:   r.preparing,
		migrationv1alpha1.PhaseInitialSync: r.initialSync,
		migrationv1alpha1.PhaseSyncing:     r.syncing,
		migrationv1alpha1.PhaseQuiescing:   r.quiescing,
		migrationv1alpha1.PhaseFinalSync:   r.finalSync,
		migrationv1alpha1.PhaseFailingOver: r.failingOver,
		migrationv1alpha1.PhaseLaunching:   r.launching,
		migrationv1alpha1.PhaseRollingBack: r.rollingBack,
	}
	if step, ok := steps[s.m.CurrentPhase()]; ok {
		return step(ctx, s)
	}
	return ctrl.Result{}, r.cleanup(ctx, s, false) // Completed, Failed, RolledBack
}

// credentialsRefused ends the attempt when the credentials Secret is not the
// one the hub minted: before the app stopped it fails for good (a retry
// would meet the same Secret), after it the app goes back to the source;
// once the data is verified on the destination the move completes, keeping
// the source data.
func (r *Reconciler) credentialsRefused(ctx context.Context, s *state, err error) (ctrl.Result, error) {
	const reason = ReasonCredentialsRefused
	if s.m.CurrentPhase() == migrationv1alpha1.PhaseLaunching {
		return r.complete(ctx, s, false, reason, err.Error()+"; source data kept")
	}
	if s.m.CurrentPhase().HoldsApp() {
		return r.rollback(s, reason, err.Error())
	}
	if s.m.CurrentPhase().IsFinished() {
		return ctrl.Result{}, nil
	}
	return r.failBeforeQuiesce(ctx, s, reason, err.Error(), true)
}

// writeStatus patches the status if the step changed it. The optimistic
// lock makes a reconcile that acted on a stale Migration fail and retry.
func (r *Reconciler) writeStatus(ctx context.Context, before, m *migrationv1alpha1.Migration) error {
	humanize(&m.Status)
	if equality.Semantic.DeepEqual(before.Status, m.Status) {
		return nil
	}
	m.Status.ObservedGeneration = m.Generation
	if err := r.Status().Patch(ctx, m, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("recording status: %w", err)
	}
	return nil
}
