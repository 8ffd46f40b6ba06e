package placement

import (
	"strings"
	"testing"
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
