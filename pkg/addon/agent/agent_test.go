package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"
)

func TestLoadHubConfigExplainsWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := loadHubConfig(filepath.Join(dir, "kubeconfig"))
	if err == nil || !strings.Contains(err.Error(), "RegistrationApplied") {
		t.Fatalf("a missing kubeconfig should point at the registration condition, got %v", err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("{not yaml: ["), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadHubConfig(bad); err == nil || !strings.Contains(err.Error(), "is invalid") {
		t.Fatalf("an invalid kubeconfig should be reported as invalid, got %v", err)
	}
}

func TestWaitForHubConfigReturnsOnceWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = os.WriteFile(path, []byte(`apiVersion: v1
kind: Config
clusters: [{name: hub, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: a, user: {token: t}}]
contexts: [{name: c, context: {cluster: hub, user: a}}]
current-context: c
`), 0o600)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg, err := waitForHubConfig(ctx, path, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" {
		t.Fatalf("host = %q", cfg.Host)
	}
}

func TestWaitForHubConfigStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := waitForHubConfig(ctx, filepath.Join(t.TempDir(), "none"), 10*time.Millisecond); err == nil {
		t.Fatal("want the context's error")
	}
}

// An unreachable hub is retried with growing delays, not given up on.
func TestReporterRetriesUnreachableHub(t *testing.T) {
	client := addonclient.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1", Timeout: 200 * time.Millisecond})
	r := &readyReporter{
		writer:   NewStatusWriter(client, "c1", "stateful-migration"),
		interval: time.Hour,
		backoff:  []time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	attempts := 0
	r.onAttempt = func(err error) {
		// Judged while the test's context lives: an attempt cut short by its
		// end, on a loaded machine, has been seen to come back without error.
		if err == nil && ctx.Err() == nil {
			t.Error("an unreachable hub cannot succeed")
		}
		attempts++
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if attempts < 3 {
		t.Fatalf("want repeated attempts within 2s, got %d", attempts)
	}
}

func TestBackoffSteps(t *testing.T) {
	got := backoffSteps(time.Second, 10*time.Second)
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}
