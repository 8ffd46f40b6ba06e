package reports

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

// One agent report wakes its own migration, not every migration whose
// report the same ManagedClusterAddOn carries; a withdrawn one wakes too.
func TestChangedIDs(t *testing.T) {
	c := func(id, role, msg string) metav1.Condition {
		return metav1.Condition{Type: uplink.ConditionType(id, role), Status: metav1.ConditionTrue, Reason: "Syncing", Message: msg}
	}
	old := []metav1.Condition{c("a", uplink.RoleSource, "1"), c("b", uplink.RoleSource, "1"), c("c", uplink.RoleDestination, "1"),
		{Type: "Available", Status: metav1.ConditionTrue, Reason: "Lease"}}
	cur := []metav1.Condition{c("a", uplink.RoleSource, "2"), c("b", uplink.RoleSource, "1"), c("d", uplink.RoleSource, "1"),
		{Type: "Available", Status: metav1.ConditionFalse, Reason: "Lease"}}
	got := ChangedIDs(old, cur)
	slices.Sort(got)
	if want := []string{"a", "c", "d"}; !slices.Equal(got, want) {
		t.Fatalf("changed %v, want %v (a rewritten, c withdrawn, d new; b unchanged)", got, want)
	}
	if got := ChangedIDs(cur, cur); len(got) != 0 {
		t.Fatalf("nothing changed, yet %v", got)
	}
}
