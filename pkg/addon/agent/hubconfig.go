package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// loadHubConfig reads the hub kubeconfig that OCM registration writes into
// the agent's secret. Its certificate is rotated in place; client-go reloads
// the referenced cert files, so the config is built only once.
func loadHubConfig(path string) (*rest.Config, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("hub kubeconfig %s does not exist yet: registration of the addon "+
				"on the hub has not completed (see the ManagedClusterAddOn's RegistrationApplied condition)", path)
		}
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("hub kubeconfig %s is invalid: %w", path, err)
	}
	return cfg, nil
}

// waitForHubConfig polls until the hub kubeconfig is usable. A missing secret
// is the normal state right after `clusteradm addon enable`, so it is logged
// and retried instead of crash-looping the pod.
func waitForHubConfig(ctx context.Context, path string, interval time.Duration) (*rest.Config, error) {
	var lastErr string
	for {
		cfg, err := loadHubConfig(path)
		if err == nil {
			return cfg, nil
		}
		if err.Error() != lastErr {
			klog.InfoS("Waiting for the hub kubeconfig", "reason", err.Error(), "retryEvery", interval)
			lastErr = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
	}
}
