package migration

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The shipped dashboard and alert rules query only metrics the manager
// exports: a renamed metric would leave them silently empty.
func TestMonitoringUsesExportedMetrics(t *testing.T) {
	exported := map[string]bool{}
	for _, c := range []prometheus.Collector{migrationsByPhase, downtimeSeconds, phaseDurationSeconds, bytesCopied, lagBytes,
		bytesCopiedTotal, phaseEntered, failures, rpoSeconds} {
		ch := make(chan *prometheus.Desc, 4)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			name := regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String())[1]
			exported[name] = true
		}
	}
	var cm corev1.ConfigMap
	b, err := os.ReadFile("../../../manifests/monitoring/dashboard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal([]byte(cm.Data["stateful-migration.json"]), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	rules, err := os.ReadFile("../../../manifests/monitoring/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	queries := []string{string(rules)}
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			queries = append(queries, q.Expr)
		}
	}
	if len(dash.Panels) < 6 {
		t.Errorf("dashboard has %d panels", len(dash.Panels))
	}
	used := 0
	for _, q := range queries {
		for _, name := range regexp.MustCompile(`stateful_migration_[a-z_]+`).FindAllString(q, -1) {
			base := name
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				base = strings.TrimSuffix(base, s)
			}
			if !exported[base] {
				t.Errorf("%s is queried but not exported", name)
			}
			used++
		}
	}
	if used == 0 {
		t.Fatal("no metric found in the dashboard or the rules")
	}
}
