package framework

import (
	"context"
	"fmt"
	"path/filepath"

	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// AddonCRDs are OCM's work and addon CRDs: what the addon manager and the
// agents read and write. SpokeCRDs are ours, exactly as the agent ships them.
func AddonCRDs() ([]string, error) {
	dir, err := ModuleDir("open-cluster-management.io/api")
	if err != nil {
		return nil, err
	}
	return []string{
		filepath.Join(dir, "work/v1/0000_00_work.open-cluster-management.io_manifestworks.crd.yaml"),
		filepath.Join(dir, "addon/v1beta1/0000_00_addon.open-cluster-management.io_clustermanagementaddons.crd.yaml"),
		filepath.Join(dir, "addon/v1beta1/0000_01_addon.open-cluster-management.io_managedclusteraddons.crd.yaml"),
		filepath.Join(dir, "addon/v1beta1/0000_02_addon.open-cluster-management.io_addondeploymentconfigs.crd.yaml"),
	}, nil
}

// SpokeCRDs is the directory of the replication CRDs in the agent templates.
func SpokeCRDs() string {
	return filepath.Join(RepoRoot(), "addon", "manifests", "templates", "crds")
}

// StoreAddonsAsV1beta1 serves the v1beta1 addon API that addon-framework
// speaks. On a real hub OCM's conversion webhook makes that possible; envtest
// has no webhook, so v1beta1 becomes the storage version instead.
func StoreAddonsAsV1beta1(ctx context.Context, cfg *rest.Config) error {
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crds := client.ApiextensionsV1().CustomResourceDefinitions()
	for _, name := range []string{
		"managedclusteraddons.addon.open-cluster-management.io",
		"clustermanagementaddons.addon.open-cluster-management.io",
	} {
		crd, err := crds.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading CRD %s: %w", name, err)
		}
		for i, v := range crd.Spec.Versions {
			crd.Spec.Versions[i].Storage = v.Name == "v1beta1"
		}
		if crd, err = crds.Update(ctx, crd, metav1.UpdateOptions{}); err != nil {
			return err
		}
		crd.Status.StoredVersions = []string{"v1beta1"}
		if _, err = crds.UpdateStatus(ctx, crd, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	return nil
}
