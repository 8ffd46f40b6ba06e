// Package placement is the hub controller that enrols a Placement under a
// MigrationPolicy: the OCM scheduler keeps computing the desired clusters on a
// companion Placement, this controller alone writes the user's Placement's
// decisions (the actual clusters) and turns each difference into a Migration
// or, when no data has to move, into a direct change of the actual clusters.
package placement

import (
	"context"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	workv1alpha1 "open-cluster-management.io/api/work/v1alpha1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/clients"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
)

const (
	// ControllerName names the controller, its event source and its finalizer.
	ControllerName = "migrationpolicy-placement"
	// Finalizer holds a policy until its Placement is given back to the scheduler.
	Finalizer = "migration.open-cluster-management.io/unenrol"
	// indexPlacement indexes policies by the Placements they care about.
	indexPlacement = "spec.placementRef.name+companion"
)

// Reconciler enrols Placements and keeps actual in step with desired.
type Reconciler struct {
	clients.Set
	// StandbyRenewAfter is the age at which a standby is replaced by a new
	// one with fresh credentials (default: a day before they expire).
	StandbyRenewAfter time.Duration
	// Workers is how many objects are reconciled at once (0: one).
	Workers int
}

// SetupWithManager registers the controller and its index.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.Fill(mgr, ControllerName)
	err := mgr.GetFieldIndexer().IndexField(context.Background(), &migrationv1alpha1.MigrationPolicy{}, indexPlacement,
		func(o client.Object) []string {
			p := o.(*migrationv1alpha1.MigrationPolicy)
			name := p.Spec.PlacementRef.Name
			out := []string{name, CompanionName(name)}
			if sb := p.Spec.Standby; sb != nil && sb.PlacementRef != nil {
				out = append(out, sb.PlacementRef.Name) // its decisions choose the standby's cluster
			}
			return out
		})
	if err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&migrationv1alpha1.MigrationPolicy{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&migrationv1alpha1.Migration{}, builder.WithPredicates(predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
			return migrationMatters(e.ObjectOld.(*migrationv1alpha1.Migration), e.ObjectNew.(*migrationv1alpha1.Migration))
		}})).
		Watches(&clusterv1beta1.Placement{}, handler.EnqueueRequestsFromMapFunc(
			func(ctx context.Context, o client.Object) []reconcile.Request {
				return r.policiesFor(ctx, o.GetNamespace(), o.GetName())
			})).
		// The app's namespaces (checkVolumes) come from these.
		Watches(&workv1alpha1.ManifestWorkReplicaSet{}, handler.EnqueueRequestsFromMapFunc(
			func(ctx context.Context, o client.Object) []reconcile.Request {
				var out []reconcile.Request
				for _, ref := range o.(*workv1alpha1.ManifestWorkReplicaSet).Spec.PlacementRefs {
					out = append(out, r.policiesFor(ctx, o.GetNamespace(), ref.Name)...)
				}
				return out
			})).
		Watches(&clusterv1beta1.PlacementDecision{}, handler.EnqueueRequestsFromMapFunc(
			func(ctx context.Context, o client.Object) []reconcile.Request {
				name := o.GetLabels()[clusterv1beta1.PlacementLabel]
				if name == "" {
					return nil
				}
				return r.policiesFor(ctx, o.GetNamespace(), name)
			})).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.Workers)}).
		Complete(r)
}

// migrationMatters tells whether a change of a policy's Migration is one
// the policy's steps read: its phase (and in Preparing its reason: whether
// the source answered, awaitsSource), deletion, a failover, a standby's
// first point. Progress (bytes, lag, timings, reasons within a phase),
// written at every agent report, is not: at fleet scale it would reconcile
// every policy with a move in progress every poll, each reconcile reading
// around the cache.
func migrationMatters(o, n *migrationv1alpha1.Migration) bool {
	return o.Status.Phase != n.Status.Phase ||
		(n.Status.Phase == migrationv1alpha1.PhasePreparing && o.Status.Reason != n.Status.Reason) ||
		o.Generation != n.Generation || !o.DeletionTimestamp.Equal(n.DeletionTimestamp) ||
		(o.Status.Failover == nil) != (n.Status.Failover == nil) ||
		(o.Status.Standby == nil || o.Status.Standby.PointTime == nil) != (n.Status.Standby == nil || n.Status.Standby.PointTime == nil) ||
		!slices.Equal(o.Finalizers, n.Finalizers)
}

// policiesFor maps a Placement (user's or companion) to the policies governing it.
func (r *Reconciler) policiesFor(ctx context.Context, namespace, placement string) []reconcile.Request {
	var l migrationv1alpha1.MigrationPolicyList
	if err := r.List(ctx, &l, client.InNamespace(namespace), client.MatchingFields{indexPlacement: placement}); err != nil {
		klog.FromContext(ctx).Error(err, "listing policies", "placement", placement)
		return nil
	}
	out := make([]reconcile.Request, 0, len(l.Items))
	for _, p := range l.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
	}
	return out
}

// step is one part of a reconcile; stop ends the chain without an error.
type step func(ctx context.Context, s *state) (stop bool, err error)

// Reconcile runs the steps in order, then records what it saw in the policy status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := klog.FromContext(ctx).WithValues("policy", req.NamespacedName)
	ctx = klog.NewContext(ctx, logger)

	policy := &migrationv1alpha1.MigrationPolicy{}
	if err := r.Get(ctx, req.NamespacedName, policy); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// What it reads of the actual decisions and what it writes are one step
	// against the sequencing controller's (decision.Hold).
	defer decision.Hold(policy.Namespace, policy.Spec.PlacementRef.Name)()
	s := newState(policy)
	if !policy.DeletionTimestamp.IsZero() {
		return r.unenrol(ctx, s)
	}

	var stepErr error
	for _, st := range []step{
		r.ensureFinalizer,
		r.findPlacement,
		r.checkVolumes,
		r.checkDataSafety,
		r.claimPlacement,
		r.mirrorCompanion,
		r.observe,
		r.converge,
		r.keepStandby,
		r.mirrorPlacementStatus,
	} {
		stop, err := st(ctx, s)
		if err != nil {
			stepErr = err
			break
		}
		if stop {
			break
		}
	}
	if err := r.writeStatus(ctx, s); err != nil && stepErr == nil {
		stepErr = err
	}
	// The scheduler records no observed generation, and an edit that does not
	// change its decision produces no event: look again once it has had time.
	if s.companionChanged && stepErr == nil {
		return ctrl.Result{RequeueAfter: schedulerSettle}, nil
	}
	return ctrl.Result{RequeueAfter: s.requeueAfter}, stepErr
}

// schedulerSettle is how long after a companion edit its decisions are trusted
// even without an event from the scheduler.
const schedulerSettle = time.Second

// CompanionName is the Placement the scheduler fills with the desired clusters.
func CompanionName(placement string) string {
	const suffix = "-desired"
	if len(placement)+len(suffix) <= 253 {
		return placement + suffix
	}
	return fmt.Sprintf("%s-%08x%s", placement[:253-len(suffix)-9], hash(placement), suffix)
}

func hash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}
