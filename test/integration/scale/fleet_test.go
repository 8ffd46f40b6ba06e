package scale

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	addonv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"

	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

const (
	clusterSet = "fleet"
	// leaseName and leaseEvery are what OCM's registration agent renews on the
	// hub for each cluster (its default leaseDurationSeconds).
	leaseName  = "managed-cluster-lease"
	leaseEvery = 60 * time.Second
)

func clusterName(i int) string { return fmt.Sprintf("c%04d", i) }

// createFleet registers n clusters as OCM does (ManagedCluster Available,
// its namespace and lease, the addon enabled) and renews every lease.
func createFleet(ctx context.Context, n int) {
	Expect(k8s.Create(ctx, &clusterv1beta2.ManagedClusterSet{
		ObjectMeta: metav1.ObjectMeta{Name: clusterSet},
		Spec: clusterv1beta2.ManagedClusterSetSpec{ClusterSelector: clusterv1beta2.ManagedClusterSelector{
			SelectorType: clusterv1beta2.LabelSelector, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "scale"}},
		}},
	})).To(Succeed())
	// OCM's addon manager owns each ManagedClusterAddOn by the
	// ClusterManagementAddOn; addon-framework renders only those.
	cma := &addonv1beta1.ClusterManagementAddOn{}
	Expect(k8s.Get(ctx, client.ObjectKey{Name: uplink.AddonName}, cma)).To(Succeed())
	parallel(n, func(i int) error {
		name := clusterName(i)
		mc := &clusterv1.ManagedCluster{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"fleet": "scale", "name": name}},
			Spec:       clusterv1.ManagedClusterSpec{HubAcceptsClient: true, LeaseDurationSeconds: int32(leaseEvery / time.Second)},
		}
		if err := k8s.Create(ctx, mc); err != nil {
			return err
		}
		meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{Type: clusterv1.ManagedClusterConditionAvailable,
			Status: metav1.ConditionTrue, Reason: "ManagedClusterAvailable", Message: "simulated"})
		if err := k8s.Status().Update(ctx, mc); err != nil {
			return err
		}
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			return err
		}
		if err := k8s.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: leaseName, Namespace: name},
			Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: time.Now()}}}); err != nil {
			return err
		}
		return k8s.Create(ctx, &addonv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Name: uplink.AddonName, Namespace: name,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "addon.open-cluster-management.io/v1beta1",
				Kind: "ClusterManagementAddOn", Name: cma.Name, UID: cma.UID}}}})
	})
	for i := range n {
		go heartbeat(ctx, clusterName(i))
	}
}

// heartbeat renews a cluster's lease every leaseEvery, from a random phase.
func heartbeat(ctx context.Context, cluster string) {
	t := time.NewTimer(rand.N(leaseEvery))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l := &coordinationv1.Lease{}
		if k8s.Get(ctx, client.ObjectKey{Namespace: cluster, Name: leaseName}, l) == nil {
			l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
			_ = k8s.Update(ctx, l)
		}
		t.Reset(leaseEvery)
	}
}

// parallel runs f(0..n-1) on 32 workers and fails on the first error.
func parallel(n int, f func(i int) error) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range min(32, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					errs <- fmt.Errorf("%d: %w", i, err)
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	Expect(<-errs).NotTo(HaveOccurred())
}
