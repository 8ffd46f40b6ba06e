// Command stateful-migration is the single binary of the addon: the hub
// manager, the managed-cluster agent and the data mover.
package main

import (
	goflag "flag"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/stateful-migration/stateful-migration/pkg/addon/agent"
	"github.com/stateful-migration/stateful-migration/pkg/addon/manager"
	"github.com/stateful-migration/stateful-migration/pkg/mover/cli"
	"github.com/stateful-migration/stateful-migration/pkg/version"
)

func main() {
	klog.InitFlags(nil)
	// One logger for our code, controller-runtime and addon-framework alike.
	ctrl.SetLogger(klog.NewKlogr())

	root := &cobra.Command{
		Use:           "stateful-migration",
		Short:         "Move stateful applications and their volumes between OCM managed clusters",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Of the Go flags (klog, controller-runtime) only these are ours to offer.
	for _, name := range []string{"v", "vmodule", "kubeconfig"} {
		if f := goflag.CommandLine.Lookup(name); f != nil {
			root.PersistentFlags().AddGoFlag(f)
		}
	}
	root.AddCommand(manager.NewCommand(), agent.NewCommand(), cli.NewCommand())

	ctx := ctrl.SetupSignalHandler()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
