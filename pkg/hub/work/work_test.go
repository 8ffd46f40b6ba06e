package work

import (
	"encoding/json"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	workv1 "open-cluster-management.io/api/work/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

func common() Common {
	m := &migrationv1alpha1.Migration{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web-c1-to-c2", UID: "abcdef12-3456"},
		Spec: migrationv1alpha1.MigrationSpec{PolicyName: "web-policy"}}
	return Common{Migration: m, ID: MigrationID(m), Cluster: "c1", AgentNS: "agent-ns"}
}

func sources(t *testing.T, w *workv1.ManifestWork) []replv1.ReplicationSource {
	t.Helper()
	var out []replv1.ReplicationSource
	for _, mf := range w.Spec.Workload.Manifests {
		var rs replv1.ReplicationSource
		if err := json.Unmarshal(mf.Raw, &rs); err != nil {
			t.Fatal(err)
		}
		if rs.Kind == "ReplicationSource" {
			out = append(out, rs)
		}
	}
	return out
}

func TestSourceWorkCarriesReplicationOnlyWithEndpoints(t *testing.T) {
	c := common()
	if c.ID != "abcdef12" {
		t.Fatalf("MigrationID = %q, want the UID's first 8 characters", c.ID)
	}
	vols := []VolumeRef{{Namespace: "db", PVCName: "data"}, {Namespace: "db", PVCName: "wal"}, {Namespace: "web", PVCName: "files"}}
	probe, err := Source(SourceSpec{Common: c, Volumes: vols})
	if err != nil {
		t.Fatal(err)
	}
	if probe.Name != SourceName(c.ID) || probe.Namespace != "c1" || probe.Labels[RoleLabel] != uplink.RoleSource || probe.Labels[MigrationIDLabel] != c.ID {
		t.Errorf("work %s/%s labels %v", probe.Namespace, probe.Name, probe.Labels)
	}
	if got := sources(t, probe); len(got) != 0 {
		t.Errorf("a work without endpoints replicates nothing, got %d ReplicationSources", len(got))
	}

	eps := map[string]string{"db/data": "192.0.2.1:30001", "db/wal": "192.0.2.1:30002", "web/files": "192.0.2.2:30003"}
	w, err := Source(SourceSpec{Common: c, Volumes: vols, Endpoints: eps, FinalSync: true, ReleaseSource: true})
	if err != nil {
		t.Fatal(err)
	}
	rss := sources(t, w)
	if len(rss) != 2 {
		t.Fatalf("one ReplicationSource per namespace, got %d", len(rss))
	}
	for _, rs := range rss {
		if !rs.Spec.FinalSync || !rs.Spec.ReleaseSource || rs.Spec.MigrationID != c.ID {
			t.Errorf("%s: spec %+v", rs.Namespace, rs.Spec)
		}
	}
	if got := SourceEndpoints(w); len(got) != 3 || got["db/wal"] != eps["db/wal"] || got["web/files"] != eps["web/files"] {
		t.Errorf("endpoints read back %v, want %v", got, eps)
	}
	if !SourceReleases(w) || SourceReleases(probe) {
		t.Error("SourceReleases must say what the work asks")
	}
}

func TestSpecHashFollowsTheSpecOnly(t *testing.T) {
	c := common()
	vols := []VolumeRef{{Namespace: "db", PVCName: "data"}}
	a, _ := Source(SourceSpec{Common: c, Volumes: vols, Endpoints: map[string]string{"db/data": "192.0.2.1:1"}})
	b, _ := Source(SourceSpec{Common: c, Volumes: vols, Endpoints: map[string]string{"db/data": "192.0.2.1:1"}})
	d, _ := Source(SourceSpec{Common: c, Volumes: vols, Endpoints: map[string]string{"db/data": "192.0.2.1:1"}, FinalSync: true})
	for _, w := range []*workv1.ManifestWork{a, b, d} {
		if err := SetSpecHash(w); err != nil {
			t.Fatal(err)
		}
	}
	if a.Annotations[SpecHashAnnotation] == "" || a.Annotations[SpecHashAnnotation] != b.Annotations[SpecHashAnnotation] {
		t.Error("the same spec must hash the same")
	}
	if a.Annotations[SpecHashAnnotation] == d.Annotations[SpecHashAnnotation] {
		t.Error("a changed spec must hash differently, or the change is never written")
	}
}

func TestDestinationWorkAsksForAStandby(t *testing.T) {
	c := common()
	c.Cluster = "c2"
	w, err := Destination(DestinationSpec{Common: c, Volumes: []Volume{{Namespace: "db", PVCName: "data"}},
		Standby: true, ExactPoints: true, PerFileAfter: &metav1.Duration{Duration: 300e9}})
	if err != nil {
		t.Fatal(err)
	}
	if w.Name != DestinationName(c.ID) || w.Labels[RoleLabel] != uplink.RoleDestination {
		t.Errorf("work %s labels %v", w.Name, w.Labels)
	}
	n := 0
	for _, mf := range w.Spec.Workload.Manifests {
		var rd replv1.ReplicationDestination
		if json.Unmarshal(mf.Raw, &rd) == nil && rd.Kind == "ReplicationDestination" {
			n++
			if !rd.Spec.Standby || !rd.Spec.ExactPoints || rd.Spec.PerFileAfter == nil || rd.Namespace != "db" {
				t.Errorf("spec %+v", rd.Spec)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d ReplicationDestinations, want 1", n)
	}
}
