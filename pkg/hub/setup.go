// Package hub wires the hub controllers of stateful-migration into a
// controller-runtime manager.
package hub

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/placement"
)

// AddToScheme registers every type the hub controllers read or write.
func AddToScheme(s *runtime.Scheme) error {
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme,
		clusterv1beta1.AddToScheme,
		migrationv1alpha1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return err
		}
	}
	return nil
}

// NewScheme returns a scheme for a manager running the hub controllers.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(AddToScheme(s))
	return s
}

// SetupWithManager adds the hub controllers to mgr. Its scheme must hold
// the types of AddToScheme.
func SetupWithManager(mgr ctrl.Manager) error {
	if err := AddToScheme(mgr.GetScheme()); err != nil {
		return err
	}
	return (&placement.Reconciler{}).SetupWithManager(mgr)
}
