// Package hub wires the hub controllers of stateful-migration into a
// controller-runtime manager.
package hub

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	workv1 "open-cluster-management.io/api/work/v1"
	workv1alpha1 "open-cluster-management.io/api/work/v1alpha1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/migration"
	"github.com/stateful-migration/stateful-migration/pkg/hub/placement"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

// AddToScheme registers every type the hub controllers read or write.
func AddToScheme(s *runtime.Scheme) error {
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme,
		clusterv1.Install,
		clusterv1beta1.AddToScheme,
		clusterv1beta2.Install,
		migrationv1alpha1.AddToScheme,
		addonv1beta1.Install,
		workv1.Install,
		workv1alpha1.Install,
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

// Options tune the hub controllers.
type Options struct {
	// Workers is how many objects each controller reconciles at once
	// (policies, Migrations); 0 means one.
	Workers int
}

// CacheOptions keep the manager's cache to what the hub controllers read.
// Every cluster namespace holds the agent's ManifestWork, which embeds the
// agent's manifests and CRDs (the addon manager keeps its own copy): the
// hub reads the spec of its own works only, and of the others just their
// labels and status, so the rest is dropped as objects enter the cache —
// with managed fields, which nothing reads (docs/scale.md: memory per
// cluster).
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&workv1.ManifestWork{}: {Transform: trimForeignWork},
		},
	}
}

func trimForeignWork(o any) (any, error) {
	w, ok := o.(*workv1.ManifestWork)
	if !ok {
		return o, nil
	}
	w.ManagedFields = nil
	if w.Labels[work.MigrationIDLabel] == "" {
		w.Spec.Workload.Manifests = nil
		w.Status.ResourceStatus.Manifests = nil
	}
	return w, nil
}

// SetupWithManager adds the hub controllers to mgr: placement enrolment and
// migration sequencing. Its scheme must hold the types of AddToScheme.
func SetupWithManager(mgr ctrl.Manager, o Options) error {
	if err := SetupPlacement(mgr, o); err != nil {
		return err
	}
	return (&migration.Reconciler{Workers: o.Workers}).SetupWithManager(mgr)
}

// SetupPlacement adds only the placement controller (tests that play the
// sequencing controller themselves, on an API server without OCM's work and
// addon APIs).
func SetupPlacement(mgr ctrl.Manager, o Options) error {
	if err := AddToScheme(mgr.GetScheme()); err != nil {
		return err
	}
	return (&placement.Reconciler{Workers: o.Workers}).SetupWithManager(mgr)
}
