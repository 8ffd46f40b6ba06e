package hooks

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// Target is one container a hook runs in.
type Target struct{ Pod, Container string }

// Targets picks where h runs: every running pod, not being deleted and not
// a mover, that mounts one of pvcs and matches h's selector; with ready,
// only Ready pods. The container is h's, else the pod's first container
// that mounts one of pvcs. A named container missing from a pod is an error.
func Targets(pods []corev1.Pod, pvcs []string, h *replv1.Hook, ready bool) ([]Target, error) {
	sel := labels.Everything()
	if h.Selector != nil {
		var err error
		if sel, err = metav1.LabelSelectorAsSelector(h.Selector); err != nil {
			return nil, fmt.Errorf("hook selector: %w", err)
		}
	}
	var out []Target
	for i := range pods {
		p := &pods[i]
		if moverpod.IsMover(p) || !p.DeletionTimestamp.IsZero() || p.Status.Phase != corev1.PodRunning ||
			!sel.Matches(labels.Set(p.Labels)) || (ready && !moverpod.PodReady(p)) {
			continue
		}
		claims := map[string]bool{}
		for _, v := range p.Spec.Volumes {
			for _, c := range pvcs {
				if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == c {
					claims[v.Name] = true
				}
			}
		}
		if len(claims) == 0 {
			continue
		}
		c, err := container(p, h.Container, claims)
		if err != nil {
			return nil, err
		}
		out = append(out, Target{Pod: p.Name, Container: c})
	}
	return out, nil
}

func container(p *corev1.Pod, named string, claims map[string]bool) (string, error) {
	for _, c := range p.Spec.Containers {
		if named != "" && c.Name == named {
			return named, nil
		}
	}
	if named != "" {
		return "", fmt.Errorf("pod %s has no container %q", p.Name, named)
	}
	for _, c := range p.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if claims[m.Name] {
				return c.Name, nil
			}
		}
		for _, d := range c.VolumeDevices {
			if claims[d.Name] {
				return c.Name, nil
			}
		}
	}
	return p.Spec.Containers[0].Name, nil
}

// In returns the lookup of Targets among the pods of namespace, read
// through c when a run starts.
func In(ctx context.Context, c client.Reader, namespace string, pvcs []string, h *replv1.Hook, ready bool) func() ([]Target, error) {
	return func() ([]Target, error) {
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(namespace)); err != nil {
			return nil, err
		}
		return Targets(pods.Items, pvcs, h, ready)
	}
}
