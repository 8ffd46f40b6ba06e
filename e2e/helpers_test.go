package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	. "github.com/onsi/gomega"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// applyFile server-side applies the YAML documents of a testdata file after
// substituting ${NAME} from vars (an unknown name is an error, not "").
func applyFile(ctx context.Context, c client.Client, path string, vars map[string]string) {
	raw, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	var missing []string
	text := os.Expand(string(raw), func(k string) string {
		if k == "$" { // $$ is a literal $ (shell scripts in manifests)
			return "$"
		}
		v, ok := vars[k]
		if !ok {
			missing = append(missing, k)
		}
		return v
	})
	Expect(missing).To(BeEmpty(), "variables not given for %s", path)
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(text)), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return
		} else {
			Expect(err).NotTo(HaveOccurred(), "decoding %s", path)
		}
		if len(u.Object) == 0 {
			continue
		}
		Expect(c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("e2e"), client.ForceOwnership)).
			To(Succeed(), "applying %s %s", u.GetKind(), u.GetName())
	}
}

var addonGVK = schema.GroupVersionKind{Group: "addon.open-cluster-management.io", Version: "v1alpha1", Kind: "ManagedClusterAddOn"}

// addonAvailable is nil when the stateful-migration addon of a cluster is Available.
func addonAvailable(ctx context.Context, clusterName string) error {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(addonGVK)
	if err := hub.c.Get(ctx, client.ObjectKey{Namespace: clusterName, Name: "stateful-migration"}, u); err != nil {
		return err
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Available" {
			if m["status"] == "True" {
				return nil
			}
			return fmt.Errorf("addon on %s: Available=%v %v: %v", clusterName, m["status"], m["reason"], m["message"])
		}
	}
	return fmt.Errorf("addon on %s reports no Available condition yet", clusterName)
}

// fields parses "k=v k=v" (the writer's output lines) into a map.
func fields(line string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			out[k] = v
		}
	}
	return out
}
