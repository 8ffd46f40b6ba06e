package moverpod

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/mover/progress"
)

// LogSource returns the last lines of a mover pod's log.
type LogSource interface {
	Tail(ctx context.Context, pod *corev1.Pod, lines int64) ([]byte, error)
}

// KubeLogs reads pods/log through the API server (kubelet).
type KubeLogs struct{ Client kubernetes.Interface }

// Tail implements LogSource.
func (k KubeLogs) Tail(ctx context.Context, pod *corev1.Pod, lines int64) ([]byte, error) {
	rc, err := k.Client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
		Container: ContainerName, TailLines: ptr.To(lines), LimitBytes: ptr.To[int64](64 << 10),
	}).Stream(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Status is what the agent knows about one mover pod.
type Status struct {
	// Progress is the mover's last JSON progress line, if any could be read.
	Progress *progress.Progress
	// Restarts of the mover container, and the last non-zero exit's message.
	Restarts  int32
	LastError string
}

// Read returns the mover's latest progress without touching the mover:
// first the termination message of a finished container (the kubelet keeps
// it in the pod status), else the last JSON line of the pod's log.
func Read(ctx context.Context, logs LogSource, pod *corev1.Pod) Status {
	var st Status
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != ContainerName {
			continue
		}
		st.Restarts = cs.RestartCount
		if t := cs.State.Terminated; t != nil {
			st.Progress = LastProgress([]byte(t.Message))
			if t.ExitCode != 0 {
				st.LastError = exitError(t)
			}
		}
		if t := cs.LastTerminationState.Terminated; t != nil && t.ExitCode != 0 && st.LastError == "" {
			st.LastError = exitError(t)
		}
	}
	if st.Progress == nil && logs != nil && (pod.Status.Phase == corev1.PodRunning || Terminated(pod)) {
		if b, err := logs.Tail(ctx, pod, 20); err == nil {
			st.Progress = LastProgress(b)
		}
	}
	// A mover that failed, or is still trying to reach its peer, says why: an
	// unreachable destination must be visible long before a timeout.
	if p := st.Progress; p != nil && p.LastError != "" && st.LastError == "" && (p.Phase == progress.Failed || p.Phase == progress.Connecting) {
		st.LastError = p.LastError
	}
	if st.Progress != nil && pod.Labels[replv1.MigrationIDLabel] != "" {
		record(pod, st.Progress)
	}
	return st
}

// FinalPoll is how often a finishing mover's progress is read: the app is
// down until the hub has both digests.
const FinalPoll = 100 * time.Millisecond

// Finished tells a mover that has printed its verified completion: a sender
// does so only once the receiver acknowledged the digest, a receiver once the
// sender declared it. Reading it from the log saves the second or two the
// kubelet takes to report the exited container.
func Finished(p *progress.Progress) bool {
	return p != nil && p.Phase == progress.Completed && p.Verified && p.Digest != ""
}

func exitError(t *corev1.ContainerStateTerminated) string {
	if p := LastProgress([]byte(t.Message)); p != nil && p.LastError != "" {
		return p.LastError
	}
	msg := strings.TrimSpace(t.Message)
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		msg = msg[i+1:]
	}
	if msg == "" {
		msg = t.Reason
	}
	return msg
}

// LastProgress returns the last line of b that is a mover progress object.
func LastProgress(b []byte) *progress.Progress {
	var last *progress.Progress
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var p progress.Progress
		if json.Unmarshal(line, &p) == nil && p.Role != "" && p.Phase != "" {
			last = &p
		}
	}
	return last
}
