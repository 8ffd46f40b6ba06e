package frame

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stateful-migration/stateful-migration/pkg/agent/hooks"
	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	"github.com/stateful-migration/stateful-migration/pkg/agent/report"
)

// Deps is what both replication controllers work with.
type Deps struct {
	// Client reads pods and PVCs from the cache and writes.
	Client client.Client
	// Reader reads what the agent does not cache (PVs, Services, Secrets,
	// StorageClasses) straight from the API server with namespaced rights.
	Reader   client.Reader
	Logs     moverpod.LogSource
	Reporter *report.Reporter
	// Image is the mover image unless the spec names one (the agent's image).
	Image string
	// Poll is how often running movers' progress is read.
	Poll time.Duration
	// Hooks runs the app's hooks in its pods.
	Hooks *hooks.Runner
}

// Watch registers a replication controller named name for obj: its own mover
// pods, the app's pods and PVCs of the object's namespace (they come and go,
// get a node, bind: what its steps wait on) and the hooks' completions.
func (d Deps) Watch(mgr ctrl.Manager, name string, obj client.Object, newList func() client.ObjectList, r reconcile.Reconciler) error {
	sameNamespace := handler.EnqueueRequestsFromMapFunc(InNamespace(d.Client, newList))
	return ctrl.NewControllerManagedBy(mgr).
		Named(name).
		For(obj).
		Owns(&corev1.Pod{}).
		Watches(&corev1.Pod{}, sameNamespace).
		Watches(&corev1.PersistentVolumeClaim{}, sameNamespace).
		WatchesRawSource(d.Hooks.Source()).
		Complete(r)
}
