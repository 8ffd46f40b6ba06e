package manager

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"open-cluster-management.io/addon-framework/pkg/addonfactory"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
)

// The framework's errors about an AddOnDeploymentConfig ("desired spec hash is
// empty", a bare NotFound) do not say which config is at fault or what to do.
// These wrappers turn them into messages a user can act on; they surface in the
// ManagedClusterAddOn's ManifestApplied condition.

func installNamespace(getter utils.AddOnDeploymentConfigGetter) func(context.Context, *addonv1beta1.ManagedClusterAddOn) (string, error) {
	resolve := utils.AgentInstallNamespaceFromDeploymentConfigFunc(getter)
	return func(ctx context.Context, addon *addonv1beta1.ManagedClusterAddOn) (string, error) {
		ns, err := resolve(ctx, addon)
		return ns, explainConfigError(ctx, getter, addon, err)
	}
}

func deploymentConfigValuesFunc(getter utils.AddOnDeploymentConfigGetter, agentImage string) addonfactory.GetValuesFunc {
	values := addonfactory.GetAddOnDeploymentConfigValues(getter,
		deploymentConfigValues, addonfactory.ToImageOverrideValuesFunc("Image", agentImage))
	return func(cluster *clusterv1.ManagedCluster, addon *addonv1beta1.ManagedClusterAddOn) (addonfactory.Values, error) {
		v, err := values(cluster, addon)
		return v, explainConfigError(context.TODO(), getter, addon, err)
	}
}

func explainConfigError(ctx context.Context, getter utils.AddOnDeploymentConfigGetter, addon *addonv1beta1.ManagedClusterAddOn, err error) error {
	if err == nil {
		return nil
	}
	ok, ref := utils.GetAddOnConfigRef(addon.Status.ConfigReferences,
		utils.AddOnDeploymentConfigGVR.Group, utils.AddOnDeploymentConfigGVR.Resource)
	if !ok || ref.DesiredConfig == nil {
		return err
	}
	name := ref.DesiredConfig.Namespace + "/" + ref.DesiredConfig.Name
	if _, getErr := getter.Get(ctx, ref.DesiredConfig.Namespace, ref.DesiredConfig.Name); apierrors.IsNotFound(getErr) {
		return fmt.Errorf("AddOnDeploymentConfig %s referenced by this addon does not exist: create it or remove the reference", name)
	}
	return fmt.Errorf("AddOnDeploymentConfig %s cannot be used: %w", name, err)
}
