package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Hook is a command the agent runs in the app's pods through pods/exec
// (docs/hooks.md). The MigrationPolicy names it; the hub hands it to the
// agent of the cluster that runs it, with the right to exec in the app's
// namespace for that migration only.
type Hook struct {
	// Command is run without a shell: write ["sh", "-c", "..."] for one.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=4096
	// +listType=atomic
	Command []string `json:"command"`
	// Container to run it in; by default the first container of the pod
	// that mounts one of the moved PVCs.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Container string `json:"container,omitempty"`
	// Selector narrows the pods it runs in. By default it runs in every
	// running pod of the namespace that mounts one of the moved PVCs.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Timeout of one run (in every pod at once); a run that overruns failed.
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('1h')",message="must be more than 0s and at most 1h"
	// +kubebuilder:default="30s"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// DefaultHookTimeout applies when a hook names none (the CRD defaults it too).
const DefaultHookTimeout = 30 * time.Second

// RunTimeout bounds one run of the hook.
func (h *Hook) RunTimeout() time.Duration {
	if h.Timeout != nil && h.Timeout.Duration > 0 {
		return h.Timeout.Duration
	}
	return DefaultHookTimeout
}

// HookPhase is where a hook is.
// +kubebuilder:validation:Enum=Running;Succeeded;Failed
type HookPhase string

const (
	HookRunning   HookPhase = "Running"
	HookSucceeded HookPhase = "Succeeded"
	HookFailed    HookPhase = "Failed"
)

// HookStatus is what became of a hook.
type HookStatus struct {
	// Phase of the last run.
	Phase HookPhase `json:"phase"`
	// Runs counts the runs started (a post-launch check is retried until it
	// succeeds; an agent restarted mid-run runs the hook again).
	// +optional
	Runs int32 `json:"runs,omitempty"`
	// Message says where it ran, or why it failed (exit code, the end of
	// its stderr).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Message string `json:"message,omitempty"`
	// StartTime of the last run (microseconds: its duration may be short).
	// +optional
	StartTime *metav1.MicroTime `json:"startTime,omitempty"`
	// CompletionTime of the last run.
	// +optional
	CompletionTime *metav1.MicroTime `json:"completionTime,omitempty"`
}

// Done tells whether the hook succeeded.
func (s *HookStatus) Done() bool { return s != nil && s.Phase == HookSucceeded }

// Duration of the last completed run, 0 when none.
func (s *HookStatus) Duration() metav1.Duration {
	if s == nil || s.StartTime == nil || s.CompletionTime == nil {
		return metav1.Duration{}
	}
	return metav1.Duration{Duration: s.CompletionTime.Sub(s.StartTime.Time)}
}
