package destination

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

func TestSummarizeOrdersFailedVerifiedPreparingReceiving(t *testing.T) {
	rd := &replv1.ReplicationDestination{ObjectMeta: metav1.ObjectMeta{Namespace: "db"}}
	rd.Spec.Volumes = []replv1.DestinationVolume{{PVCName: "data"}, {PVCName: "wal"}}
	rd.Status.Volumes = []replv1.DestinationVolumeStatus{{PVCName: "data", Digest: "d1"}, {PVCName: "wal", Digest: "d2"}}
	ready := func() *metav1.Condition { return meta.FindStatusCondition(rd.Status.Conditions, replv1.ConditionReady) }

	summarize(rd, tally{verified: 2})
	if want := uplink.CombineDigests(map[string]string{"db/data": "d1", "db/wal": "d2"}); rd.Status.Phase != replv1.DestinationVerified || rd.Status.Digest != want {
		t.Errorf("every volume verified: %s %q, want Verified %q", rd.Status.Phase, rd.Status.Digest, want)
	}

	summarize(rd, tally{verified: 1, failed: 1, failure: "StorageClass \"fast\" does not exist"})
	if c := ready(); rd.Status.Phase != replv1.DestinationFailed || rd.Status.Digest != "" || c.Status != metav1.ConditionFalse || c.Message != rd.Status.LastError {
		t.Errorf("one failed volume fails the object, without a digest: %s %+v", rd.Status.Phase, c)
	}

	rd.Status.LastError = "creating PVC wal"
	summarize(rd, tally{verified: 1, preparing: 1})
	if c := ready(); rd.Status.Phase != replv1.DestinationPreparing || c.Message != "creating PVC wal" {
		t.Errorf("a volume still preparing, with what it waits for: %s %+v", rd.Status.Phase, c)
	}

	summarize(rd, tally{verified: 1, receiving: 1})
	if rd.Status.Phase != replv1.DestinationReceiving {
		t.Errorf("receiving: %s", rd.Status.Phase)
	}
	summarize(rd, tally{})
	if c := ready(); rd.Status.Phase != replv1.DestinationReady || c.Reason != "Ready" {
		t.Errorf("every receiver listening: %s %+v", rd.Status.Phase, c)
	}
}
