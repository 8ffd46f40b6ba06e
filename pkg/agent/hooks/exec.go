package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// PodExec runs commands through the API server's pods/exec, as kubectl
// exec does (WebSocket, SPDY where the server has no WebSocket).
type PodExec struct {
	config *rest.Config
	client rest.Interface
}

// NewPodExec returns an Executor using config's identity.
func NewPodExec(config *rest.Config) (*PodExec, error) {
	cs, err := kubernetes.NewForConfig(config)
	if err != nil {
		return nil, err
	}
	return &PodExec{config: config, client: cs.CoreV1().RESTClient()}, nil
}

// Exec implements Executor.
func (e *PodExec) Exec(ctx context.Context, namespace, pod, container string, command []string) error {
	u := e.client.Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: command, Stdout: true, Stderr: true}, scheme.ParameterCodec).URL()
	ws, err := remotecommand.NewWebSocketExecutor(e.config, "GET", u.String())
	if err != nil {
		return err
	}
	spdy, err := remotecommand.NewSPDYExecutor(e.config, "POST", u)
	if err != nil {
		return err
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return err
	}
	var stdout, stderr tail
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	if err == nil {
		return nil
	}
	out := strings.TrimSpace(stderr.String())
	if out == "" {
		out = strings.TrimSpace(stdout.String())
	}
	var exit utilexec.ExitError
	if errors.As(err, &exit) {
		err = fmt.Errorf("exit code %d", exit.ExitStatus())
	}
	if out != "" {
		return fmt.Errorf("%w: %s", err, out)
	}
	return err
}

// tail keeps the last bytes written to it: enough to say why a hook
// failed, never the whole output of a chatty one.
type tail struct{ b bytes.Buffer }

const tailBytes = 512

func (t *tail) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > tailBytes {
		p = p[len(p)-tailBytes:]
	}
	t.b.Write(p)
	if t.b.Len() > tailBytes {
		rest := t.b.Bytes()[t.b.Len()-tailBytes:]
		t.b = *bytes.NewBuffer(append([]byte(nil), rest...))
	}
	return n, nil
}

func (t *tail) String() string { return t.b.String() }
