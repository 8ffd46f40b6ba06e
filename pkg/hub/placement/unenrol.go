package placement

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
)

// unenrol gives the Placement back to the scheduler: companion deleted,
// annotations and our condition removed, then the finalizer. It waits while a
// migration has the app stopped or moving back, because the scheduler would
// then start the app on the destination before its data is verified.
func (r *Reconciler) unenrol(ctx context.Context, s *state) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(s.policy, Finalizer) {
		return ctrl.Result{}, nil
	}
	var l migrationv1alpha1.MigrationList
	if err := r.APIReader.List(ctx, &l, client.InNamespace(s.policy.Namespace),
		client.MatchingLabels{migrationv1alpha1.PolicyLabel: s.policy.Name}); err != nil {
		return ctrl.Result{}, err
	}
	for _, m := range l.Items {
		if m.CurrentPhase().HoldsApp() {
			s.setEnrolled(metav1.ConditionTrue, migrationv1alpha1.ReasonUnenrolBlocked,
				fmt.Sprintf("Un-enrolment waits for Migration %s (%s): the app is between clusters", m.Name, m.CurrentPhase()))
			return ctrl.Result{}, r.writeStatus(ctx, s)
		}
	}

	p := &clusterv1beta1.Placement{}
	err := r.Get(ctx, client.ObjectKey{Namespace: s.policy.Namespace, Name: s.policy.Spec.PlacementRef.Name}, p)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return ctrl.Result{}, err
	case p.Annotations[migrationv1alpha1.PolicyAnnotation] == s.policyKey():
		if err := r.deleteCompanion(ctx, p); err != nil {
			return ctrl.Result{}, err
		}
		if err := decision.RemoveCondition(ctx, r.Client, p, PlacementConditionManaged); err != nil {
			return ctrl.Result{}, err
		}
		before := p.DeepCopy()
		delete(p.Annotations, clusterv1beta1.PlacementDisableAnnotation)
		delete(p.Annotations, migrationv1alpha1.PolicyAnnotation)
		if err := r.Patch(ctx, p, client.MergeFrom(before)); err != nil {
			return ctrl.Result{}, fmt.Errorf("re-enabling scheduling of %s: %w", p.Name, err)
		}
		klog.FromContext(ctx).Info("Un-enrolled placement", "placement", p.Name)
		msg := fmt.Sprintf("Placement %s given back to the scheduler", p.Name)
		r.Recorder.Eventf(p, s.policy, corev1.EventTypeNormal, "Unenrolled", "Unenrol", msg)
		r.Recorder.Eventf(s.policy, p, corev1.EventTypeNormal, "Unenrolled", "Unenrol", msg)
	}

	before := s.policy.DeepCopy()
	controllerutil.RemoveFinalizer(s.policy, Finalizer)
	return ctrl.Result{}, client.IgnoreNotFound(r.Patch(ctx, s.policy, client.MergeFrom(before)))
}

func (r *Reconciler) deleteCompanion(ctx context.Context, p *clusterv1beta1.Placement) error {
	c := &clusterv1beta1.Placement{}
	err := r.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: CompanionName(p.Name)}, c)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if c.Labels[migrationv1alpha1.DesiredForLabel] != p.Name {
		return nil // not ours
	}
	return client.IgnoreNotFound(r.Delete(ctx, c))
}
