// Package framework starts what the integration suites share: a real
// kube-apiserver and etcd (envtest, KUBEBUILDER_ASSETS) with OCM's cluster
// CRDs and ours, and OCM's real placement scheduler in-process.
package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/openshift/library-go/pkg/controller/controllercmd"
	"github.com/openshift/library-go/pkg/operator/events"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	workv1 "open-cluster-management.io/api/work/v1"
	workv1alpha1 "open-cluster-management.io/api/work/v1alpha1"
	placementcontrollers "open-cluster-management.io/ocm/pkg/placement/controllers"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
)

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// ModuleDir is where a dependency's source lives (CRD YAMLs ship in the api module).
func ModuleDir(module string) (string, error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Dir = RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w", module, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// ClusterCRDs are OCM's cluster API CRDs the scheduler needs.
func ClusterCRDs() ([]string, error) {
	dir, err := ModuleDir("open-cluster-management.io/api")
	if err != nil {
		return nil, err
	}
	return []string{
		filepath.Join(dir, "cluster/v1/0000_00_clusters.open-cluster-management.io_managedclusters.crd.yaml"),
		filepath.Join(dir, "cluster/v1alpha1/0000_05_clusters.open-cluster-management.io_addonplacementscores.crd.yaml"),
		filepath.Join(dir, "cluster/v1beta2/0000_00_clusters.open-cluster-management.io_managedclustersets.crd.yaml"),
		filepath.Join(dir, "cluster/v1beta2/0000_01_clusters.open-cluster-management.io_managedclustersetbindings.crd.yaml"),
		filepath.Join(dir, "cluster/v1beta1/0000_02_clusters.open-cluster-management.io_placements.crd.yaml"),
		filepath.Join(dir, "cluster/v1beta1/0000_03_clusters.open-cluster-management.io_placementdecisions.crd.yaml"),
	}, nil
}

// NewEnv returns an envtest environment with the cluster CRDs, the hub CRDs
// of manifests/crds and any extra paths.
func NewEnv(extra ...string) (*envtest.Environment, error) {
	paths, err := ClusterCRDs()
	if err != nil {
		return nil, err
	}
	paths = append(paths, filepath.Join(RepoRoot(), "manifests", "crds"))
	return &envtest.Environment{
		CRDDirectoryPaths:     append(paths, extra...),
		ErrorIfCRDPathMissing: true,
	}, nil
}

// Scheme holds core, OCM cluster and our hub types.
func Scheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(clusterv1.AddToScheme(s))
	utilruntime.Must(clusterv1beta1.AddToScheme(s))
	utilruntime.Must(clusterv1beta2.AddToScheme(s))
	utilruntime.Must(migrationv1alpha1.AddToScheme(s))
	utilruntime.Must(workv1alpha1.Install(s))
	return s
}

// ManifestWorkReplicaSetCRD is the CRD of the app's delivery, whose
// namespaces a policy may name (pkg/hub/tenancy).
func ManifestWorkReplicaSetCRD() (string, error) {
	dir, err := ModuleDir("open-cluster-management.io/api")
	return filepath.Join(dir, "work/v1alpha1/0000_00_work.open-cluster-management.io_manifestworkreplicasets.crd.yaml"), err
}

// AppDelivery is a ManifestWorkReplicaSet using the placements that delivers
// a Namespace manifest for each of namespaces, orphaned on delete: what makes
// a policy of those placements allowed to move volumes there, safely.
func AppDelivery(ns, name string, placements []string, namespaces ...string) *workv1alpha1.ManifestWorkReplicaSet {
	m := &workv1alpha1.ManifestWorkReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, p := range placements {
		m.Spec.PlacementRefs = append(m.Spec.PlacementRefs, workv1alpha1.LocalPlacementReference{Name: p})
	}
	t := &m.Spec.ManifestWorkTemplate
	t.Workload.Manifests = []workv1.Manifest{}
	t.DeleteOption = &workv1.DeleteOption{PropagationPolicy: workv1.DeletePropagationPolicyTypeSelectivelyOrphan,
		SelectivelyOrphan: &workv1.SelectivelyOrphan{}}
	for _, n := range namespaces {
		raw := fmt.Sprintf(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":%q}}`, n)
		t.Workload.Manifests = append(t.Workload.Manifests, workv1.Manifest{RawExtension: k8sruntime.RawExtension{Raw: []byte(raw)}})
		t.DeleteOption.SelectivelyOrphan.OrphaningRules = append(t.DeleteOption.SelectivelyOrphan.OrphaningRules,
			workv1.OrphaningRule{Resource: "namespaces", Name: n})
	}
	return m
}

// Manifest renders obj (with its apiVersion and kind) as a ManifestWork manifest.
func Manifest(raw string) workv1.Manifest {
	return workv1.Manifest{RawExtension: k8sruntime.RawExtension{Raw: []byte(raw)}}
}

// StartScheduler runs OCM's placement controllers until ctx ends, the way
// ocm's own integration suite does.
func StartScheduler(ctx context.Context, cfg *rest.Config) {
	go func() {
		_ = placementcontrollers.RunControllerManager(ctx, &controllercmd.ControllerContext{
			KubeConfig:    cfg,
			EventRecorder: events.NewInMemoryRecorder("integration", clock.RealClock{}),
		})
	}()
}

// ApplyFile creates every object of a multi-document YAML file (e.g. the
// admission policy in manifests/), as the hub's installer would.
func ApplyFile(ctx context.Context, c client.Client, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := yaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := c.Create(ctx, u); err != nil {
			return fmt.Errorf("%s: creating %s %s: %w", path, u.GetKind(), u.GetName(), err)
		}
	}
}
