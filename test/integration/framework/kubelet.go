package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	remotecommandconsts "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/remotecommand"
	streaming "k8s.io/kubelet/pkg/cri/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// ExecKubelet is the exec endpoint of a kubelet, for an envtest API server
// that has none: pods/exec on a pod bound to its Node is proxied here by the
// API server (authorization, WebSocket-to-SPDY translation and all), served
// by the kubelet's own streaming code, and the command runs as a local
// process with POD and CONTAINER in its environment.
type ExecKubelet struct {
	srv  *httptest.Server
	port int32
}

// StartExecKubelet serves on a loopback port with a self-signed certificate
// (the API server does not verify kubelets without --kubelet-certificate-authority).
func StartExecKubelet() (*ExecKubelet, error) {
	k := &ExecKubelet{}
	mux := http.NewServeMux()
	mux.HandleFunc("/exec/{namespace}/{pod}/{container}", k.serveExec)
	k.srv = httptest.NewUnstartedServer(mux)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	k.srv.Listener = ln
	k.srv.StartTLS()
	k.port = int32(ln.Addr().(*net.TCPAddr).Port)
	return k, nil
}

// Close stops serving.
func (k *ExecKubelet) Close() { k.srv.Close() }

// RegisterNode creates (or updates) Node name with this kubelet's address.
func (k *ExecKubelet) RegisterNode(ctx context.Context, c kubernetes.Interface, name string) error {
	node, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = k.port
	_, err = c.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

func (k *ExecKubelet) serveExec(w http.ResponseWriter, req *http.Request) {
	opts, err := streaming.NewOptions(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pod := req.PathValue("namespace") + "/" + req.PathValue("pod")
	streaming.ServeExec(w, req, localExec{}, pod, types.UID(""), req.PathValue("container"), req.URL.Query()["command"], opts,
		time.Minute, 30*time.Second, remotecommandconsts.SupportedStreamingProtocols)
}

// localExec runs the "container's" command on this machine.
type localExec struct{}

func (localExec) ExecInContainer(ctx context.Context, pod string, _ types.UID, container string, cmd []string, in io.Reader, out, errw io.WriteCloser,
	_ bool, _ <-chan remotecommand.TerminalSize, _ time.Duration) error {
	if len(cmd) == 0 {
		return errors.New("no command")
	}
	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	c.Env = []string{"PATH=/usr/bin:/bin", "POD=" + strings.ReplaceAll(pod, "/", "."), "CONTAINER=" + container}
	c.Stdin, c.Stdout, c.Stderr = in, out, errw
	err := c.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return utilexec.CodeExitError{Err: fmt.Errorf("command %v: %w", cmd, err), Code: exit.ExitCode()}
	}
	return err
}
