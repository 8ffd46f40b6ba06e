// Package frame is what both replication controllers do around their own
// steps: keep the cleanup finalizer (so the agent withdraws its condition
// before an object goes), say what a Forbidden answer means, write the
// status when it changed, then report to the hub.
package frame

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// Object is a ReplicationSource or a ReplicationDestination.
type Object interface {
	client.Object
	Outcome() replv1.Outcome
	ID() string
}

// ForbiddenRetry is how soon an object the agent may not act on is looked at
// again: the hub's RoleBindings are usually on their way.
const ForbiddenRetry = 2 * time.Second

// Steps are one controller's own parts, in the order they run.
type Steps[T Object] struct {
	Client client.Client
	// New returns an empty object to read into.
	New func() T
	// Cleanup undoes what Converge made once the object is being deleted.
	Cleanup func(context.Context, T) error
	// Withdraw takes the object out of the uplink after Cleanup; the
	// finalizer goes when it returns nil.
	Withdraw func(context.Context, T) error
	// Converge brings the cluster toward the spec and sets the status; it
	// returns how soon to look again (0: on events only).
	Converge func(context.Context, T) (time.Duration, error)
	// Report runs after the status is written: the uplink, and what follows from it.
	Report func(context.Context, T) error
}

// Reconcile runs the steps for the object req names.
func (s Steps[T]) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	o := s.New()
	if err := s.Client.Get(ctx, req.NamespacedName, o); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !o.GetDeletionTimestamp().IsZero() {
		return ctrl.Result{}, s.finish(ctx, o)
	}
	if !controllerutil.ContainsFinalizer(o, replv1.Finalizer) {
		patch := client.MergeFromWithOptions(o.DeepCopyObject().(T), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(o, replv1.Finalizer)
		if err := s.Client.Patch(ctx, o, patch); err != nil {
			return ctrl.Result{}, err
		}
	}
	old := o.DeepCopyObject().(T)
	requeue, err := s.Converge(ctx, o)
	if apierrors.IsForbidden(err) {
		forbidden(o, err)
		requeue, err = ForbiddenRetry, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	*o.Outcome().ObservedGeneration = o.GetGeneration()
	if !equality.Semantic.DeepEqual(old, o) {
		if err := s.Client.Status().Update(ctx, o); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err := s.Report(ctx, o); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// finish runs once the object is being deleted: the controller's cleanup,
// the uplink withdrawn, then the finalizer goes.
func (s Steps[T]) finish(ctx context.Context, o T) error {
	if !controllerutil.ContainsFinalizer(o, replv1.Finalizer) {
		return nil
	}
	if err := s.Cleanup(ctx, o); err != nil {
		return err
	}
	if err := s.Withdraw(ctx, o); err != nil {
		return err
	}
	patch := client.MergeFromWithOptions(o.DeepCopyObject().(T), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(o, replv1.Finalizer)
	return client.IgnoreNotFound(s.Client.Patch(ctx, o, patch))
}

// forbidden says which of the hub's grants is missing: typically its
// RoleBinding smig-<id>-replicator has not arrived (or was removed).
func forbidden(o Object, err error) {
	out := o.Outcome()
	*out.LastError = fmt.Sprintf("not allowed in namespace %s (are the hub's RoleBindings smig-%[2]s-replicator to ClusterRole %[3]s and smig-%[2]s-tls-reader there?): %[4]v",
		o.GetNamespace(), o.ID(), replv1.ReplicatorClusterRole, err)
	meta.SetStatusCondition(out.Conditions, metav1.Condition{Type: replv1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: "Forbidden", Message: *out.LastError})
}

// InNamespace maps any object (an app pod, a PVC) to every object of its
// namespace that newList lists: they may be waiting on it.
func InNamespace(c client.Client, newList func() client.ObjectList) func(context.Context, client.Object) []reconcile.Request {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		list := newList()
		if err := c.List(ctx, list, client.InNamespace(o.GetNamespace())); err != nil {
			return nil
		}
		var reqs []reconcile.Request
		_ = meta.EachListItem(list, func(item runtime.Object) error {
			if m, ok := item.(metav1.Object); ok {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()}})
			}
			return nil
		})
		return reqs
	}
}
