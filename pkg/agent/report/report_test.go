package report

import (
	"encoding/json"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

func TestSourceConditionAggregatesNamespaces(t *testing.T) {
	a := replv1.ReplicationSource{}
	a.Namespace = "a"
	a.Status = replv1.ReplicationSourceStatus{Phase: replv1.SourceVerified, Protected: true,
		Volumes: []replv1.SourceVolumeStatus{{PVCName: "x", Digest: "d1"}}}
	b := replv1.ReplicationSource{}
	b.Namespace = "b"
	b.Status = replv1.ReplicationSourceStatus{Phase: replv1.SourceSyncing, Protected: true, BytesCopied: 5, LagBytes: 3, LagSeconds: 2,
		PodsUsingVolumes: 1, Volumes: []replv1.SourceVolumeStatus{{PVCName: "y"}}}
	c := SourceCondition("m1", []replv1.ReplicationSource{a, b})
	if c.Type != "migration.open-cluster-management.io/m1-source" || c.Reason != "Syncing" || c.Status != metav1.ConditionTrue {
		t.Fatalf("got %+v", c)
	}
	var m uplink.Message
	if err := json.Unmarshal([]byte(c.Message), &m); err != nil {
		t.Fatal(err)
	}
	if m.Digest != "" || m.LagBytes != 3 || *m.PodsUsingVolumes != 1 || !*m.Protected {
		t.Fatalf("message %s", c.Message)
	}
	b.Status.Phase = replv1.SourceVerified
	b.Status.Volumes[0].Digest = "d2"
	c = SourceCondition("m1", []replv1.ReplicationSource{b, a})
	if err := json.Unmarshal([]byte(c.Message), &m); err != nil {
		t.Fatal(err)
	}
	if c.Reason != "Verified" || m.Digest != uplink.CombineDigests(map[string]string{"a/x": "d1", "b/y": "d2"}) {
		t.Fatalf("got %+v", c)
	}
}

func TestFailedDestinationIsFalse(t *testing.T) {
	d := replv1.ReplicationDestination{Status: replv1.ReplicationDestinationStatus{Phase: replv1.DestinationFailed, LastError: "no class"}}
	c := DestinationCondition("m2", []replv1.ReplicationDestination{d})
	if c.Status != metav1.ConditionFalse || c.Reason != "Failed" {
		t.Fatalf("got %+v", c)
	}
}

func TestHookAggregatesNamespaces(t *testing.T) {
	hook := &replv1.Hook{Command: []string{"true"}}
	mk := func(ns string, st *replv1.HookStatus) replv1.ReplicationSource {
		o := replv1.ReplicationSource{}
		o.Namespace, o.Spec.PreQuiesceHook, o.Status.PreQuiesceHook = ns, hook, st
		return o
	}
	decode := func(items ...replv1.ReplicationSource) *replv1.HookStatus {
		var m uplink.Message
		if err := json.Unmarshal([]byte(SourceCondition("m3", items).Message), &m); err != nil {
			t.Fatal(err)
		}
		return m.Hook
	}
	ok := &replv1.HookStatus{Phase: replv1.HookSucceeded, Runs: 1, Message: "ran in db-0"}
	bad := &replv1.HookStatus{Phase: replv1.HookFailed, Runs: 1, Message: "exit code 1"}
	if h := decode(mk("a", ok), mk("b", nil)); h == nil || h.Phase != replv1.HookRunning {
		t.Fatalf("one namespace not started yet: %+v", h)
	}
	if h := decode(mk("a", ok), mk("b", ok)); h.Phase != replv1.HookSucceeded {
		t.Fatalf("both done: %+v", h)
	}
	if h := decode(mk("a", ok), mk("b", bad)); h.Phase != replv1.HookFailed || h.Message != "a: ran in db-0; b: exit code 1" {
		t.Fatalf("one failed: %+v", h)
	}
	none := replv1.ReplicationSource{}
	if h := decode(none); h != nil {
		t.Fatalf("no hook asked, got %+v", h)
	}
}

// A standby's point is reported once every volume of every namespace has
// one: the oldest time (what a failover would lose from), the digest over all.
func TestDestinationPointIsTheOldestOnceEveryVolumeHasOne(t *testing.T) {
	t1, t2 := metav1.Unix(1000, 0), metav1.Unix(2000, 0)
	rd := func(ns string, points ...*replv1.VolumePoint) replv1.ReplicationDestination {
		o := replv1.ReplicationDestination{}
		o.Namespace = ns
		o.Status.Phase = replv1.DestinationReceiving
		for i, p := range points {
			name := string(rune('x' + i))
			o.Spec.Volumes = append(o.Spec.Volumes, replv1.DestinationVolume{PVCName: name})
			o.Status.Volumes = append(o.Status.Volumes, replv1.DestinationVolumeStatus{PVCName: name, Point: p})
		}
		return o
	}
	msg := func(items ...replv1.ReplicationDestination) uplink.Message {
		var m uplink.Message
		if err := json.Unmarshal([]byte(DestinationCondition("s1", items).Message), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := msg(rd("a", &replv1.VolumePoint{Time: t2, Digest: "d1"}, nil)); m.Point != nil {
		t.Fatalf("a volume without a point: reported %+v", m.Point)
	}
	m := msg(rd("a", &replv1.VolumePoint{Time: t2, Digest: "d1"}), rd("b", &replv1.VolumePoint{Time: t1, Digest: "d2"}))
	if m.Point == nil || !m.Point.Time.Equal(&t1) || m.Point.Digest != uplink.CombineDigests(map[string]string{"a/x": "d1", "b/x": "d2"}) || m.Point.Exact {
		t.Fatalf("point %+v", m.Point)
	}
	// Exact only when every volume's point is.
	if m := msg(rd("a", &replv1.VolumePoint{Time: t2, Digest: "d1", Exact: true}), rd("b", &replv1.VolumePoint{Time: t1, Digest: "d2", Exact: true})); m.Point == nil || !m.Point.Exact {
		t.Fatalf("all exact: point %+v", m.Point)
	}
	if m := msg(rd("a", &replv1.VolumePoint{Time: t2, Digest: "d1", Exact: true}), rd("b", &replv1.VolumePoint{Time: t1, Digest: "d2"})); m.Point == nil || m.Point.Exact {
		t.Fatalf("one per-file volume: point %+v", m.Point)
	}
}
