package migration

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	ctrl "sigs.k8s.io/controller-runtime"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
	"github.com/stateful-migration/stateful-migration/pkg/hub/tenancy"
)

// Reasons of the Admitted condition when a Migration is refused.
const (
	ReasonAdmitted              = "Admitted"
	ReasonNotCreatedByPolicy    = "NotCreatedByPolicy"
	ReasonSourceNotActual       = "SourceNotActual"
	ReasonDestinationNotDesired = "DestinationNotDesired"
	ReasonClusterNotInBoundSet  = "ClusterNotInBoundSet"
	// ReasonCredentialsRefused: the credentials Secret is not the one minted.
	ReasonCredentialsRefused = "CredentialsRefused"
)

// admit checks, before each attempt touches anything, that the Migration is
// one its policy would have written now: created by that policy, for its
// enrolled Placement, from a cluster the app is on to one the scheduler
// chose, both in ClusterSets bound to the namespace, moving volumes of
// namespaces the app owns. The admission policy in manifests/ keeps
// tenants from writing Migrations at all; this holds even without it.
// It returns the refusal's reason and message, or "".
func (r *Reconciler) admit(ctx context.Context, s *state) (string, string, error) {
	m, p, pl := s.m, s.policy, s.placement
	owner := metav1.GetControllerOf(m)
	switch {
	case owner == nil || owner.Kind != "MigrationPolicy" || owner.Name != p.Name || owner.UID != p.UID ||
		!strings.HasPrefix(owner.APIVersion, migrationv1alpha1.GroupVersion.Group+"/"):
		return ReasonNotCreatedByPolicy, fmt.Sprintf("Migration is not controlled by MigrationPolicy %s (uid %s): only the policy creates Migrations", p.Name, p.UID), nil
	case m.Spec.PlacementName != p.Spec.PlacementRef.Name:
		return ReasonNotCreatedByPolicy, fmt.Sprintf("spec.placementName %s is not the Placement of MigrationPolicy %s (%s)", m.Spec.PlacementName, p.Name, p.Spec.PlacementRef.Name), nil
	case pl == nil || !decision.IsSchedulingDisabled(pl) || pl.Annotations[migrationv1alpha1.PolicyAnnotation] != p.Namespace+"/"+p.Name:
		return ReasonPlacementNotEnrolled, fmt.Sprintf("Placement %s is not enrolled by MigrationPolicy %s", m.Spec.PlacementName, p.Name), nil
	}
	outside, err := tenancy.ClustersOutsideBoundSets(ctx, r.Client, pl, m.Spec.SourceCluster, m.Spec.DestinationCluster)
	if err != nil {
		return "", "", err
	}
	if len(outside) > 0 {
		return ReasonClusterNotInBoundSet, fmt.Sprintf("Clusters %v are in no ManagedClusterSet bound to namespace %s (and allowed by the Placement's clusterSets)", outside, pl.Namespace), nil
	}
	actual, err := decision.Clusters(ctx, r.APIReader, pl.Namespace, pl.Name)
	if err != nil {
		return "", "", err
	}
	if !slices.Contains(actual, m.Spec.SourceCluster) {
		return ReasonSourceNotActual, fmt.Sprintf("The app does not run on %s (Placement %s decides %v)", m.Spec.SourceCluster, pl.Name, actual), nil
	}
	if m.Spec.Standby {
		if reason, msg, err := r.admitStandby(ctx, m, p); reason != "" || err != nil {
			return reason, msg, err
		}
		return r.admitNamespaces(ctx, m, p, pl)
	}
	var desired []string
	if p.Status.DesiredPlacement != "" {
		if desired, err = decision.Clusters(ctx, r.APIReader, pl.Namespace, p.Status.DesiredPlacement); err != nil {
			return "", "", err
		}
	}
	if !slices.Contains(desired, m.Spec.DestinationCluster) {
		return ReasonDestinationNotDesired, fmt.Sprintf("The scheduler did not choose %s (Placement %s decides %v)", m.Spec.DestinationCluster, p.Status.DesiredPlacement, desired), nil
	}
	return r.admitNamespaces(ctx, m, p, pl)
}

// admitNamespaces checks that the volumes lie in namespaces the app owns.
func (r *Reconciler) admitNamespaces(ctx context.Context, m *migrationv1alpha1.Migration, p *migrationv1alpha1.MigrationPolicy,
	pl *clusterv1beta1.Placement) (string, string, error) {
	owned, mwrs, err := tenancy.AppNamespaces(ctx, r.Client, m.Namespace, pl.Name)
	if err != nil {
		return "", "", err
	}
	var want []string
	for _, v := range p.Spec.Volumes {
		want = append(want, v.Namespace)
	}
	if foreign := tenancy.ForeignNamespaces(want, owned); len(foreign) > 0 {
		return migrationv1alpha1.ReasonVolumeNamespaceNotOwned, fmt.Sprintf("Volumes in namespaces %v, which no ManifestWorkReplicaSet of Placement %s delivers into (%v)", foreign, pl.Name, mwrs), nil
	}
	return "", "", nil
}

// refuse ends a Migration that failed admission without touching either
// cluster, the Placement or any Secret.
func (r *Reconciler) refuse(s *state, reason, msg string) {
	m := s.m
	setCond(m, migrationv1alpha1.ConditionAdmitted, metav1.ConditionFalse, reason, msg)
	now := metav1.NewTime(s.now)
	m.Status.CompletionTime = &now
	full := "Refused: " + msg + "; nothing was changed on either cluster"
	r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, reason, "Admit", full)
	r.transition(s, migrationv1alpha1.PhaseFailed, reason, full)
	s.setSucceeded(metav1.ConditionFalse, reason, full)
}

func (r *Reconciler) pending(ctx context.Context, s *state) (ctrl.Result, error) {
	m := s.m
	if s.policy == nil {
		return r.failBeforeQuiesce(ctx, s, ReasonPolicyNotFound, fmt.Sprintf("MigrationPolicy %s not found", m.Spec.PolicyName), true)
	}
	if m.Status.Attempts > 0 {
		if left := r.backoff(m.Status.Attempts) - s.inPhase(); left > 0 {
			return ctrl.Result{RequeueAfter: left}, nil
		}
		// The previous attempt must be gone from both clusters, reports
		// included, before a new one starts under the same migration ID.
		if s.srcWork != nil || s.dstWork != nil || s.src != nil || s.dst != nil {
			// Reason and message keep the failure; the condition says what we wait for.
			setCond(m, ConditionProgressing, metav1.ConditionTrue, ReasonWaitingForCleanup, fmt.Sprintf(
				"Waiting for the agents to remove attempt %d (%s, %s)", m.Status.Attempts, describe("source", s.src), describe("destination", s.dst)))
			return ctrl.Result{RequeueAfter: pollLimit}, r.deleteWorks(ctx, s)
		}
	}
	reason, msg, err := r.admit(ctx, s)
	if err != nil {
		return ctrl.Result{}, err
	}
	if reason != "" {
		r.refuse(s, reason, msg)
		return ctrl.Result{}, nil
	}
	setCond(m, migrationv1alpha1.ConditionAdmitted, metav1.ConditionTrue, ReasonAdmitted,
		fmt.Sprintf("Created by MigrationPolicy %s; %s runs the app, the scheduler chose %s", s.policy.Name, m.Spec.SourceCluster, m.Spec.DestinationCluster))
	m.Status.Attempts++
	m.Status.Hooks, m.Status.Source = migrationv1alpha1.HooksStatus{}, nil
	if m.Status.StartTime == nil {
		now := metav1.NewTime(s.now)
		m.Status.StartTime = &now
	}
	r.transition(s, migrationv1alpha1.PhasePreparing, ReasonStarted,
		fmt.Sprintf("Attempt %d/%d: preparing %s to receive the volumes", m.Status.Attempts, maxAttempts(s.policy), m.Spec.DestinationCluster))
	return ctrl.Result{}, nil
}
