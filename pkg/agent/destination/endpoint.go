package destination

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/stateful-migration/stateful-migration/pkg/agent/moverpod"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

func (r *Reconciler) ensureService(ctx context.Context, rd *replv1.ReplicationDestination, pvcName string) (*corev1.Service, error) {
	name := moverpod.ServiceName(rd.Spec.MigrationID, pvcName)
	var svc corev1.Service
	err := r.Reader.Get(ctx, types.NamespacedName{Namespace: rd.Namespace, Name: name}, &svc)
	if err == nil {
		if string(svc.Spec.Type) == string(endpointType(rd)) {
			return &svc, r.annotate(ctx, rd, &svc)
		}
		// Type changed (not expected: the hub sets it once): replace.
		if err := r.Client.Delete(ctx, &svc); client.IgnoreNotFound(err) != nil {
			return nil, err
		}
	} else if !apierrors.IsNotFound(err) {
		return nil, err
	}
	sel := moverpod.Labels(rd.Spec.MigrationID, moverpod.RoleReceiver, pvcName)
	delete(sel, replv1.ManagedByLabel)
	want := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: rd.Namespace, Name: name, Labels: moverpod.Labels(rd.Spec.MigrationID, moverpod.RoleReceiver, pvcName),
			Annotations: rd.Spec.ServiceAnnotations},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceType(endpointType(rd)),
			Selector: sel,
			Ports: []corev1.ServicePort{{Name: "mover", Port: replv1.ReceiverPort, Protocol: corev1.ProtocolTCP,
				TargetPort: intstr.FromInt32(replv1.ReceiverPort)}},
			PublishNotReadyAddresses: true,
		},
	}
	if err := controllerutil.SetControllerReference(rd, want, r.Client.Scheme()); err != nil {
		return nil, err
	}
	if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating Service %s/%s: %w", rd.Namespace, name, err)
	}
	if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(want), &svc); err != nil {
		return nil, err
	}
	return &svc, nil
}

// annotate keeps the policy's annotations on an existing Service (the
// hub may add them after the Service was made); others are left alone.
func (r *Reconciler) annotate(ctx context.Context, rd *replv1.ReplicationDestination, svc *corev1.Service) error {
	missing := map[string]any{}
	for k, v := range rd.Spec.ServiceAnnotations {
		if got, ok := svc.Annotations[k]; !ok || got != v {
			missing[k] = v
		}
	}
	if len(missing) == 0 {
		return nil
	}
	raw, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": missing}})
	if err := r.Client.Patch(ctx, svc, client.RawPatch(types.MergePatchType, raw)); err != nil {
		return fmt.Errorf("annotating Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

func endpointType(rd *replv1.ReplicationDestination) replv1.EndpointType {
	if rd.Spec.EndpointType == "" {
		return replv1.EndpointClusterIP
	}
	return rd.Spec.EndpointType
}

// Endpoint is where the source reaches the receiver: the load balancer
// address, a node address and the node port (the receiver's own node), or
// the cluster IP (for networks that span clusters).
func Endpoint(svc *corev1.Service, pod *corev1.Pod) string {
	port := strconv.Itoa(replv1.ReceiverPort)
	switch svc.Spec.Type {
	case corev1.ServiceTypeLoadBalancer:
		for _, in := range svc.Status.LoadBalancer.Ingress {
			host := in.IP
			if host == "" {
				host = in.Hostname
			}
			if host != "" {
				return net.JoinHostPort(host, port)
			}
		}
		return ""
	case corev1.ServiceTypeNodePort:
		if pod == nil || pod.Status.HostIP == "" || len(svc.Spec.Ports) == 0 || svc.Spec.Ports[0].NodePort == 0 {
			return ""
		}
		return net.JoinHostPort(pod.Status.HostIP, strconv.Itoa(int(svc.Spec.Ports[0].NodePort)))
	default:
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			return ""
		}
		return net.JoinHostPort(svc.Spec.ClusterIP, port)
	}
}
