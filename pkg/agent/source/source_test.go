package source

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

func TestSummarizeTakesTheLeastAdvancedVolume(t *testing.T) {
	rs := &replv1.ReplicationSource{ObjectMeta: metav1.ObjectMeta{Namespace: "db"}}
	rs.Status.Volumes = []replv1.SourceVolumeStatus{
		{PVCName: "data", BytesTotal: 10, BytesCopied: 10, LagBytes: 1, Digest: "d1"},
		{PVCName: "wal", BytesTotal: 5, BytesCopied: 2, LagBytes: 3, UnseenChange: "a write inotify missed"},
	}
	(&Reconciler{}).summarize(rs, []replv1.SourcePhase{replv1.SourceSyncing, replv1.SourceInitialSync})
	st := rs.Status
	if st.Phase != replv1.SourceInitialSync || st.BytesTotal != 15 || st.BytesCopied != 12 || st.LagBytes != 4 {
		t.Errorf("status %+v", st)
	}
	if st.Digest != "" || st.UnseenChange != "a write inotify missed" {
		t.Errorf("no digest before every volume verified; the unseen change carried up: %+v", st)
	}
	if c := meta.FindStatusCondition(st.Conditions, replv1.ConditionReady); c == nil || c.Reason != "InitialSync" || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %+v", c)
	}

	rs.Status.Volumes[1].Digest = "d2"
	(&Reconciler{}).summarize(rs, []replv1.SourcePhase{replv1.SourceVerified, replv1.SourceVerified})
	if want := uplink.CombineDigests(map[string]string{"db/data": "d1", "db/wal": "d2"}); rs.Status.Digest != want || rs.Status.LagBytes != 0 {
		t.Errorf("verified: digest %q lag %d, want %q and 0", rs.Status.Digest, rs.Status.LagBytes, want)
	}

	rs.Status.LastError = "sender failed 5 times"
	(&Reconciler{}).summarize(rs, []replv1.SourcePhase{replv1.SourceFailed, replv1.SourceVerified})
	if c := meta.FindStatusCondition(rs.Status.Conditions, replv1.ConditionReady); c.Status != metav1.ConditionFalse || c.Message != "sender failed 5 times" {
		t.Errorf("a failed volume fails the object with its error: %+v", c)
	}

	none := &replv1.ReplicationSource{}
	(&Reconciler{}).summarize(none, nil)
	if none.Status.Phase != replv1.SourcePending {
		t.Errorf("no volume yet: %s, want Pending", none.Status.Phase)
	}
}

func TestSenderFollowsItsDestinationAndTheQuiesceStart(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Args: []string{"mover", "send", "--to", "192.0.2.1:30001", "--dir", "/data"}}}}}
	if !senderArgsMatch(pod, "192.0.2.1:30001") || senderArgsMatch(pod, "192.0.2.9:30001") {
		t.Error("a sender is replaced exactly when its receiver moved")
	}
	rs := &replv1.ReplicationSource{}
	if finishValue(rs) != "finish" {
		t.Errorf("finish without a quiesce start = %q", finishValue(rs))
	}
	at := metav1.NewTime(time.Date(2026, 12, 7, 10, 0, 0, 123e6, time.FixedZone("x", 3600)))
	rs.Spec.QuiesceStartTime = &at
	if got := finishValue(rs); got != "2026-12-07T09:00:00.123Z" {
		t.Errorf("finish value %q: the quiesce start in UTC, to the nanosecond", got)
	}
}
