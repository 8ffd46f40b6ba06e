package agent

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	"open-cluster-management.io/sdk-go/pkg/patcher"
)

// StatusWriter is the agent's uplink: it writes the agent's own conditions on
// its ManagedClusterAddOn on the hub. Other controllers (registration, health,
// OCM's addon manager) write conditions on the same object, so every write
// starts from a fresh copy, touches only the given types, and is guarded by
// resourceVersion; a conflict is retried from a fresh copy.
type StatusWriter struct {
	client    addonclient.Interface
	cluster   string
	addonName string
}

// NewStatusWriter returns a writer for the addon named addonName in the cluster namespace.
func NewStatusWriter(client addonclient.Interface, cluster, addonName string) *StatusWriter {
	return &StatusWriter{client: client, cluster: cluster, addonName: addonName}
}

// Update sets the given conditions and removes the conditions of the given
// types. Conditions of any other type are left exactly as they are.
func (w *StatusWriter) Update(ctx context.Context, set []metav1.Condition, remove ...string) error {
	addons := w.client.AddonV1beta1().ManagedClusterAddOns(w.cluster)
	p := patcher.NewPatcher[*addonv1beta1.ManagedClusterAddOn,
		addonv1beta1.ManagedClusterAddOnSpec, addonv1beta1.ManagedClusterAddOnStatus](addons)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current, err := addons.Get(ctx, w.addonName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading ManagedClusterAddOn %s/%s: %w", w.cluster, w.addonName, err)
		}
		next := current.Status.DeepCopy()
		for _, c := range set {
			meta.SetStatusCondition(&next.Conditions, c)
		}
		for _, t := range remove {
			meta.RemoveStatusCondition(&next.Conditions, t)
		}
		_, err = p.PatchStatus(ctx, current, *next, current.Status)
		return err
	})
}
