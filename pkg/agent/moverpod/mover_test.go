package moverpod

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestLastProgressSkipsNoise(t *testing.T) {
	b := []byte(`{"role":"sender","phase":"InitialSync","bytesCopied":1}
verified: digest abc
{"role":"sender","phase":"Completed","bytesCopied":7,"digest":"abc","verified":true}
{"not":"progress"}
{broken`)
	p := LastProgress(b)
	if p == nil || p.Phase != "Completed" || p.Digest != "abc" || !p.Verified || p.BytesCopied != 7 {
		t.Fatalf("got %+v", p)
	}
	if LastProgress([]byte("no json here\n")) != nil {
		t.Fatal("want nil without progress lines")
	}
}

func TestReadPrefersTerminationMessageAndReportsFailures(t *testing.T) {
	pod := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
		Name: ContainerName, RestartCount: 3,
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1,
			Message: `{"role":"sender","phase":"Failed","lastError":"dial tcp: connection refused"}`}},
	}}}}
	st := Read(context.Background(), nil, pod)
	if st.Restarts != 3 || st.LastError != "dial tcp: connection refused" {
		t.Fatalf("got %+v", st)
	}
}

type fixedLog string

func (f fixedLog) Tail(context.Context, *corev1.Pod, int64) ([]byte, error) { return []byte(f), nil }

// A sender still trying to reach its receiver says why; one that got through
// and is copying does not repeat an old connection error.
func TestReadReportsTheErrorOfAMoverStillConnecting(t *testing.T) {
	pod := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName}}}}
	st := Read(context.Background(), fixedLog(`{"role":"sender","phase":"Connecting","lastError":"dial tcp 192.0.2.1:31000: i/o timeout"}`+"\n"), pod)
	if st.LastError != "dial tcp 192.0.2.1:31000: i/o timeout" {
		t.Fatalf("connecting: got %+v", st)
	}
	st = Read(context.Background(), fixedLog(`{"role":"sender","phase":"InitialSync","lastError":"dial tcp 192.0.2.1:31000: i/o timeout"}`+"\n"), pod)
	if st.LastError != "" {
		t.Fatalf("copying: got %+v", st)
	}
}

func TestNamesAreValid(t *testing.T) {
	id := strings.Repeat("a", 40)
	pvc := strings.Repeat("p", 253)
	for _, role := range []string{RoleReceiver, RoleSender} {
		if errs := validation.IsDNS1123Subdomain(PodName(id, role, pvc)); len(errs) > 0 {
			t.Errorf("pod name: %v", errs)
		}
		for k, v := range Labels(id, role, pvc) {
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Errorf("label %s: %v", k, errs)
			}
		}
	}
	if errs := validation.IsDNS1035Label(ServiceName(id, pvc)); len(errs) > 0 {
		t.Errorf("service name: %v", errs)
	}
	if PodName("x", RoleSender, "a") == PodName("x", RoleSender, "b") {
		t.Error("pod names of different PVCs collide")
	}
}

func TestExited(t *testing.T) {
	now := metav1.Now()
	term := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 143}}
	run := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	pod := func(deleting bool, states ...corev1.ContainerState) *corev1.Pod {
		p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}}}
		if deleting {
			p.DeletionTimestamp = &now
		}
		for _, s := range states {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{State: s})
		}
		return p
	}
	withInit := pod(true, term, term)
	withInit.Status.InitContainerStatuses = []corev1.ContainerStatus{{State: run}}
	for name, tc := range map[string]struct {
		p    *corev1.Pod
		want bool
	}{
		"not being deleted, containers exited (may restart)": {pod(false, term, term), false},
		"being deleted, one container still running":         {pod(true, term, run), false},
		"being deleted, a container not reported yet":        {pod(true, term), false},
		"being deleted, an init container running":           {withInit, false},
		"being deleted, every container exited":              {pod(true, term, term), true},
	} {
		if got := Exited(tc.p); got != tc.want {
			t.Errorf("%s: Exited = %v, want %v", name, got, tc.want)
		}
	}
}

// The policy's resources win; what they leave unset is derived from the
// volume's size, and a limit never ends below the request.
func TestResources(t *testing.T) {
	gi := func(n int64) resource.Quantity { return *resource.NewQuantity(n<<30, resource.BinarySI) }
	r := Resources(nil, gi(100))
	if got := r.Limits.Memory().String(); got != "7424Mi" {
		t.Errorf("100 GiB volume: memory limit %s, want 7424Mi", got)
	}
	if r.Requests.Memory().String() != defaultMemory || r.Requests.Cpu().String() != defaultCPU {
		t.Errorf("requests %v", r.Requests)
	}
	asked := &corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
	}
	r = Resources(asked, gi(1))
	if r.Limits.Memory().String() != "2Gi" || r.Limits.Cpu().String() != "2" || r.Requests.Memory().String() != "2Gi" {
		t.Errorf("asked %v, got %+v", asked, r)
	}
	if asked.Limits.Memory().Value() != 0 {
		t.Error("the policy's resources were modified")
	}
	if r := Resources(&corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("300Mi")}}, gi(1000)); r.Limits.Memory().String() != "300Mi" {
		t.Errorf("an asked limit was replaced: %v", r.Limits)
	}
}

// What a mover reports is exported on the agent's metrics endpoint, per
// migration, volume and role, until the migration's object is gone.
func TestMoverMetrics(t *testing.T) {
	pod := Pod(PodSpec{Namespace: "app", Name: "smig-m1-send-data", MigrationID: "m1", Role: RoleSender, PVCName: "data"})
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName}}}
	Read(context.Background(), fixedLog(`{"role":"sender","phase":"Syncing","bytesCopied":4096,"lagBytes":512,"passes":7,"peakRSSBytes":1048576}`), pod)
	l := []string{"app", "m1", "data", RoleSender}
	for g, want := range map[*prometheus.GaugeVec]float64{moverBytesCopied: 4096, moverLagBytes: 512, moverPasses: 7, moverPeakRSS: 1 << 20} {
		if got := testutil.ToFloat64(g.WithLabelValues(l...)); got != want {
			t.Errorf("%v = %v, want %v", l, got, want)
		}
	}
	Forget("app", "m1")
	if n := testutil.CollectAndCount(moverBytesCopied); n != 0 {
		t.Errorf("%d series left after Forget", n)
	}
}
