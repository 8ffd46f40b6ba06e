// Package hooks runs the app's hooks (docs/hooks.md) in its pods through
// pods/exec. A run goes on in its own goroutine so that a slow hook holds up
// no reconcile; its end wakes the replication object through Source.
package hooks

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// Executor runs a command in a container and returns an error that says
// why it failed (exit code, the end of its output).
type Executor interface {
	Exec(ctx context.Context, namespace, pod, container string, command []string) error
}

// Runner runs hooks, at most one at a time per replication object.
type Runner struct {
	exec   Executor
	events chan event.GenericEvent

	mu   sync.Mutex
	runs map[types.UID]*run
}

type run struct {
	n    int32 // the HookStatus.Runs it was started as
	done chan struct{}
	end  time.Time
	msg  string
	ok   bool
}

// NewRunner returns a Runner executing with exec.
func NewRunner(exec Executor) *Runner {
	return &Runner{exec: exec, events: make(chan event.GenericEvent, 64), runs: map[types.UID]*run{}}
}

// Source wakes the owner of a run when it ends; a controller watches it.
func (r *Runner) Source() source.Source {
	return source.Channel(r.events, &handler.EnqueueRequestForObject{})
}

// Step advances the hook h of obj, whose status is *st, and returns how
// soon to look again (0: the run's end wakes obj). Retry > 0 reruns a
// failed hook after that long (a post-launch check); 0 leaves a failure
// final (a pre-quiesce hook: the hub fails the attempt).
// Targets are looked up only when a run starts; an error there (no such
// container, a bad selector) is a failed run.
func (r *Runner) Step(obj client.Object, h *replv1.Hook, targets func() ([]Target, error), st **replv1.HookStatus, retry time.Duration, now time.Time) time.Duration {
	cur := *st
	if cur.Done() {
		return 0
	}
	r.mu.Lock()
	ru := r.runs[obj.GetUID()]
	r.mu.Unlock()
	if cur != nil && cur.Phase == replv1.HookRunning && ru != nil && ru.n == cur.Runs {
		select {
		case <-ru.done:
			// Recorded again if the status write is lost: ru stays until
			// the next run or Forget.
			next := *cur
			next.Phase, next.Message = replv1.HookFailed, ru.msg
			if ru.ok {
				next.Phase = replv1.HookSucceeded
			}
			end := metav1.NewMicroTime(ru.end)
			next.CompletionTime = &end
			*st = &next
			if !ru.ok && retry > 0 {
				return retry
			}
			return 0
		default:
			return h.RunTimeout() + 5*time.Second // its end wakes obj; this is a safety net
		}
	}
	if cur != nil && cur.Phase == replv1.HookFailed {
		if retry <= 0 {
			return 0
		}
		if cur.CompletionTime != nil {
			if left := retry - now.Sub(cur.CompletionTime.Time); left > 0 {
				return left
			}
		}
	}
	// Not started, to be retried, or running in an agent that restarted.
	n := int32(1)
	if cur != nil {
		n = cur.Runs + 1
	}
	start := metav1.NewMicroTime(now)
	ts, err := targets()
	if err != nil {
		*st = &replv1.HookStatus{Phase: replv1.HookFailed, Runs: n, Message: clip(err.Error()), StartTime: &start, CompletionTime: &start}
		return retry
	}
	*st = &replv1.HookStatus{Phase: replv1.HookRunning, Runs: n, StartTime: &start}
	ru = &run{n: n, done: make(chan struct{})}
	r.mu.Lock()
	r.runs[obj.GetUID()] = ru
	r.mu.Unlock()
	wake := obj.DeepCopyObject().(client.Object)
	go func() {
		ru.msg, ru.ok = r.runAll(wake.GetNamespace(), h, ts)
		ru.end = time.Now()
		close(ru.done)
		select {
		case r.events <- event.GenericEvent{Object: wake}:
		default: // no controller reading (stopping): the requeue below is the net
		}
	}()
	return h.RunTimeout() + 5*time.Second
}

// Forget drops what is kept of obj's runs (obj is gone).
func (r *Runner) Forget(uid types.UID) {
	r.mu.Lock()
	delete(r.runs, uid)
	r.mu.Unlock()
}

// runAll runs h in every target at once, within its timeout.
func (r *Runner) runAll(namespace string, h *replv1.Hook, targets []Target) (string, bool) {
	if len(targets) == 0 {
		return "no running pod of the app mounts the moved PVCs here: nothing to run in", true
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.RunTimeout())
	defer cancel()
	start := time.Now()
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.exec.Exec(ctx, namespace, t.Pod, t.Container, h.Command)
			if errs[i] != nil && ctx.Err() != nil {
				errs[i] = fmt.Errorf("timed out after %s (%w)", h.RunTimeout(), errs[i])
			}
		}()
	}
	wg.Wait()
	var failed, ran []string
	for i, t := range targets {
		if errs[i] != nil {
			failed = append(failed, fmt.Sprintf("pod %s container %s: %v", t.Pod, t.Container, errs[i]))
		} else {
			ran = append(ran, t.Pod)
		}
	}
	if len(failed) > 0 {
		return clip(strings.Join(failed, "; ")), false
	}
	return clip(fmt.Sprintf("ran in %s in %s", strings.Join(ran, ", "), time.Since(start).Round(time.Millisecond))), true
}

// clip keeps a message within the status field's bound.
func clip(s string) string {
	const limit = 1024
	if len(s) <= limit {
		return s
	}
	return s[:limit-3] + "..."
}
