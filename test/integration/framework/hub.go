package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ManagerIdentity is the hub manager's ServiceAccount, as manifests/ ships it.
var ManagerIdentity = rest.ImpersonationConfig{
	UserName: "system:serviceaccount:open-cluster-management-addon:stateful-migration-manager",
	Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:open-cluster-management-addon", "system:authenticated"},
}

// WriteKubeconfig writes a kubeconfig that authenticates as cfg (the envtest
// admin) and impersonates as: a stand-in for a ServiceAccount's token or an
// agent's hub client certificate.
func WriteKubeconfig(cfg *rest.Config, path string, as rest.ImpersonationConfig) error {
	c := clientcmdapi.NewConfig()
	c.Clusters["hub"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	c.AuthInfos["user"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData,
		Impersonate: as.UserName, ImpersonateGroups: as.Groups,
	}
	c.Contexts["hub"] = &clientcmdapi.Context{Cluster: "hub", AuthInfo: "user"}
	c.CurrentContext = "hub"
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return clientcmd.WriteToFile(*c, path)
}

// InstallHub applies manifests/ exactly as `make deploy` does, with the
// kubectl envtest ships (KUBEBUILDER_ASSETS): CRDs, RBAC, the manager
// Deployment (never scheduled on envtest), the ClusterManagementAddOn and
// the admission policy. dir holds the admin kubeconfig it writes.
func InstallHub(cfg *rest.Config, dir string) error {
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	if err := WriteKubeconfig(cfg, kubeconfig, rest.ImpersonationConfig{}); err != nil {
		return err
	}
	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	out, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "apply", "-k", filepath.Join(RepoRoot(), "manifests")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl apply -k manifests/: %w: %s", err, out)
	}
	return nil
}
