package manager

import (
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/version"
	"open-cluster-management.io/addon-framework/pkg/addonfactory"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
)

func defaultValues(agentImage string) addonfactory.GetValuesFunc {
	return func(cluster *clusterv1.ManagedCluster, _ *addonv1beta1.ManagedClusterAddOn) (addonfactory.Values, error) {
		return addonfactory.Values{"Image": agentImage, "PVAdmissionPolicy": hasAdmissionPolicyV1(cluster)}, nil
	}
}

// hasAdmissionPolicyV1: ValidatingAdmissionPolicy is GA from Kubernetes 1.30.
// A cluster that has not reported its version yet is taken to be current
// (the policy is then retried by the work agent, not silently left out).
func hasAdmissionPolicyV1(cluster *clusterv1.ManagedCluster) bool {
	v, err := version.ParseGeneric(cluster.Status.Version.Kubernetes)
	if err != nil {
		return true
	}
	return v.AtLeast(version.MajorMinor(1, 30))
}

// deploymentConfigValues turns an AddOnDeploymentConfig into template values.
// Structured fields are rendered as JSON (valid YAML flow style) so that no
// user-supplied string can break or inject into the rendered manifest.
func deploymentConfigValues(config addonv1beta1.AddOnDeploymentConfig) (addonfactory.Values, error) {
	if err := validateNodePlacement(config.Spec.NodePlacement); err != nil {
		return nil, err
	}
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

// validateNodePlacement rejects what the spoke API server would reject, so the
// mistake is reported on the hub, naming the config, instead of as a failed
// Deployment on the managed cluster.
func validateNodePlacement(p *addonv1beta1.NodePlacement) error {
	if p == nil {
		return nil
	}
	var errs []error
	for k, v := range p.NodeSelector {
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, fmt.Errorf("nodePlacement.nodeSelector key %q: %s", k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			errs = append(errs, fmt.Errorf("nodePlacement.nodeSelector[%q] value %q: %s", k, v, msg))
		}
	}
	for i, t := range p.Tolerations {
		switch t.Operator {
		case corev1.TolerationOpExists:
			if t.Value != "" {
				errs = append(errs, fmt.Errorf("nodePlacement.tolerations[%d]: operator Exists takes no value", i))
			}
		case corev1.TolerationOpEqual, "":
		default:
			errs = append(errs, fmt.Errorf("nodePlacement.tolerations[%d]: operator %q is not Exists or Equal", i, t.Operator))
		}
		switch t.Effect {
		case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			errs = append(errs, fmt.Errorf("nodePlacement.tolerations[%d]: unknown effect %q", i, t.Effect))
		}
		if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
			errs = append(errs, fmt.Errorf("nodePlacement.tolerations[%d]: tolerationSeconds needs effect NoExecute", i))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid: %w", errors.Join(errs...))
	}
	return nil
}
