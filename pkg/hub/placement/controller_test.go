package placement

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
)

func TestCompanionName(t *testing.T) {
	if got := CompanionName("app"); got != "app-desired" {
		t.Errorf("got %q", got)
	}
	a, b := strings.Repeat("a", 253), strings.Repeat("a", 252)+"b"
	ca, cb := CompanionName(a), CompanionName(b)
	if len(ca) > 253 || len(cb) > 253 || ca == cb || !strings.HasSuffix(ca, "-desired") {
		t.Errorf("long names: %q %q", ca, cb)
	}
}

// Progress written at every agent report does not reconcile the policy;
// what its steps read does.
func TestMigrationMatters(t *testing.T) {
	base := &migrationv1alpha1.Migration{Status: migrationv1alpha1.MigrationStatus{Phase: migrationv1alpha1.PhaseInitialSync, Reason: "Copying"}}
	now := metav1.Now()
	for name, c := range map[string]struct {
		change func(m *migrationv1alpha1.Migration)
		want   bool
	}{
		"progress": {func(m *migrationv1alpha1.Migration) {
			m.Status.Message = "40% copied"
			m.Status.Progress.BytesCopied = 400
		}, false},
		"phase":    {func(m *migrationv1alpha1.Migration) { m.Status.Phase = migrationv1alpha1.PhaseSyncing }, true},
		"reason":   {func(m *migrationv1alpha1.Migration) { m.Status.Reason = "CatchingUp" }, false},
		"deleted":  {func(m *migrationv1alpha1.Migration) { m.DeletionTimestamp = &now }, true},
		"failover": {func(m *migrationv1alpha1.Migration) { m.Status.Failover = &migrationv1alpha1.FailoverStatus{} }, true},
		"first point": {func(m *migrationv1alpha1.Migration) {
			m.Status.Standby = &migrationv1alpha1.StandbyStatus{PointTime: &now}
		}, true},
		"standby no pt": {func(m *migrationv1alpha1.Migration) {
			m.Status.Standby = &migrationv1alpha1.StandbyStatus{RPOSeconds: 3}
		}, false},
	} {
		n := base.DeepCopy()
		c.change(n)
		if got := migrationMatters(base, n); got != c.want {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
	// In Preparing the reason says whether the source answered (awaitsSource).
	prep := &migrationv1alpha1.Migration{Status: migrationv1alpha1.MigrationStatus{Phase: migrationv1alpha1.PhasePreparing, Reason: "Started"}}
	answered := prep.DeepCopy()
	answered.Status.Reason = "WaitingForDestination"
	if !migrationMatters(prep, answered) {
		t.Error("a reason change in Preparing does not reconcile the policy")
	}
}
