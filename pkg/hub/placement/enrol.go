package placement

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/tenancy"
)

func (r *Reconciler) ensureFinalizer(ctx context.Context, s *state) (bool, error) {
	if controllerutil.ContainsFinalizer(s.policy, Finalizer) {
		return false, nil
	}
	before := s.policy.DeepCopy()
	controllerutil.AddFinalizer(s.policy, Finalizer)
	return false, r.Patch(ctx, s.policy, client.MergeFrom(before))
}

// findPlacement loads the user's Placement and refuses one another controller
// already writes the decisions of.
func (r *Reconciler) findPlacement(ctx context.Context, s *state) (bool, error) {
	p := &clusterv1beta1.Placement{}
	err := r.Get(ctx, client.ObjectKey{Namespace: s.policy.Namespace, Name: s.policy.Spec.PlacementRef.Name}, p)
	if apierrors.IsNotFound(err) {
		s.setEnrolled(metav1.ConditionFalse, migrationv1alpha1.ReasonPlacementNotFound,
			fmt.Sprintf("Placement %q not found in namespace %q; create it or fix spec.placementRef", s.policy.Spec.PlacementRef.Name, s.policy.Namespace))
		return true, nil
	}
	if err != nil {
		return true, err
	}
	if !p.DeletionTimestamp.IsZero() {
		s.setEnrolled(metav1.ConditionFalse, migrationv1alpha1.ReasonPlacementNotFound, "Placement is being deleted")
		return true, nil
	}
	owner, claimed := p.Annotations[migrationv1alpha1.PolicyAnnotation]
	switch {
	case claimed && owner != s.policyKey():
		s.setEnrolled(metav1.ConditionFalse, migrationv1alpha1.ReasonPlacementAlreadyEnrolled,
			fmt.Sprintf("Placement is enrolled by MigrationPolicy %s; delete one of the two policies", owner))
		return true, nil
	case !claimed && p.Annotations[clusterv1beta1.PlacementDisableAnnotation] == "true":
		s.setEnrolled(metav1.ConditionFalse, migrationv1alpha1.ReasonPlacementAlreadyEnrolled,
			"Placement already has scheduling disabled, so another controller writes its decisions")
		return true, nil
	}
	s.placement = p
	return false, nil
}

// checkVolumes refuses a policy naming a spoke namespace its app does not
// own (pkg/hub/tenancy): no such policy is enrolled. One enrolled before its
// app stopped owning a namespace keeps its Placement frozen (scheduling
// stays off, no Migration is created) until either is fixed: giving the
// Placement back to the scheduler would move the app without its data.
func (r *Reconciler) checkVolumes(ctx context.Context, s *state) (bool, error) {
	owned, mwrs, err := tenancy.AppNamespaces(ctx, r.Client, s.policy.Namespace, s.placement.Name)
	if err != nil {
		return true, err
	}
	var want []string
	for _, v := range s.policy.Spec.Volumes {
		want = append(want, v.Namespace)
	}
	foreign := tenancy.ForeignNamespaces(want, owned)
	if len(foreign) == 0 {
		return false, nil
	}
	msg := fmt.Sprintf("spec.volumes names namespaces %v, which no ManifestWorkReplicaSet using Placement %s delivers into (%v deliver into %v); "+
		"a policy may move only volumes of namespaces its app owns", foreign, s.placement.Name, mwrs, sets.List(owned))
	s.refuse(migrationv1alpha1.ReasonVolumeNamespaceNotOwned, msg)
	return true, nil
}

// refuse says why the policy is not (or no longer) enrolled; an enrolled
// Placement stays frozen meanwhile, which the message says.
func (s *state) refuse(reason, msg string) {
	if s.placement.Annotations[migrationv1alpha1.PolicyAnnotation] == s.policyKey() {
		msg += "; the Placement stays frozen until this is fixed"
	}
	s.setEnrolled(metav1.ConditionFalse, reason, msg)
}

// checkDataSafety refuses to enrol (or freezes) a Placement whose app
// delivery would lose or strand the data a migration moves: what OCM does
// when it removes the app from the old cluster and delivers it to the new
// one must keep the PVCs (pkg/hub/tenancy DataRisks).
func (r *Reconciler) checkDataSafety(ctx context.Context, s *state) (bool, error) {
	var vols []tenancy.Volume
	for _, v := range s.policy.Spec.Volumes {
		for _, n := range v.Names {
			vols = append(vols, tenancy.Volume{Namespace: v.Namespace, Name: n})
		}
	}
	risks, err := tenancy.DataRisks(ctx, r.Client, s.policy.Namespace, s.placement.Name, vols)
	if err != nil || len(risks) == 0 {
		return err != nil, err
	}
	s.refuse(migrationv1alpha1.ReasonDataAtRisk, strings.Join(risks, "; "))
	return true, nil
}

// claimPlacement turns the scheduler off for the user's Placement. The
// decisions it last wrote stay: that is how first enrolment adopts the
// current clusters as actual without moving anything.
func (r *Reconciler) claimPlacement(ctx context.Context, s *state) (bool, error) {
	p := s.placement
	if p.Annotations[migrationv1alpha1.PolicyAnnotation] == s.policyKey() &&
		p.Annotations[clusterv1beta1.PlacementDisableAnnotation] == "true" {
		return false, nil
	}
	before := p.DeepCopy()
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[clusterv1beta1.PlacementDisableAnnotation] = "true"
	p.Annotations[migrationv1alpha1.PolicyAnnotation] = s.policyKey()
	// Optimistic lock: two policies racing for one Placement must not both win.
	if err := r.Patch(ctx, p, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return true, fmt.Errorf("disabling scheduling of placement %s: %w", p.Name, err)
	}
	klog.FromContext(ctx).Info("Enrolled placement", "placement", p.Name)
	msg := fmt.Sprintf("Placement %s enrolled: its decisions now change only through MigrationPolicy %s", p.Name, s.policy.Name)
	r.Recorder.Eventf(s.policy, p, corev1.EventTypeNormal, "Enrolled", "Enrol", msg)
	r.Recorder.Eventf(p, s.policy, corev1.EventTypeNormal, "Enrolled", "Enrol", msg)
	return false, nil
}

// mirrorCompanion keeps the companion Placement's spec equal to the user's.
// It is owned by the user's Placement, so deleting that removes it too.
func (r *Reconciler) mirrorCompanion(ctx context.Context, s *state) (bool, error) {
	p := s.placement
	c := &clusterv1beta1.Placement{}
	key := client.ObjectKey{Namespace: p.Namespace, Name: CompanionName(p.Name)}
	err := r.Get(ctx, key, c)
	switch {
	case apierrors.IsNotFound(err):
		c = &clusterv1beta1.Placement{ObjectMeta: metav1.ObjectMeta{
			Name:        key.Name,
			Namespace:   key.Namespace,
			Labels:      map[string]string{migrationv1alpha1.DesiredForLabel: p.Name, migrationv1alpha1.ManagedByLabel: migrationv1alpha1.ManagedByValue},
			Annotations: map[string]string{migrationv1alpha1.PolicyAnnotation: s.policyKey()},
		}}
		c.Spec = *p.Spec.DeepCopy()
		if err := controllerutil.SetOwnerReference(p, c, r.Scheme()); err != nil {
			return true, err
		}
		if err := r.Create(ctx, c); err != nil {
			return true, fmt.Errorf("creating companion placement %s: %w", key.Name, err)
		}
		s.companionChanged = true
	case err != nil:
		return true, err
	case c.Labels[migrationv1alpha1.DesiredForLabel] != p.Name:
		s.setEnrolled(metav1.ConditionFalse, "CompanionNameTaken",
			fmt.Sprintf("Placement %s exists and is not ours; rename or delete it", key.Name))
		return true, nil
	case !equality.Semantic.DeepEqual(c.Spec, p.Spec):
		before := c.DeepCopy()
		c.Spec = *p.Spec.DeepCopy()
		if err := r.Patch(ctx, c, client.MergeFrom(before)); err != nil {
			return true, fmt.Errorf("mirroring spec to %s: %w", key.Name, err)
		}
		// Only a new generation makes the companion's decisions stale: a spec
		// that differs from ours in server defaults only patches to a no-op.
		s.companionChanged = c.Generation != before.Generation
	}
	s.companion = c
	s.setEnrolled(metav1.ConditionTrue, migrationv1alpha1.ReasonEnrolled,
		fmt.Sprintf("Decisions of Placement %s are written by this policy; the scheduler's choice is in Placement %s", p.Name, c.Name))
	return false, nil
}
