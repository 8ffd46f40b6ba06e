// Package replication wires the agent's replication controllers
// (ReplicationSource, ReplicationDestination) into its manager.
package replication

import (
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/stateful-migration/stateful-migration/pkg/agent/destination"
	"github.com/stateful-migration/stateful-migration/pkg/agent/frame"
	"github.com/stateful-migration/stateful-migration/pkg/agent/hooks"
	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	"github.com/stateful-migration/stateful-migration/pkg/agent/report"
	"github.com/stateful-migration/stateful-migration/pkg/agent/source"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// Options configure the replication controllers.
type Options struct {
	// MoverImage runs the mover pods unless a replication object names one.
	MoverImage string
	// Writer is the uplink to the hub (pkg/addon/agent.StatusWriter).
	Writer report.ConditionWriter
	// Logs reads mover progress; default: pods/log through Kube.
	Logs moverpod.LogSource
	// Kube is the spoke clientset used for pods/log when Logs is nil.
	Kube kubernetes.Interface
	// Exec runs the app's hooks; default: pods/exec with the manager's identity.
	Exec hooks.Executor
	// Poll is how often running movers' progress is read (default 2s): it is
	// what `kubectl get migrations` shows during the copy, and the lag the
	// hub's cutover waits on.
	Poll time.Duration
}

// Setup registers the replication API and both controllers with mgr.
func Setup(mgr ctrl.Manager, o Options) error {
	if o.MoverImage == "" {
		return fmt.Errorf("a mover image is required (--mover-image)")
	}
	if err := replv1.AddToScheme(mgr.GetScheme()); err != nil {
		return err
	}
	if o.Logs == nil && o.Kube != nil {
		o.Logs = moverpod.KubeLogs{Client: o.Kube}
	}
	if o.Poll <= 0 {
		o.Poll = 2 * time.Second
	}
	if o.Exec == nil {
		e, err := hooks.NewPodExec(mgr.GetConfig())
		if err != nil {
			return err
		}
		o.Exec = e
	}
	rep := &report.Reporter{Client: mgr.GetClient(), Writer: o.Writer}
	deps := func() frame.Deps {
		return frame.Deps{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Logs: o.Logs, Reporter: rep,
			Image: o.MoverImage, Poll: o.Poll, Hooks: hooks.NewRunner(o.Exec)}
	}
	if err := (&destination.Reconciler{Deps: deps()}).SetupWithManager(mgr); err != nil {
		return err
	}
	return (&source.Reconciler{Deps: deps()}).SetupWithManager(mgr)
}
