// Package agent runs on every managed cluster: it keeps the addon's lease,
// reports to the hub through its ManagedClusterAddOn status, and hosts the
// replication controllers.
package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"open-cluster-management.io/addon-framework/pkg/lease"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stateful-migration/stateful-migration/pkg/agent/replication"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/version"
)

// Options are the agent's flags.
type Options struct {
	HubKubeconfig    string
	ClusterName      string
	AddonName        string
	AddonNamespace   string
	MetricsAddr      string
	ProbeAddr        string
	HubConfigPoll    time.Duration
	ReportInterval   time.Duration
	ReportRetryLimit time.Duration
	// MoverImage runs the replication movers (the agent's own image). Empty
	// leaves the replication controllers out (tests of the foundation only);
	// the command requires it.
	MoverImage string
}

// NewOptions returns the defaults used by the agent templates.
func NewOptions() *Options {
	return &Options{
		AddonName:        uplink.AddonName,
		MetricsAddr:      ":8080",
		ProbeAddr:        ":8081",
		HubConfigPoll:    5 * time.Second,
		ReportInterval:   5 * time.Minute,
		ReportRetryLimit: 2 * time.Minute,
	}
}

// NewCommand returns the `agent` subcommand.
func NewCommand() *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent on a managed cluster",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			cfg, err := ctrl.GetConfig()
			if err != nil {
				return fmt.Errorf("loading managed cluster kubeconfig: %w", err)
			}
			return o.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.HubKubeconfig, "hub-kubeconfig", o.HubKubeconfig, "Kubeconfig of the hub, written by OCM addon registration.")
	f.StringVar(&o.ClusterName, "cluster-name", o.ClusterName, "Name of this managed cluster on the hub.")
	f.StringVar(&o.AddonName, "addon-name", o.AddonName, "Name of the addon.")
	f.StringVar(&o.AddonNamespace, "addon-namespace", o.AddonNamespace, "Namespace the agent is installed in.")
	f.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "Address of the Prometheus metrics endpoint; 0 disables it.")
	f.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "Address of /healthz and /readyz.")
	f.StringVar(&o.MoverImage, "mover-image", o.MoverImage, "Image of the mover pods (the agent's own image).")
	return cmd
}

// Validate reports missing flags before anything starts.
func (o *Options) Validate() error {
	var errs []error
	if o.HubKubeconfig == "" {
		errs = append(errs, errors.New("--hub-kubeconfig is required"))
	}
	if o.ClusterName == "" {
		errs = append(errs, errors.New("--cluster-name is required"))
	}
	if o.AddonNamespace == "" {
		errs = append(errs, errors.New("--addon-namespace is required"))
	}
	if o.MoverImage == "" {
		errs = append(errs, errors.New("--mover-image is required"))
	}
	return errors.Join(errs...)
}

// Run waits for the hub credentials, then starts the lease, the status
// reporter and the agent's controllers. The lease starts only once the hub
// can be talked to, so the hub shows the addon Unavailable until then.
func (o *Options) Run(ctx context.Context, spokeCfg *rest.Config) error {
	hubCfg, err := waitForHubConfig(ctx, o.HubKubeconfig, o.HubConfigPoll)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(spokeCfg, ctrl.Options{
		Metrics:                metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress: o.ProbeAddr,
	})
	if err != nil {
		return fmt.Errorf("creating controller manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	if err := o.AddToManager(mgr, spokeCfg, hubCfg); err != nil {
		return err
	}
	klog.InfoS("Starting agent", "cluster", o.ClusterName, "version", version.Version)
	return mgr.Start(ctx)
}

// AddToManager adds the lease updater, the status reporter and the
// replication controllers to mgr.
// Tests call it directly against envtest.
func (o *Options) AddToManager(mgr manager.Manager, spokeCfg, hubCfg *rest.Config) error {
	spokeKube, err := kubernetes.NewForConfig(spokeCfg)
	if err != nil {
		return err
	}
	hubAddon, err := addonclient.NewForConfig(hubCfg)
	if err != nil {
		return err
	}
	// The lease lives on the managed cluster; the hub copy is addon-framework's
	// fallback for clusters without the Lease API.
	leaseUpdater := lease.NewLeaseUpdater(spokeKube, o.AddonName, o.AddonNamespace).
		WithHubLeaseConfig(hubCfg, o.ClusterName)
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		leaseUpdater.Start(ctx)
		return nil
	})); err != nil {
		return err
	}
	writer := NewStatusWriter(hubAddon, o.ClusterName, o.AddonName)
	if o.MoverImage != "" {
		if err := replication.Setup(mgr, replication.Options{MoverImage: o.MoverImage, Writer: writer, Kube: spokeKube}); err != nil {
			return fmt.Errorf("setting up the replication controllers: %w", err)
		}
	}
	return mgr.Add(&readyReporter{
		writer:   writer,
		message:  agentMessage(o.ClusterName, version.Version),
		interval: o.ReportInterval,
		backoff:  backoffSteps(time.Second, o.ReportRetryLimit),
	})
}

// backoffSteps doubles from first up to limit.
func backoffSteps(first, limit time.Duration) []time.Duration {
	var steps []time.Duration
	for d := first; d < limit; d *= 2 {
		steps = append(steps, d)
	}
	return append(steps, limit)
}
