// Package manager runs the hub side of the addon: it installs and configures
// the agent on every managed cluster through addon-framework.
package manager

import (
	"k8s.io/client-go/kubernetes"
	"open-cluster-management.io/addon-framework/pkg/addonfactory"
	"open-cluster-management.io/addon-framework/pkg/agent"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"

	"github.com/stateful-migration/stateful-migration/addon"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

const (
	// agentName is part of the agent's hub identity; it is fixed so that a
	// manager restart does not re-issue every agent's client certificate.
	agentName = "agent"
)

// NewAgentAddon builds the agent addon: embedded templates rendered with the
// manager's defaults, overridden by the cluster's AddOnDeploymentConfig.
func NewAgentAddon(kubeClient kubernetes.Interface, addonClient addonclient.Interface, agentImage string) (agent.AgentAddon, error) {
	configGetter := utils.NewAddOnDeploymentConfigGetter(addonClient)
	return addonfactory.NewAgentAddonFactory(uplink.AddonName, addon.FS, addon.TemplatesDir).
		WithConfigGVRs(utils.AddOnDeploymentConfigGVR).
		WithGetValuesFuncs(
			defaultValues(agentImage),
			deploymentConfigValuesFunc(configGetter, agentImage),
		).
		WithAgentRegistrationOption(&agent.RegistrationOption{
			Configurations:   agent.KubeClientSignerConfigurations(uplink.AddonName, agentName),
			CSRApproveCheck:  utils.DefaultCSRApprover(agentName),
			PermissionConfig: hubPermissions(kubeClient),
		}).
		WithAgentInstallNamespace(installNamespace(configGetter)).
		WithAgentHealthProber(&agent.HealthProber{Type: agent.HealthProberTypeLease}).
		BuildTemplateAgentAddon()
}
