package e2e

import (
	"context"
	"fmt"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
)

// app is one writer app as the user delivers it: a hub namespace holding its
// Placement, ManifestWorkReplicaSet and MigrationPolicy (all named "writer"),
// and the same namespace on the managed clusters.
type app struct {
	ns, file, selector string
}

const appName = "writer"

// deploy removes what a previous run left, applies the app selecting cluster1,
// and starts observing it; everything is removed again after the container.
func (a app) deploy(ctx context.Context) *observer {
	return a.deployWith(ctx, prefill, "1Gi", 768<<20)
}

// deployWith is deploy with the data written before the app starts its
// ~5 MB/s, the PVC size and the writer's retention bound.
func (a app) deployWith(ctx context.Context, fill int64, size string, maxBytes int64) *observer {
	return a.deployWithVars(ctx, map[string]string{
		"WRITER_IMAGE": writerImage, "CLUSTER": cluster1.name, "PREFILL": strconv.FormatInt(fill, 10),
		"SIZE": size, "MAX_BYTES": strconv.FormatInt(maxBytes, 10),
	})
}

// deployWithVars is deploy with the file's variables given.
func (a app) deployWithVars(ctx context.Context, vars map[string]string) *observer {
	a.remove(ctx)
	applyFile(ctx, hub.c, a.file, vars)
	octx, cancel := context.WithCancel(context.Background())
	obs := observe(octx, a.ns, a.selector, cluster1, cluster2)
	DeferCleanup(func(ctx context.Context) {
		cancel()
		a.remove(ctx)
	}, NodeTimeout(5*time.Minute))
	return obs
}

// runsOn waits until the app acknowledges writes on c and its policy enrolled the Placement.
func (a app) runsOn(ctx context.Context, obs *observer, c *cluster) {
	Eventually(func() int { return obs.view(c.name).acks }, 5*time.Minute, time.Second).Should(BeNumerically(">", 40),
		"the writer on %s acknowledges records", c.name)
	Eventually(func(g Gomega) {
		p := &migrationv1alpha1.MigrationPolicy{}
		g.Expect(hub.c.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: appName}, p)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(p.Status.Conditions, migrationv1alpha1.ConditionEnrolled)).To(BeTrue(), "policy conditions: %v", p.Status.Conditions)
		g.Expect(a.actual(ctx)).To(Equal([]string{c.name}))
	}, 2*time.Minute, time.Second).Should(Succeed())
}

// selectCluster edits the app's Placement to select one cluster: the user's only action.
func (a app) selectCluster(ctx context.Context, name string) {
	p := &clusterv1beta1.Placement{}
	Expect(hub.c.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: appName}, p)).To(Succeed())
	patch := fmt.Sprintf(`{"spec":{"predicates":[{"requiredClusterSelector":{"labelSelector":{"matchLabels":{%q:%q}}}}]}}`, nameLabel, name)
	Expect(hub.c.Patch(ctx, p, client.RawPatch("application/merge-patch+json", []byte(patch)))).To(Succeed())
}

func (a app) patchPolicy(ctx context.Context, patch string) {
	p := &migrationv1alpha1.MigrationPolicy{}
	Expect(hub.c.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: appName}, p)).To(Succeed())
	Expect(hub.c.Patch(ctx, p, client.RawPatch("application/merge-patch+json", []byte(patch)))).To(Succeed())
}

// actual is the clusters the user's Placement decides (what the app follows).
func (a app) actual(ctx context.Context) ([]string, error) {
	var l clusterv1beta1.PlacementDecisionList
	if err := hub.c.List(ctx, &l, client.InNamespace(a.ns), client.MatchingLabels{clusterv1beta1.PlacementLabel: appName}); err != nil {
		return nil, err
	}
	var out []string
	for _, d := range l.Items {
		for _, c := range d.Status.Decisions {
			out = append(out, c.ClusterName)
		}
	}
	return out, nil
}

// watchMigration waits for the Migration src -> dst created since then to
// reach phase want, logging each change and calling during (if set) on every
// poll; any other terminal phase stops it at once.
func (a app) watchMigration(ctx context.Context, src, dst string, since time.Time, timeout time.Duration, want migrationv1alpha1.MigrationPhase,
	during func(*migrationv1alpha1.Migration)) *migrationv1alpha1.Migration {
	var m *migrationv1alpha1.Migration
	last := ""
	Eventually(func(g Gomega) {
		m = a.newestMigration(ctx, g, src, dst, since)
		now := fmt.Sprintf("%s %s %s", m.Status.Phase, m.Status.Reason, m.Status.Message)
		if now != last {
			GinkgoWriter.Printf("%s migration %s/%s: %s (copied %d/%d bytes, lag %d)\n", time.Now().Format("15:04:05.000"),
				m.Namespace, m.Name, now, m.Status.Progress.BytesCopied, m.Status.Progress.BytesTotal, m.Status.Progress.LagBytes)
			last = now
		}
		if during != nil {
			during(m)
		}
		switch m.Status.Phase {
		case want:
		case migrationv1alpha1.PhaseCompleted, migrationv1alpha1.PhaseFailed, migrationv1alpha1.PhaseRolledBack:
			StopTrying(fmt.Sprintf("migration %s ended %s: %s: %s", m.Name, m.Status.Phase, m.Status.Reason, m.Status.Message)).Now()
		}
		g.Expect(m.Status.Phase).To(Equal(want))
	}, timeout, 200*time.Millisecond).Should(Succeed())
	return m
}

// newestMigration is the most recently created Migration src -> dst, if it
// was created since then (API timestamps have whole seconds).
func (a app) newestMigration(ctx context.Context, g Gomega, src, dst string, since time.Time) *migrationv1alpha1.Migration {
	var l migrationv1alpha1.MigrationList
	g.Expect(hub.c.List(ctx, &l, client.InNamespace(a.ns))).To(Succeed())
	var m *migrationv1alpha1.Migration
	for i := range l.Items {
		it := &l.Items[i]
		if it.Spec.SourceCluster == src && it.Spec.DestinationCluster == dst &&
			(m == nil || m.CreationTimestamp.Before(&it.CreationTimestamp)) {
			m = it
		}
	}
	g.Expect(m).NotTo(BeNil(), "no Migration %s -> %s yet", src, dst)
	g.Expect(m.CreationTimestamp.Time).NotTo(BeTemporally("<", since.Truncate(time.Second)), "no new Migration %s -> %s yet", src, dst)
	return m
}

// remove deletes the app from the hub and whatever OCM orphaned on the spokes
// (namespace, PVCs) including retained volumes, and waits until they are gone.
func (a app) remove(ctx context.Context) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.ns}}
	Expect(client.IgnoreNotFound(hub.c.Delete(ctx, ns))).To(Succeed())
	Eventually(func() bool { return apierrors.IsNotFound(hub.c.Get(ctx, client.ObjectKeyFromObject(ns), ns)) },
		3*time.Minute, time.Second).Should(BeTrue(), "hub namespace %s deleted", a.ns)
	for _, c := range []*cluster{cluster1, cluster2} {
		Expect(client.IgnoreNotFound(c.c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.ns}}))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(c.c.Get(ctx, client.ObjectKey{Name: a.ns}, &corev1.Namespace{}))
		}, 3*time.Minute, time.Second).Should(BeTrue(), "namespace %s deleted on %s", a.ns, c.name)
		// The migration left the source PVs Retain: hand them back to the
		// provisioner (Delete), which removes their data from the node too.
		var pvs corev1.PersistentVolumeList
		Expect(c.c.List(ctx, &pvs)).To(Succeed())
		for i := range pvs.Items {
			pv := &pvs.Items[i]
			if ref := pv.Spec.ClaimRef; ref == nil || ref.Namespace != a.ns {
				continue
			}
			patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"persistentVolumeReclaimPolicy":"Delete"}}`))
			Expect(client.IgnoreNotFound(c.c.Patch(ctx, pv, patch))).To(Succeed())
			Eventually(func() bool {
				return apierrors.IsNotFound(c.c.Get(ctx, client.ObjectKeyFromObject(pv), &corev1.PersistentVolume{}))
			},
				2*time.Minute, time.Second).Should(BeTrue(), "PV %s reclaimed on %s", pv.Name, c.name)
		}
	}
}
