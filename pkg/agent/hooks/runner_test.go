package hooks

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// fakeExec records calls and answers from a table (a unit test's stand-in
// for pods/exec; the integration and e2e suites exec for real).
type fakeExec struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]error
	block chan struct{}
}

func (f *fakeExec) Exec(ctx context.Context, ns, pod, container string, cmd []string) error {
	f.mu.Lock()
	f.calls = append(f.calls, ns+"/"+pod+"/"+container)
	err := f.fail[pod]
	f.mu.Unlock()
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func owner() *replv1.ReplicationSource {
	return &replv1.ReplicationSource{ObjectMeta: metav1.ObjectMeta{Name: "smig-x", Namespace: "app", UID: types.UID("u1")}}
}

func static(ts ...Target) func() ([]Target, error) {
	return func() ([]Target, error) { return ts, nil }
}

// wait steps until the run ends and the result is recorded.
func wait(t *testing.T, r *Runner, obj *replv1.ReplicationSource, h *replv1.Hook, st **replv1.HookStatus, retry time.Duration) {
	t.Helper()
	select {
	case <-r.events:
	case <-time.After(5 * time.Second):
		t.Fatal("the run's end did not wake the owner")
	}
	r.Step(obj, h, static(), st, retry, time.Now())
}

func TestStepRunsOnceAndRecords(t *testing.T) {
	f := &fakeExec{}
	r := NewRunner(f)
	obj, h := owner(), &replv1.Hook{Command: []string{"true"}}
	var st *replv1.HookStatus
	r.Step(obj, h, static(Target{"db-0", "db"}, Target{"db-1", "db"}), &st, 0, time.Now())
	if st == nil || st.Phase != replv1.HookRunning || st.Runs != 1 {
		t.Fatalf("after start: %+v", st)
	}
	wait(t, r, obj, h, &st, 0)
	if st.Phase != replv1.HookSucceeded || !strings.Contains(st.Message, "db-0, db-1") || st.CompletionTime == nil {
		t.Fatalf("after end: %+v", st)
	}
	// Done: never run again.
	r.Step(obj, h, static(Target{"db-0", "db"}), &st, 0, time.Now())
	if len(f.calls) != 2 {
		t.Fatalf("calls %v, want one per pod", f.calls)
	}
}

func TestStepFailureIsFinalWithoutRetry(t *testing.T) {
	f := &fakeExec{fail: map[string]error{"db-1": errors.New("exit code 3: no space")}}
	r := NewRunner(f)
	obj, h := owner(), &replv1.Hook{Command: []string{"checkpoint"}}
	var st *replv1.HookStatus
	r.Step(obj, h, static(Target{"db-0", "db"}, Target{"db-1", "db"}), &st, 0, time.Now())
	wait(t, r, obj, h, &st, 0)
	if st.Phase != replv1.HookFailed || !strings.Contains(st.Message, "pod db-1 container db: exit code 3: no space") {
		t.Fatalf("status %+v", st)
	}
	if d := r.Step(obj, h, static(Target{"db-0", "db"}), &st, 0, time.Now().Add(time.Hour)); d != 0 || st.Runs != 1 {
		t.Fatalf("a failed pre-quiesce hook ran again (runs %d, requeue %s)", st.Runs, d)
	}
}

func TestStepRetriesAfterDelay(t *testing.T) {
	f := &fakeExec{fail: map[string]error{"db-0": errors.New("exit code 2")}}
	r := NewRunner(f)
	obj, h := owner(), &replv1.Hook{Command: []string{"pg_isready"}}
	var st *replv1.HookStatus
	r.Step(obj, h, static(Target{"db-0", "db"}), &st, 3*time.Second, time.Now())
	wait(t, r, obj, h, &st, 3*time.Second)
	if st.Phase != replv1.HookFailed {
		t.Fatalf("status %+v", st)
	}
	if d := r.Step(obj, h, static(Target{"db-0", "db"}), &st, 3*time.Second, st.CompletionTime.Add(time.Second)); d <= 0 || d > 2*time.Second || st.Runs != 1 {
		t.Fatalf("retried too early: requeue %s, runs %d", d, st.Runs)
	}
	f.mu.Lock()
	f.fail = nil
	f.mu.Unlock()
	r.Step(obj, h, static(Target{"db-0", "db"}), &st, 3*time.Second, st.CompletionTime.Add(4*time.Second))
	if st.Runs != 2 || st.Phase != replv1.HookRunning {
		t.Fatalf("not retried: %+v", st)
	}
	wait(t, r, obj, h, &st, 3*time.Second)
	if st.Phase != replv1.HookSucceeded || st.Runs != 2 {
		t.Fatalf("status %+v", st)
	}
}

func TestStepTimesOut(t *testing.T) {
	f := &fakeExec{block: make(chan struct{})}
	defer close(f.block)
	r := NewRunner(f)
	obj, h := owner(), &replv1.Hook{Command: []string{"sleep", "60"}, Timeout: &metav1.Duration{Duration: 50 * time.Millisecond}}
	var st *replv1.HookStatus
	r.Step(obj, h, static(Target{"db-0", "db"}), &st, 0, time.Now())
	wait(t, r, obj, h, &st, 0)
	if st.Phase != replv1.HookFailed || !strings.Contains(st.Message, "timed out after 50ms") {
		t.Fatalf("status %+v", st)
	}
}

// An agent restarted mid-run finds Running in the status and no run of its
// own: it runs the hook again rather than wait forever.
func TestStepRerunsAfterAgentRestart(t *testing.T) {
	f := &fakeExec{}
	obj, h := owner(), &replv1.Hook{Command: []string{"true"}}
	start := metav1.NewMicroTime(time.Now())
	st := &replv1.HookStatus{Phase: replv1.HookRunning, Runs: 1, StartTime: &start}
	r := NewRunner(f)
	r.Step(obj, h, static(Target{"db-0", "db"}), &st, 0, time.Now())
	if st.Runs != 2 {
		t.Fatalf("runs %d, want 2", st.Runs)
	}
	wait(t, r, obj, h, &st, 0)
	if st.Phase != replv1.HookSucceeded {
		t.Fatalf("status %+v", st)
	}
}

// A lost status write does not run the hook twice: the finished run is
// recorded again from memory.
func TestStepRecordsAgainAfterLostWrite(t *testing.T) {
	f := &fakeExec{}
	r := NewRunner(f)
	obj, h := owner(), &replv1.Hook{Command: []string{"true"}}
	var st *replv1.HookStatus
	r.Step(obj, h, static(Target{"db-0", "db"}), &st, 0, time.Now())
	running := *st
	wait(t, r, obj, h, &st, 0)
	lost := &running
	r.Step(obj, h, static(Target{"db-0", "db"}), &lost, 0, time.Now())
	if lost.Phase != replv1.HookSucceeded || len(f.calls) != 1 {
		t.Fatalf("status %+v, calls %v", lost, f.calls)
	}
}

func TestStepTargetError(t *testing.T) {
	r := NewRunner(&fakeExec{})
	obj, h := owner(), &replv1.Hook{Command: []string{"true"}}
	var st *replv1.HookStatus
	r.Step(obj, h, func() ([]Target, error) { return nil, errors.New(`pod db-0 has no container "pg"`) }, &st, 0, time.Now())
	if st.Phase != replv1.HookFailed || !strings.Contains(st.Message, `no container "pg"`) {
		t.Fatalf("status %+v", st)
	}
}

func TestNoPodsSucceeds(t *testing.T) {
	r := NewRunner(&fakeExec{})
	obj, h := owner(), &replv1.Hook{Command: []string{"true"}}
	var st *replv1.HookStatus
	r.Step(obj, h, static(), &st, 0, time.Now())
	wait(t, r, obj, h, &st, 0)
	if st.Phase != replv1.HookSucceeded || !strings.Contains(st.Message, "nothing to run in") {
		t.Fatalf("status %+v", st)
	}
}

func pod(name string, labels map[string]string, phase corev1.PodPhase, ready bool, claim string, containers ...corev1.Container) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Status: corev1.PodStatus{Phase: phase}}
	p.Spec.Containers = containers
	p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}}
	if ready {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	return p
}

func TestTargets(t *testing.T) {
	sidecar := corev1.Container{Name: "exporter"}
	db := corev1.Container{Name: "db", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/db"}}}
	pods := []corev1.Pod{
		pod("db-0", map[string]string{"app": "db"}, corev1.PodRunning, true, "data-db-0", sidecar, db),
		pod("db-1", map[string]string{"app": "db"}, corev1.PodRunning, false, "data-db-1", sidecar, db),
		pod("other", map[string]string{"app": "db"}, corev1.PodRunning, true, "unrelated", db),
		pod("pending", map[string]string{"app": "db"}, corev1.PodPending, false, "data-db-0", db),
		pod("reader", map[string]string{"app": "reader"}, corev1.PodRunning, true, "data-db-0", db),
	}
	pvcs := []string{"data-db-0", "data-db-1"}
	got, err := Targets(pods, pvcs, &replv1.Hook{}, false)
	want := []Target{{"db-0", "db"}, {"db-1", "db"}, {"reader", "db"}}
	if err != nil || len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("running: %v %v, want %v", got, err, want)
	}
	got, _ = Targets(pods, pvcs, &replv1.Hook{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}, true)
	if len(got) != 1 || got[0] != (Target{"db-0", "db"}) {
		t.Fatalf("ready, selected: %v", got)
	}
	got, _ = Targets(pods[:1], pvcs, &replv1.Hook{Container: "exporter"}, false)
	if len(got) != 1 || got[0].Container != "exporter" {
		t.Fatalf("named container: %v", got)
	}
	if _, err := Targets(pods[:1], pvcs, &replv1.Hook{Container: "pg"}, false); err == nil || !strings.Contains(err.Error(), `no container "pg"`) {
		t.Fatalf("missing container: %v", err)
	}
}

func TestTail(t *testing.T) {
	var tl tail
	for range 100 {
		tl.Write([]byte("0123456789"))
	}
	tl.Write([]byte("END"))
	if s := tl.String(); len(s) != tailBytes || !strings.HasSuffix(s, "789END") {
		t.Fatalf("tail %d bytes: %q", len(s), s[len(s)-10:])
	}
}
