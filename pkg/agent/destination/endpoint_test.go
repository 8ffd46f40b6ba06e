package destination

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestEndpointPerServiceType(t *testing.T) {
	pod := &corev1.Pod{Status: corev1.PodStatus{HostIP: "10.0.0.7"}}
	lb := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
	nodePort := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{NodePort: 30443}}}}
	clusterIP := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "172.20.0.9"}}
	for _, c := range []struct {
		name string
		svc  *corev1.Service
		pod  *corev1.Pod
		want string
	}{
		{"load balancer without an address yet", lb, pod, ""},
		{"node port: the receiver's node", nodePort, pod, "10.0.0.7:30443"},
		{"node port before the pod has a node", nodePort, &corev1.Pod{}, ""},
		{"node port without a pod", nodePort, nil, ""},
		{"cluster IP", clusterIP, nil, "172.20.0.9:8443"},
		{"headless", &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone}}, nil, ""},
	} {
		if got := Endpoint(c.svc, c.pod); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	lb.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "rx.example.com"}}
	if got := Endpoint(lb, nil); got != "rx.example.com:8443" {
		t.Errorf("load balancer hostname: %q", got)
	}
	lb.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "2001:db8::1"}}
	if got := Endpoint(lb, nil); got != "[2001:db8::1]:8443" {
		t.Errorf("an IPv6 address is bracketed: %q", got)
	}
}
