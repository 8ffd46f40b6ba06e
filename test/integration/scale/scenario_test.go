package scale

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	workv1 "open-cluster-management.io/api/work/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/test/integration/framework"
)

// restWindow is how long the hub is watched at rest.
var restWindow = time.Duration(envInt("SCALE_REST_SECONDS", 20)) * time.Second

// table collects the figures printed after the suite (and by make bench-hub).
var table []string

func row(scenario string, cols ...string) {
	line := fmt.Sprintf("SCALE | N=%d | %s | %s", size.clusters, scenario, strings.Join(cols, " | "))
	table = append(table, line)
	AddReportEntry(scenario, line)
}

var _ = ReportAfterSuite("fleet figures", func(Report) {
	for _, l := range table {
		fmt.Println(l)
	}
})

var _ = Describe("The hub of a fleet", Ordered, func() {
	It("at rest, makes requests independent of the fleet's size", func() {
		By("the addon manager rendering every cluster's agent")
		start := time.Now()
		Eventually(func() int {
			var l workv1.ManifestWorkList
			Expect(k8s.List(suiteCtx, &l, client.MatchingFields{"metadata.name": "addon-stateful-migration-deploy-0"})).To(Succeed())
			return len(l.Items)
		}, 5*time.Minute, time.Second).Should(Equal(size.clusters))
		rendered := time.Since(start)
		By("waiting for the start-up work to end: 5 s without a request")
		Eventually(func() float64 {
			r0, err := requests()
			Expect(err).NotTo(HaveOccurred())
			time.Sleep(5 * time.Second)
			r1, err := requests()
			Expect(err).NotTo(HaveOccurred())
			return r1["all"] - r0["all"]
		}, 10*time.Minute).Should(BeZero())
		settled := time.Since(start)
		r0, err := requests()
		Expect(err).NotTo(HaveOccurred())
		cpu0, _, _ := usage()
		time.Sleep(restWindow)
		r1, err := requests()
		Expect(err).NotTo(HaveOccurred())
		cpu1, rss, peak := usage()
		rate := (r1["all"] - r0["all"]) / restWindow.Seconds()
		row("at rest", fmt.Sprintf("agents rendered in %s, start-up done in %s", rendered.Round(100*time.Millisecond), settled.Round(time.Second)),
			fmt.Sprintf("requests %.2f/s %v", rate, perSecond(diff(r1, r0), restWindow)), fmt.Sprintf("CPU %.1f%%", 100*(cpu1-cpu0)/restWindow.Seconds()),
			fmt.Sprintf("RSS %s (peak %s, %s per cluster)", mib(rss), mib(peak), kib(rss/int64(size.clusters))))
		// Every lease renewed meanwhile (N per minute) must cost the hub nothing.
		Expect(rate).To(BeNumerically("<", 1), "the hub's requests at rest: %v", diff(r1, r0))
	})

	It("moves apps started at once by Placement edits, each step answered promptly", func() {
		apps := make([]string, size.migrations)
		parallel(size.migrations, func(i int) error {
			apps[i] = fmt.Sprintf("app-%04d", i)
			return createApp(suiteCtx, apps[i], clusterName(i))
		})
		waitConverged(apps)
		moveAll(fmt.Sprintf("%d moves at once", size.migrations), apps, func(i int) string { return clusterName(size.clusters - 1 - i) })
	})

	It("moves many apps off one cluster at once", func() {
		n := min(size.migrations, size.clusters-1)
		apps := make([]string, n)
		parallel(n, func(i int) error {
			apps[i] = fmt.Sprintf("one-%04d", i)
			return createApp(suiteCtx, apps[i], clusterName(0))
		})
		waitConverged(apps)
		moveAll(fmt.Sprintf("%d moves off one cluster", n), apps, func(i int) string { return clusterName(1 + i) })
	})
})

// moveAll edits every app's Placement to target(i) at once and waits for all
// its moves to complete, then records the figures.
func moveAll(scenario string, apps []string, target func(i int) string) {
	theSim.reset()
	r0, err := requests()
	Expect(err).NotTo(HaveOccurred())
	rec0, err := scrape("controller_runtime_reconcile_total{", "controller")
	Expect(err).NotTo(HaveOccurred())
	cpu0, _, _ := usage()
	start := time.Now()
	parallel(len(apps), func(i int) error { return selectCluster(suiteCtx, apps[i], target(i)) })
	Eventually(func() int {
		var l migrationv1alpha1.MigrationList
		Expect(k8s.List(suiteCtx, &l)).To(Succeed())
		n := 0
		for _, m := range l.Items {
			if slices.Contains(apps, m.Namespace) && m.CurrentPhase() == migrationv1alpha1.PhaseCompleted {
				n++
			}
		}
		return n
	}, 5*time.Minute, 250*time.Millisecond).Should(Equal(len(apps)))
	took := time.Since(start)
	r1, err := requests()
	Expect(err).NotTo(HaveOccurred())
	cpu1, rss, peak := usage()
	rec1, err := scrape("controller_runtime_reconcile_total{", "controller")
	Expect(err).NotTo(HaveOccurred())
	perMove := func(a, b map[string]float64, k string) string {
		return fmt.Sprintf("%.0f", (a[k]-b[k])/float64(len(apps)))
	}
	all := theSim.all()
	p50, p99, worst := percentile(all, 50), percentile(all, 99), percentile(all, 100)
	row(scenario, fmt.Sprintf("reaction p50 %s p99 %s max %s (%d steps)", ms(p50), ms(p99), ms(worst), len(all)),
		fmt.Sprintf("all completed in %s", took.Round(100*time.Millisecond)),
		fmt.Sprintf("requests %.1f/s, %s per move (reconciles per move: %s Migration, %s policy)", (r1["all"]-r0["all"])/took.Seconds(),
			perMove(r1, r0, "all"), perMove(rec1, rec0, "migration-sequencing"), perMove(rec1, rec0, "migrationpolicy-placement")),
		fmt.Sprintf("CPU %.0f%%", 100*(cpu1-cpu0)/took.Seconds()), fmt.Sprintf("RSS %s (peak %s)", mib(rss), mib(peak)))
	for _, m := range []string{"workqueue_queue_duration_seconds", "controller_runtime_reconcile_time_seconds", "rest_client_rate_limiter_duration_seconds"} {
		sum, _ := scrape(m+"_sum", "name")
		n, _ := scrape(m+"_count", "name")
		for k, v := range sum {
			if n[k] > 0 && k != "all" {
				GinkgoWriter.Printf("  %s{%s}: %d, mean %s\n", m, k, int(n[k]), ms(time.Duration(v/n[k]*float64(time.Second))))
			}
		}
	}
	GinkgoWriter.Printf("  requests by verb: %s\n", perSecond(diff(r1, r0), took))
	for _, st := range steps {
		d := theSim.of(st)
		GinkgoWriter.Printf("  %-42s n=%-4d p50 %-8s p99 %-8s\n", st, len(d), ms(percentile(d, 50)), ms(percentile(d, 99)))
		Expect(d).To(HaveLen(len(apps)), "every move reacted to %q once", st)
	}
	// The target is 1 s at 1,000 clusters (docs/scale.md has where it
	// stands); the bound here catches a hub that queues its reactions in
	// make test's small fleet. make bench-hub measures larger ones and
	// reports what it finds (SCALE_MEASURE_ONLY).
	if os.Getenv("SCALE_MEASURE_ONLY") == "" {
		Expect(p99).To(BeNumerically("<", 2*time.Second), "p99 of the hub's reactions")
	}
}

// createApp enrols one app on cluster: its namespace bound to the fleet's
// set, a Placement choosing cluster by name, the app's delivery
// (ManifestWorkReplicaSet) and a MigrationPolicy moving its PVC data.
func createApp(ctx context.Context, ns, cluster string) error {
	appNS := "data-" + ns
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&clusterv1beta2.ManagedClusterSetBinding{ObjectMeta: metav1.ObjectMeta{Name: clusterSet, Namespace: ns},
			Spec: clusterv1beta2.ManagedClusterSetBindingSpec{ClusterSet: clusterSet}},
		placementOn(ns, cluster),
		framework.AppDelivery(ns, "web-app", []string{"web"}, appNS),
		&migrationv1alpha1.MigrationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-policy"},
			Spec: migrationv1alpha1.MigrationPolicySpec{
				PlacementRef:        migrationv1alpha1.PlacementRef{Name: "web"},
				Volumes:             []migrationv1alpha1.VolumeSelection{{Namespace: appNS, Names: []string{"data"}}},
				StorageClassMapping: []migrationv1alpha1.StorageClassMapping{{Source: "standard", Destination: "standard"}},
			}},
	} {
		if err := k8s.Create(ctx, o); err != nil {
			return fmt.Errorf("%T: %w", o, err)
		}
	}
	return nil
}

func placementOn(ns, cluster string) *clusterv1beta1.Placement {
	p := &clusterv1beta1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
	p.Spec.ClusterSets = []string{clusterSet}
	p.Spec.Predicates = []clusterv1beta1.ClusterPredicate{{RequiredClusterSelector: clusterv1beta1.ClusterSelector{
		LabelSelector: metav1.LabelSelector{MatchLabels: map[string]string{"name": cluster}}}}}
	return p
}

func selectCluster(ctx context.Context, ns, cluster string) error {
	p := &clusterv1beta1.Placement{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, p); err != nil {
		return err
	}
	p.Spec.Predicates = placementOn(ns, cluster).Spec.Predicates
	return k8s.Update(ctx, p)
}

// waitConverged waits until every app's policy says its actual decision is
// the desired one.
func waitConverged(apps []string) {
	Eventually(func() []string {
		var l migrationv1alpha1.MigrationPolicyList
		Expect(k8s.List(suiteCtx, &l)).To(Succeed())
		var not []string
		for _, ns := range apps {
			i := slices.IndexFunc(l.Items, func(p migrationv1alpha1.MigrationPolicy) bool { return p.Namespace == ns })
			if i < 0 {
				not = append(not, ns+": no policy")
				continue
			}
			c := meta.FindStatusCondition(l.Items[i].Status.Conditions, migrationv1alpha1.ConditionConverged)
			if c == nil || c.Reason != migrationv1alpha1.ReasonActualMatchesDesired {
				not = append(not, fmt.Sprintf("%s: %v", ns, c))
			}
		}
		return not
	}, 5*time.Minute, 500*time.Millisecond).Should(BeEmpty())
}

func (s *sim) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reactions = map[string][]time.Duration{}
}

func (s *sim) of(step string) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reactions[step])
}

func (s *sim) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	for _, d := range s.reactions {
		out = append(out, d...)
	}
	return out
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(math.Ceil(p/100*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

func diff(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// perSecond turns request counts by verb into rates.
func perSecond(n map[string]float64, over time.Duration) string {
	var out []string
	for k, v := range n {
		if k != "all" {
			out = append(out, fmt.Sprintf("%s %.2f", k, v/over.Seconds()))
		}
	}
	sort.Strings(out)
	return "(" + strings.Join(out, ", ") + ")"
}

func ms(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }
func mib(b int64) string        { return fmt.Sprintf("%.0fMiB", float64(b)/(1<<20)) }
func kib(b int64) string        { return fmt.Sprintf("%.0fKiB", float64(b)/(1<<10)) }
