// The contract from both ends: what the agent writes, the hub reads back.
package uplink_test

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stateful-migration/stateful-migration/pkg/agent/report"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/hub/reports"
)

func TestFindDecodesTheAgentsEncoding(t *testing.T) {
	rs := replv1.ReplicationSource{}
	rs.Status = replv1.ReplicationSourceStatus{Phase: replv1.SourceSyncing, Protected: true, BytesCopied: 7, LagBytes: 3, Throughput: 9}
	rd := replv1.ReplicationDestination{}
	rd.Namespace = "app"
	rd.Status = replv1.ReplicationDestinationStatus{Phase: replv1.DestinationFailed, LastError: "no class",
		Volumes: []replv1.DestinationVolumeStatus{{PVCName: "data", Endpoint: "1.2.3.4:5"}}}
	conds := []metav1.Condition{
		report.SourceCondition("abc12345", []replv1.ReplicationSource{rs}),
		report.DestinationCondition("abc12345", []replv1.ReplicationDestination{rd}),
		{Type: "Available", Status: metav1.ConditionTrue},
	}
	src := reports.Find(conds, "abc12345", uplink.RoleSource)
	if src == nil || src.Failed() || !reports.SourceAtLeast(src, replv1.SourceSyncing) || reports.SourceAtLeast(src, replv1.SourceVerified) ||
		src.BytesCopied != 7 || src.LagBytes != 3 || !*src.Protected || *src.PodsUsingVolumes != 0 {
		t.Fatalf("source decoded wrong: %+v", src)
	}
	dst := reports.Find(conds, "abc12345", uplink.RoleDestination)
	if dst == nil || !dst.Failed() || dst.Error() != "no class" || dst.Endpoints["app/data"] != "1.2.3.4:5" {
		t.Fatalf("destination decoded wrong: %+v", dst)
	}
	if reports.Find(conds, "other", uplink.RoleSource) != nil {
		t.Fatal("found a report of another migration")
	}
	if ids := reports.MigrationIDs(conds); !slices.Equal(ids, []string{"abc12345", "abc12345"}) {
		t.Fatalf("MigrationIDs = %v", ids)
	}
}
