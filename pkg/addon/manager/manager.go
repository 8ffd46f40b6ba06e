package manager

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"open-cluster-management.io/addon-framework/pkg/addonmanager"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stateful-migration/stateful-migration/pkg/hub"
)

// Options are the hub manager's flags.
type Options struct {
	AgentImage       string
	MetricsAddr      string
	ProbeAddr        string
	LeaderElect      bool
	LeaderElectionNS string
	LeaderElectionID string
	// QPS and Burst limit the manager's requests to the API server (the
	// addon manager and both controllers share them); Workers is how many
	// objects each controller reconciles at once. docs/scale.md sizes them.
	QPS     float32
	Burst   int
	Workers int
}

// NewOptions returns the defaults used in manifests/.
func NewOptions() *Options {
	return &Options{
		AgentImage:       "stateful-migration:latest",
		MetricsAddr:      ":8080",
		ProbeAddr:        ":8081",
		LeaderElect:      true,
		LeaderElectionID: "stateful-migration-manager",
		QPS:              50,
		Burst:            100,
		Workers:          4,
	}
}

// NewCommand returns the `manager` subcommand.
func NewCommand() *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the hub addon manager and migration controllers",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := ctrl.GetConfig()
			if err != nil {
				return fmt.Errorf("loading hub kubeconfig: %w", err)
			}
			return o.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.AgentImage, "agent-image", o.AgentImage, "Image of the agent and mover on managed clusters.")
	f.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "Address of the Prometheus metrics endpoint; 0 disables it.")
	f.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "Address of /healthz and /readyz.")
	f.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Elect a leader so that only one replica acts.")
	f.Float32Var(&o.QPS, "kube-api-qps", o.QPS, "Requests per second to the hub API server, sustained.")
	f.IntVar(&o.Burst, "kube-api-burst", o.Burst, "Requests to the hub API server in a burst.")
	f.IntVar(&o.Workers, "workers", o.Workers, "Policies and Migrations each reconciled at once.")
	f.StringVar(&o.LeaderElectionNS, "leader-election-namespace", o.LeaderElectionNS, "Namespace of the leader lease (default: the pod's namespace).")
	return cmd
}

// Run starts the addon manager inside a controller-runtime manager, which
// supplies leader election, metrics and health probes for every hub controller.
func (o *Options) Run(ctx context.Context, cfg *rest.Config) error {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = o.QPS, o.Burst
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  hub.NewScheme(),
		Cache:                   hub.CacheOptions(),
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.ProbeAddr,
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        o.LeaderElectionID,
		LeaderElectionNamespace: o.LeaderElectionNS,
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
	if err := AddAddonManager(mgr, cfg, o.AgentImage); err != nil {
		return err
	}
	if err := hub.SetupWithManager(mgr, hub.Options{Workers: o.Workers}); err != nil {
		return fmt.Errorf("setting up hub controllers: %w", err)
	}
	klog.InfoS("Starting hub manager", "agentImage", o.AgentImage)
	return mgr.Start(ctx)
}

// AddAddonManager registers the addon-framework manager as a leader-elected
// runnable of mgr. Tests call it directly against envtest.
func AddAddonManager(mgr manager.Manager, cfg *rest.Config, agentImage string) error {
	kubeClient, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	addonClient, err := addonclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	agentAddon, err := NewAgentAddon(kubeClient, addonClient, agentImage)
	if err != nil {
		return fmt.Errorf("building agent addon: %w", err)
	}
	addonMgr, err := addonmanager.New(cfg)
	if err != nil {
		return fmt.Errorf("creating addon manager: %w", err)
	}
	if err := addonMgr.AddAgent(agentAddon); err != nil {
		return err
	}
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if err := addonMgr.Start(ctx); err != nil {
			return fmt.Errorf("starting addon manager: %w", err)
		}
		<-ctx.Done()
		return nil
	}))
}
