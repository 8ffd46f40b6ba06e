package hub_test

import (
	"context"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
)

var ctx = context.Background()

// placementFor returns a Placement picking the clusters labelled env in envs.
func placementFor(ns, name string, envs ...string) *clusterv1beta1.Placement {
	p := &clusterv1beta1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	setEnvs(p, envs...)
	return p
}

func setEnvs(p *clusterv1beta1.Placement, envs ...string) {
	p.Spec.Predicates = []clusterv1beta1.ClusterPredicate{{
		RequiredClusterSelector: clusterv1beta1.ClusterSelector{LabelSelector: metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: envs}},
		}},
	}}
}

// editPlacement changes the selected envs, retrying on conflicts.
func editPlacement(ns, name string, envs ...string) {
	Eventually(func() error {
		p := &clusterv1beta1.Placement{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
			return err
		}
		setEnvs(p, envs...)
		return k8s.Update(ctx, p)
	}, timeout, interval).Should(Succeed())
}

func newPolicy(ns, name, placement string) *migrationv1alpha1.MigrationPolicy {
	return &migrationv1alpha1.MigrationPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: migrationv1alpha1.MigrationPolicySpec{
			PlacementRef: migrationv1alpha1.PlacementRef{Name: placement},
			Volumes:      []migrationv1alpha1.VolumeSelection{{Namespace: "app", Names: []string{"data"}}},
		},
	}
}

// decided returns the clusters in the PlacementDecisions of a Placement.
func decided(ns, placement string) func() []string {
	return func() []string {
		c, err := decision.Clusters(ctx, k8s, ns, placement)
		Expect(err).NotTo(HaveOccurred())
		return c
	}
}

func getPlacement(ns, name string) func() (*clusterv1beta1.Placement, error) {
	return func() (*clusterv1beta1.Placement, error) {
		p := &clusterv1beta1.Placement{}
		return p, k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p)
	}
}

func getPolicy(ns, name string) *migrationv1alpha1.MigrationPolicy {
	p := &migrationv1alpha1.MigrationPolicy{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p)).To(Succeed())
	return p
}

// conditionReason returns "<status>/<reason>" of a policy condition.
func conditionReason(ns, name, condType string) func() string {
	return func() string {
		c := meta.FindStatusCondition(getPolicy(ns, name).Status.Conditions, condType)
		if c == nil {
			return ""
		}
		return string(c.Status) + "/" + c.Reason
	}
}

func migrations(ns string) func() []migrationv1alpha1.Migration {
	return func() []migrationv1alpha1.Migration {
		var l migrationv1alpha1.MigrationList
		Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
		return l.Items
	}
}

// setPhase plays the sequencing controller.
func setPhase(m *migrationv1alpha1.Migration, phase migrationv1alpha1.MigrationPhase) {
	Eventually(func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
			return err
		}
		m.Status.Phase = phase
		return k8s.Status().Update(ctx, m)
	}, timeout, interval).Should(Succeed())
}

// eventReasons lists the reasons of events regarding an object.
func eventReasons(ns, name string) func() []string {
	return func() []string {
		var l eventsv1.EventList
		Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range l.Items {
			if e.Regarding.Name == name {
				out = append(out, e.Reason)
			}
		}
		return out
	}
}

// enrolled waits until the scheduler decided the Placement and the policy enrolled it.
func enrolled(ns, policy, placement string, clusters ...string) {
	Eventually(conditionReason(ns, policy, migrationv1alpha1.ConditionEnrolled), timeout, interval).Should(Equal("True/Enrolled"))
	Eventually(conditionReason(ns, policy, migrationv1alpha1.ConditionConverged), timeout, interval).Should(Equal("True/ActualMatchesDesired"))
	Expect(getPolicy(ns, policy).Status.ActualClusters).To(Equal(clusters))
}
