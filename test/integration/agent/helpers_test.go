package agent

import (
	"context"
	"encoding/json"
	"fmt"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

func storageClass(name string) *storagev1.StorageClass {
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: "example.com/csi"}
}

// hubCondition returns the agent's condition of the given type on its
// ManagedClusterAddOn on the hub (nil if absent).
func hubCondition(ctx context.Context, typ string) *metav1.Condition {
	addon, err := addonClient.AddonV1beta1().ManagedClusterAddOns(clusterName).Get(ctx, uplink.AddonName, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
	return meta.FindStatusCondition(addon.Status.Conditions, typ)
}

func hubMessage(c *metav1.Condition) uplink.Message {
	var m uplink.Message
	Expect(json.Unmarshal([]byte(c.Message), &m)).To(Succeed(), "condition message is JSON: %s", c.Message)
	return m
}

// moverPods lists the mover pods of a migration with the given role.
func moverPods(ctx context.Context, ns, id, role string) []corev1.Pod {
	var pods corev1.PodList
	Expect(k8s.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels{
		replv1.MigrationIDLabel: id, replv1.RoleLabel: role,
	})).To(Succeed())
	return pods.Items
}

// setPodStatus plays kubelet: it updates a pod's status.
func setPodStatus(ctx context.Context, ns, name string, mutate func(*corev1.Pod)) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var pod corev1.Pod
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pod); err != nil {
			return err
		}
		mutate(&pod)
		return k8s.Status().Update(ctx, &pod)
	})).To(Succeed())
}

func running(hostIP string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.HostIP = hostIP
		if hostIP != "" {
			p.Status.HostIPs = []corev1.HostIP{{IP: hostIP}}
		}
	}
}

// succeeded ends the mover container with exit 0 and the given termination message.
func succeeded(message string) func(*corev1.Pod) { return exited(corev1.PodSucceeded, 0, message) }

// failed ends the mover container with exit 1 and the given termination message.
func failed(message string) func(*corev1.Pod) { return exited(corev1.PodFailed, 1, message) }

func exited(phase corev1.PodPhase, code int32, message string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Phase = phase
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{
			Name: "mover", Image: moverImage, ImageID: "sha256:1",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Exited", Message: message}},
		}}
	}
}

func completedLine(role, digest string, bytes int64) string {
	return fmt.Sprintf(`{"role":%q,"phase":"Completed","time":"2026-01-01T00:00:00Z","bytesTotal":%d,"bytesCopied":%d,"digest":%q,"verified":true}`,
		role, bytes, bytes, digest)
}

func patchSpec(ctx context.Context, obj client.Object, mutate func()) {
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate()
		return k8s.Update(ctx, obj)
	})).To(Succeed())
}

// refusedUpdate makes an update the API server must refuse and returns its
// error. The agent writes the object's status meanwhile: a conflict is a
// retry, not the answer.
func refusedUpdate(ctx context.Context, obj client.Object, mutate func()) error {
	var err error
	Eventually(func() bool {
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		mutate()
		err = k8s.Update(ctx, obj)
		return apierrors.IsConflict(err)
	}).Should(BeFalse())
	ExpectWithOffset(1, err).To(HaveOccurred())
	return err
}

// bindPVC plays the PV controller: a PV bound to the claim.
func bindPVC(ctx context.Context, ns, pvcName, pvName string, policy corev1.PersistentVolumeReclaimPolicy) {
	var pvc corev1.PersistentVolumeClaim
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: pvcName}, &pvc)).To(Succeed())
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      pvc.Spec.Resources.Requests,
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: policy,
			StorageClassName:              ptrDeref(pvc.Spec.StorageClassName),
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: pvcName, UID: pvc.UID},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "csi.example.com", VolumeHandle: pvName}},
		},
	}
	Expect(k8s.Create(ctx, pv)).To(Succeed())
	patchSpec(ctx, &pvc, func() { pvc.Spec.VolumeName = pvName })
}

func ptrDeref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func fmtInt(i int64) string { return fmt.Sprintf("%d", i) }
