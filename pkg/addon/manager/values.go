package manager

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"open-cluster-management.io/addon-framework/pkg/addonfactory"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
)

func defaultValues(agentImage string) addonfactory.GetValuesFunc {
	return func(*clusterv1.ManagedCluster, *addonv1beta1.ManagedClusterAddOn) (addonfactory.Values, error) {
		return addonfactory.Values{"Image": agentImage}, nil
	}
}

// deploymentConfigValues turns an AddOnDeploymentConfig into template values.
// Structured fields are rendered as JSON (valid YAML flow style) so that no
// user-supplied string can break or inject into the rendered manifest.
func deploymentConfigValues(config addonv1beta1.AddOnDeploymentConfig) (addonfactory.Values, error) {
	values := addonfactory.Values{}
	if p := config.Spec.NodePlacement; p != nil {
		if len(p.NodeSelector) > 0 {
			if err := setJSON(values, "NodeSelector", p.NodeSelector); err != nil {
				return nil, err
			}
		}
		if len(p.Tolerations) > 0 {
			if err := setJSON(values, "Tolerations", p.Tolerations); err != nil {
				return nil, err
			}
		}
	}
	if env := proxyEnv(config.Spec.ProxyConfig); len(env) > 0 {
		if err := setJSON(values, "Env", env); err != nil {
			return nil, err
		}
	}
	return values, nil
}

func proxyEnv(p addonv1beta1.ProxyConfig) []corev1.EnvVar {
	var env []corev1.EnvVar
	for _, kv := range []struct{ name, value string }{
		{"HTTP_PROXY", p.HTTPProxy}, {"HTTPS_PROXY", p.HTTPSProxy}, {"NO_PROXY", p.NoProxy},
	} {
		if kv.value != "" {
			env = append(env, corev1.EnvVar{Name: kv.name, Value: kv.value})
		}
	}
	return env
}

func setJSON(values addonfactory.Values, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s from AddOnDeploymentConfig: %w", key, err)
	}
	values[key] = string(raw)
	return nil
}
