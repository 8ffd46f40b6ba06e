package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
)

// The measurement behind the README's downtime table, too long for CI: `make bench-e2e`
// (label "bench"; `make test-e2e` leaves it out). The same writer at ~5 MB/s, with
// E2E_DOWNTIME_GIB (default "0.5 2 8") GiB written before it starts, moved once each.
var _ = Describe("Downtime by the data on the volume", Label("bench"), Ordered, func() {
	rows := []string{"| data on the volume | T_term | T_copy | T_launch | **T_down** | app's view | bytes copied | final sync in the running sender |",
		"|---|---|---|---|---|---|---|---|"}
	for _, g := range downtimeSizes() {
		It(fmt.Sprintf("moves the app with %s GiB on its volume, T_copy flat", g), func(ctx context.Context) {
			gib, err := strconv.ParseFloat(g, 64)
			Expect(err).NotTo(HaveOccurred())
			fill := int64(gib * (1 << 30))
			a := deploymentApp
			obs := a.deployWith(ctx, fill, fmt.Sprintf("%dMi", (fill>>20)+1024), fill+256<<20)
			a.runsOn(ctx, obs, cluster1)
			since := time.Now()
			a.selectCluster(ctx, cluster2.name)
			m := a.watchMigration(ctx, cluster1.name, cluster2.name, since, 30*time.Minute, migrationv1alpha1.PhaseCompleted, nil)
			checkMove(obs, m, cluster1, cluster2)
			appDown := obs.view(cluster2.name).firstAck.t.Sub(obs.view(cluster1.name).lastAck.t)
			t := m.Status.Timings
			d := func(x *metav1.Duration) string { return x.Round(10 * time.Millisecond).String() }
			rows = append(rows, fmt.Sprintf("| %s GiB | %s | %s | %s | **%s** | %s | %d MB | %v |", g, d(t.Termination), d(t.FinalSync),
				d(t.Launch), d(t.Downtime), appDown.Round(10*time.Millisecond), m.Status.Progress.BytesCopied/1000000,
				conditionStatus(m, migrationv1alpha1.ConditionFinalSyncInRunningSender)))
		}, NodeTimeout(45*time.Minute))
	}
	AfterAll(func() {
		table := strings.Join(rows, "\n")
		AddReportEntry("downtime by data on the volume", table)
		GinkgoWriter.Println(table)
		fmt.Fprintln(os.Stderr, table)
	})
})

func downtimeSizes() []string {
	if s := os.Getenv("E2E_DOWNTIME_GIB"); s != "" {
		return strings.Fields(s)
	}
	return []string{"0.5", "2", "8"}
}

func conditionStatus(m *migrationv1alpha1.Migration, typ string) string {
	for _, c := range m.Status.Conditions {
		if c.Type == typ {
			return string(c.Status) + " (" + c.Reason + ")"
		}
	}
	return "-"
}
