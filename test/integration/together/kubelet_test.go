package together

import (
	"context"
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// volumeBytes is the size of the data every fake mover reports.
const volumeBytes = 4096

// network plays the wire between the movers of both clusters and their
// logs: a final sender's verified digest reaches the receiver of the same
// migration and volume, which then exits with the same digest.
type network struct {
	mu   sync.Mutex
	sent map[string]string // migrationID/volumeKey -> digest
}

func newNetwork() *network { return &network{sent: map[string]string{}} }

func (n *network) send(key, digest string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sent[key] = digest
}

func (n *network) received(key string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	d, ok := n.sent[key]
	return d, ok
}

// Tail plays pods/log: a continuous sender reports that the initial copy is
// done and it keeps up (no lag); other movers log nothing readable.
func (n *network) Tail(_ context.Context, pod *corev1.Pod, _ int64) ([]byte, error) {
	if pod.Labels[replv1.RoleLabel] == moverpod.RoleSender && pod.Status.Phase == corev1.PodRunning {
		return []byte(fmt.Sprintf(`{"role":"sender","phase":"Syncing","time":"2026-01-01T00:00:00Z","bytesTotal":%d,"bytesCopied":%d,"lagBytes":0,"throughputBytesPerSecond":1048576,"verified":false}`+"\n",
			volumeBytes, volumeBytes)), nil
	}
	return nil, apierrors.NewNotFound(corev1.Resource("pods/log"), pod.Name)
}

func moverKey(pod *corev1.Pod) string {
	return pod.Labels[replv1.MigrationIDLabel] + "/" + pod.Labels[replv1.VolumeLabel]
}

func digestOf(key string) string { return fmt.Sprintf("sha256:%x", []byte(key)) }

func completedLine(role, digest string) string {
	return fmt.Sprintf(`{"role":%q,"phase":"Completed","time":"2026-01-01T00:00:00Z","bytesTotal":%d,"bytesCopied":%d,"digest":%q,"verified":true}`,
		role, volumeBytes, volumeBytes, digest)
}

// kubelet plays, on one spoke, the PV controller (binds every claim to a
// new PV), the scheduler (binds pods to the pinned node or the only node),
// the kubelet (Running pods, finished deletions) and the movers' exits.
type kubelet struct{ s *spoke }

func (k *kubelet) run(ctx context.Context) {
	defer GinkgoRecover()
	for ctx.Err() == nil {
		if err := k.pass(ctx); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
			GinkgoWriter.Printf("kubelet %s: %v\n", k.s.name, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (k *kubelet) pass(ctx context.Context) error {
	c := k.s.k8s
	var pvcs corev1.PersistentVolumeClaimList
	if err := c.List(ctx, &pvcs); err != nil {
		return err
	}
	for i := range pvcs.Items {
		pvc := &pvcs.Items[i]
		if pvc.Spec.VolumeName != "" || !pvc.DeletionTimestamp.IsZero() {
			continue
		}
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pv-%s-%s-%s", k.s.name, pvc.Namespace, pvc.Name)},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      pvc.Spec.Resources.Requests,
				AccessModes:                   pvc.Spec.AccessModes,
				VolumeMode:                    pvc.Spec.VolumeMode,
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
				StorageClassName:              ptr.Deref(pvc.Spec.StorageClassName, ""),
				ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
				PersistentVolumeSource:        corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "csi.example.com", VolumeHandle: pvc.Name}},
			},
		}
		if err := c.Create(ctx, pv); client.IgnoreAlreadyExists(err) != nil {
			return err
		}
		pvc.Spec.VolumeName = pv.Name
		if err := c.Update(ctx, pvc); err != nil {
			return err
		}
		pvc.Status.Phase = corev1.ClaimBound
		pvc.Status.Capacity = pvc.Spec.Resources.Requests
		pvc.Status.AccessModes = pvc.Spec.AccessModes
		if err := c.Status().Update(ctx, pvc); err != nil {
			return err
		}
	}

	var pods corev1.PodList
	if err := c.List(ctx, &pods); err != nil {
		return err
	}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !pod.DeletionTimestamp.IsZero() {
			if err := c.Delete(ctx, pod, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
				return err
			}
			continue
		}
		if pod.Spec.NodeName == "" {
			node := moverpod.PinnedNode(pod)
			if node == "" {
				node = "node-" + k.s.name
			}
			if err := k.s.kube.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
				ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
				Target:     corev1.ObjectReference{Kind: "Node", Name: node},
			}, metav1.CreateOptions{}); err != nil {
				return err
			}
			continue // next pass sees the node
		}
		if moverpod.Terminated(pod) {
			continue
		}
		want := corev1.PodRunning
		var message string
		if _, crash := crashingSenders.Load(pod.Namespace); crash && pod.Labels[replv1.RoleLabel] == moverpod.RoleSender {
			if err := crashLoop(ctx, c, pod); err != nil {
				return err
			}
			continue
		}
		if moverpod.IsMover(pod) {
			switch pod.Labels[replv1.RoleLabel] {
			case moverpod.RoleSender:
				if pod.Annotations[replv1.FinishAnnotation] != "" {
					want, message = corev1.PodSucceeded, completedLine("sender", digestOf(moverKey(pod)))
					net.send(moverKey(pod), digestOf(moverKey(pod)))
				}
			case moverpod.RoleReceiver:
				if d, ok := net.received(moverKey(pod)); ok {
					want, message = corev1.PodSucceeded, completedLine("receiver", d)
				}
			}
		}
		if pod.Status.Phase == want {
			continue
		}
		pod.Status.Phase = want
		pod.Status.HostIP = k.s.hostIP
		pod.Status.HostIPs = []corev1.HostIP{{IP: k.s.hostIP}}
		if want == corev1.PodRunning && !moverpod.IsMover(pod) {
			// The app's containers start and pass their readiness probes.
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}
		if want == corev1.PodSucceeded {
			pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
				Name: moverpod.ContainerName, Image: moverImage, ImageID: "sha256:1",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", Message: message}},
			}}
		}
		if err := c.Status().Update(ctx, pod); err != nil {
			return err
		}
	}
	return nil
}

// crashingSenders holds the app namespaces whose senders cannot reach their
// receiver: they restart over and over, as a real sender would.
var crashingSenders sync.Map

func crashLoop(ctx context.Context, c client.Client, pod *corev1.Pod) error {
	if len(pod.Status.ContainerStatuses) > 0 && pod.Status.ContainerStatuses[0].RestartCount >= 5 {
		return nil
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: moverpod.ContainerName, Image: moverImage, ImageID: "sha256:1", RestartCount: 5,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 1, Reason: "Error", Message: "dial receiver: connection refused"}},
	}}
	return c.Status().Update(ctx, pod)
}

func volumeKey(pvc string) string { return moverpod.VolumeKey(pvc) }
