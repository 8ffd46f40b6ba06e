// Package moverpod builds the agent's mover pods (receivers and senders running
// `stateful-migration mover ...`) and reads their progress back.
package moverpod

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// Roles of mover pods (value of replv1.RoleLabel).
const (
	RoleReceiver  = "receiver"
	RoleSender    = "sender"
	RolePromote   = "promote" // readies a standby's volume for the app (mover promote)
	ContainerName = "mover"
	dataMount     = "/data"
	blockDevice   = "/dev/data"
	tlsMount      = "/tls"
	controlMount  = "/control"
	finishFile    = controlMount + "/finish"
	dataVolume    = "data"
	tlsVolume     = "tls"
	controlVolume = "control"
	defaultCPU    = "50m"
	defaultMemory = "64Mi"
	// The default memory limit (MemoryLimit): peak RSS grows with the files
	// on the volume (measured on 100k files: sender 167 MiB, receiver 96 MiB)
	// and with its size (block sums), docs/mover.md "Memory".
	memoryBase     = 1 << 30
	memoryPerGiB   = 64 << 20
	receiverPortNm = "mover"
)

// VolumeKey is a short, stable, label-safe key for a PVC name (PVC names
// may be longer than a label value or a Service name allows).
func VolumeKey(pvcName string) string {
	h := fnv.New32a()
	h.Write([]byte(pvcName))
	return fmt.Sprintf("%08x", h.Sum32())
}

// PodName is the deterministic name of a mover pod: a restarted agent finds
// the pods of its predecessor instead of starting a second one.
func PodName(migrationID, role, pvcName string) string {
	short := map[string]string{RoleReceiver: "recv", RoleSender: "send", RolePromote: "prom"}[role]
	return fmt.Sprintf("smig-%s-%s-%s", migrationID, short, VolumeKey(pvcName))
}

// ServiceName is the receiver Service of one volume (a DNS-1035 label).
func ServiceName(migrationID, pvcName string) string {
	return fmt.Sprintf("smig-%s-%s", migrationID, VolumeKey(pvcName))
}

// Labels are set on every mover pod; the Service selects on them.
func Labels(migrationID, role, pvcName string) map[string]string {
	return map[string]string{
		replv1.ManagedByLabel:   replv1.ManagedByValue,
		replv1.MigrationIDLabel: migrationID,
		replv1.RoleLabel:        role,
		replv1.VolumeLabel:      VolumeKey(pvcName),
	}
}

// IsMover tells the agent's mover pods from the app's.
func IsMover(pod *corev1.Pod) bool {
	return pod.Labels[replv1.ManagedByLabel] == replv1.ManagedByValue && pod.Labels[replv1.RoleLabel] != ""
}

// PodSpec describes one mover pod.
type PodSpec struct {
	Namespace, Name string
	Image           string
	MigrationID     string
	Role            string
	PVCName         string
	Block           bool
	TLSSecret       string
	Args            []string // after "mover <receive|send>"
	// Node pins the pod to a node (the app pod's, for RWO volumes); empty: anywhere.
	Node        string
	Tolerations []corev1.Toleration
	// Finish (sender only) is the FinishAnnotation to create the pod with,
	// when the final sync was asked before it started.
	Finish string
	// Resources asked by the policy (nil: none); what they leave unset is
	// derived from Capacity, the volume's size.
	Resources *corev1.ResourceRequirements
	Capacity  resource.Quantity
}

// Points is how a standby's receiver keeps points in time (nil: not a
// standby).
type Points struct {
	Exact        bool          // --exact-points
	PerFileAfter time.Duration // --per-file-after
}

// ReceiverArgs are the arguments of `mover receive`; a standby's receiver
// keeps points in time (--points).
func ReceiverArgs(block bool, volume string, points *Points) []string {
	args := append(commonArgs(block, volume), "--listen", ":"+strconv.Itoa(replv1.ReceiverPort))
	if points != nil {
		args = append(args, "--points")
		if points.Exact {
			args = append(args, "--exact-points")
			if points.PerFileAfter > 0 {
				args = append(args, "--per-file-after", points.PerFileAfter.String())
			}
		}
	}
	return args
}

// SenderArgs are the arguments of `mover send`: a continuous sender that
// finishes (final sync and verification) when the pod's FinishAnnotation,
// projected into a file, is set.
func SenderArgs(block bool, volume, to, serverName string, compress, fullVerify bool, bwlimit string) []string {
	args := append(commonArgs(block, volume), "--to", to)
	if serverName != "" {
		args = append(args, "--server-name", serverName)
	}
	args = append(args, "--continuous", "--finish-file", finishFile)
	if compress {
		args = append(args, "--compress")
	}
	if fullVerify {
		args = append(args, "--full-verify")
	}
	if bwlimit != "" && bwlimit != "0" {
		args = append(args, "--bwlimit", bwlimit)
	}
	return args
}

// commonArgs: volume is "<namespace>/<pvc>", the same on both clusters, so a
// sender reaching another volume's receiver is refused.
func commonArgs(block bool, volume string) []string {
	dir := dataMount
	if block {
		dir = blockDevice
	}
	args := []string{"--dir", dir, "--volume", volume,
		"--ca", tlsMount + "/" + replv1.TLSCAKey,
		"--cert", tlsMount + "/" + replv1.TLSCertKey,
		"--key", tlsMount + "/" + replv1.TLSKeyKey,
		"--progress-interval", "2s"}
	if block {
		args = append(args, "--block-device")
	}
	return args
}

// Pod renders the mover pod. Movers run as root so that the receiver can
// recreate ownership and the sender can read every file, with only the
// capabilities that needs; everything else is locked down.
func Pod(s PodSpec) *corev1.Pod {
	sub := "send"
	caps := []corev1.Capability{"DAC_READ_SEARCH"}
	switch s.Role {
	case RoleReceiver, RolePromote: // the rollback restores what the receiver wrote
		sub = map[string]string{RoleReceiver: "receive", RolePromote: "promote"}[s.Role]
		caps = []corev1.Capability{"CHOWN", "FOWNER", "DAC_OVERRIDE", "FSETID", "MKNOD"} // MKNOD: device nodes on the volume
	}
	c := corev1.Container{
		Name:  ContainerName,
		Image: s.Image,
		Args:  append([]string{"mover", sub}, s.Args...),
		// On failure the last log lines (the mover's JSON progress with
		// lastError) become the termination message the agent reports.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		ImagePullPolicy:          corev1.PullIfNotPresent,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To[int64](0),
			RunAsNonRoot:             ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Privileged:               ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: caps},
		},
		Resources:    Resources(s.Resources, s.Capacity),
		VolumeMounts: []corev1.VolumeMount{{Name: tlsVolume, MountPath: tlsMount, ReadOnly: true}},
	}
	if s.Role == RoleReceiver {
		c.Ports = []corev1.ContainerPort{{Name: receiverPortNm, ContainerPort: replv1.ReceiverPort, Protocol: corev1.ProtocolTCP}}
	}
	if s.Block {
		c.VolumeDevices = []corev1.VolumeDevice{{Name: dataVolume, DevicePath: blockDevice}}
	} else {
		// The sender only reads: its mount of the app's volume is read-only.
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: dataVolume, MountPath: dataMount, ReadOnly: s.Role == RoleSender})
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   s.Namespace,
			Name:        s.Name,
			Labels:      Labels(s.MigrationID, s.Role, s.PVCName),
			Annotations: map[string]string{replv1.VolumeLabel: s.PVCName},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 restartPolicy(s.Role),
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			SecurityContext: &corev1.PodSecurityContext{
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers:  []corev1.Container{c},
			Tolerations: s.Tolerations,
			Volumes: []corev1.Volume{
				{Name: dataVolume, VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: s.PVCName}}},
				{Name: tlsVolume, VolumeSource: corev1.VolumeSource{
					Secret: &corev1.SecretVolumeSource{SecretName: s.TLSSecret, DefaultMode: ptr.To[int32](0o400)}}},
			},
		},
	}
	if s.Role == RoleSender {
		// The agent asks the running sender to finish through an annotation:
		// the kubelet rewrites this file within a second of the patch.
		pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts,
			corev1.VolumeMount{Name: controlVolume, MountPath: controlMount, ReadOnly: true})
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: controlVolume, VolumeSource: corev1.VolumeSource{
			DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{{
				Path:     "finish",
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['" + replv1.FinishAnnotation + "']"},
			}}}}})
		if s.Finish != "" {
			pod.Annotations[replv1.FinishAnnotation] = s.Finish
		}
	}
	if s.Node != "" {
		// Same node as the app's pod (RWO): required affinity on the node
		// name, as DaemonSets do, so the scheduler still checks resources.
		pod.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{
					Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{s.Node},
				}}}},
			}}}
	}
	return pod
}

// restartPolicy: a promotion that refuses the volume would refuse it again.
func restartPolicy(role string) corev1.RestartPolicy {
	if role == RolePromote {
		return corev1.RestartPolicyNever
	}
	return corev1.RestartPolicyOnFailure
}

// PromoteArgs are the arguments of `mover promote`.
func PromoteArgs() []string { return []string{"--dir", dataMount} }

// PinnedNode returns the node a mover pod was pinned to ("" if none).
func PinnedNode(pod *corev1.Pod) string {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, f := range t.MatchFields {
			if f.Key == "metadata.name" && len(f.Values) == 1 {
				return f.Values[0]
			}
		}
	}
	return ""
}

// UsesPVC tells whether pod mounts claim.
func UsesPVC(pod *corev1.Pod, claim string) bool {
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim {
			return true
		}
	}
	return false
}

// PodReady tells whether the pod's Ready condition is True.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Exited is true for a pod being deleted whose every container has exited
// and none can start again: nothing of it writes to its volumes any more,
// though the kubelet may still be unmounting them before the pod object
// goes (which takes another second or so of downtime to wait for).
func Exited(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp.IsZero() || len(pod.Status.ContainerStatuses) < len(pod.Spec.Containers) {
		return false
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.State.Terminated == nil {
			return false
		}
	}
	for _, cs := range append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.EphemeralContainerStatuses...) {
		if cs.State.Running != nil {
			return false
		}
	}
	return true
}

// Terminated is true for pods whose containers can no longer run.
func Terminated(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// Resources of a mover pod: what the policy asks, and for what it leaves
// unset a CPU request, a memory request and a memory limit the mover's
// bound fits: a fixed part (frame buffers, queues, the runtime) plus the
// block sums and file index, which grow with the volume (docs/mover.md,
// "Memory"). A limit below the request the policy asks is raised to it.
func Resources(asked *corev1.ResourceRequirements, capacity resource.Quantity) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{}
	if asked != nil {
		r = *asked.DeepCopy()
	}
	set := func(l *corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
		if *l == nil {
			*l = corev1.ResourceList{}
		}
		if _, ok := (*l)[name]; !ok {
			(*l)[name] = q
		}
	}
	set(&r.Requests, corev1.ResourceCPU, resource.MustParse(defaultCPU))
	set(&r.Requests, corev1.ResourceMemory, resource.MustParse(defaultMemory))
	set(&r.Limits, corev1.ResourceMemory, MemoryLimit(capacity))
	if req, lim := r.Requests[corev1.ResourceMemory], r.Limits[corev1.ResourceMemory]; lim.Cmp(req) < 0 {
		r.Limits[corev1.ResourceMemory] = req
	}
	return r
}

// MemoryLimit is the default memory limit of a mover for a volume of the
// given size: memoryBase plus memoryPerGiB for each GiB.
func MemoryLimit(capacity resource.Quantity) resource.Quantity {
	gib := (capacity.Value() + 1<<30 - 1) >> 30
	return *resource.NewQuantity(memoryBase+gib*memoryPerGiB, resource.BinarySI)
}
