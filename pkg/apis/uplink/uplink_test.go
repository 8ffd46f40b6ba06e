package uplink

import (
	"testing"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

func TestCombineDigests(t *testing.T) {
	if CombineDigests(map[string]string{"ns/a": "x"}) != "x" {
		t.Error("one volume: its own digest")
	}
	d1 := CombineDigests(map[string]string{"ns/a": "x", "ns/b": "y"})
	d2 := CombineDigests(map[string]string{"ns/a": "y", "ns/b": "x"})
	if d1 == d2 || len(d1) != 64 {
		t.Errorf("combined digests must bind names to digests: %s %s", d1, d2)
	}
}

func TestPhaseRanks(t *testing.T) {
	src := []replv1.SourcePhase{replv1.SourceFailed, replv1.SourcePending, replv1.SourceInitialSync,
		replv1.SourceSyncing, replv1.SourceFinalSync, replv1.SourceVerified}
	for i := 1; i < len(src); i++ {
		if SourceRank(src[i-1]) >= SourceRank(src[i]) {
			t.Errorf("%s must rank below %s", src[i-1], src[i])
		}
	}
	dst := []replv1.DestinationPhase{replv1.DestinationFailed, replv1.DestinationPreparing, replv1.DestinationReady,
		replv1.DestinationReceiving, replv1.DestinationVerified}
	for i := 1; i < len(dst); i++ {
		if DestinationRank(dst[i-1]) >= DestinationRank(dst[i]) {
			t.Errorf("%s must rank below %s", dst[i-1], dst[i])
		}
	}
	if SourceRank("") != SourceRank(replv1.SourcePending) || DestinationRank("") != DestinationRank(replv1.DestinationPreparing) {
		t.Error("no phase yet ranks as the first")
	}
}
