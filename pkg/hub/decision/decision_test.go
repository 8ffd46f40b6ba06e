package decision

import (
	"context"
	"errors"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
)

func newClient(t *testing.T, objs ...client.Object) client.Client {
	t.Helper()
	s := runtime.NewScheme()
	if err := clusterv1beta1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).
		WithStatusSubresource(&clusterv1beta1.Placement{}, &clusterv1beta1.PlacementDecision{}).Build()
}

func clusters(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("c%03d", i)
	}
	return out
}

func TestSetActualClustersSplitsAndShrinks(t *testing.T) {
	ctx := context.Background()
	p := &clusterv1beta1.Placement{ObjectMeta: metav1.ObjectMeta{
		Name: "app", Namespace: "ns", UID: "u1",
		Annotations: map[string]string{clusterv1beta1.PlacementDisableAnnotation: "true"},
	}}
	c := newClient(t, p)

	if err := SetActualClusters(ctx, c, p, clusters(250)); err != nil {
		t.Fatal(err)
	}
	var l clusterv1beta1.PlacementDecisionList
	if err := c.List(ctx, &l, client.InNamespace("ns")); err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 3 {
		t.Fatalf("want 3 decision objects for 250 clusters, got %d", len(l.Items))
	}
	for _, pd := range l.Items {
		if len(pd.Status.Decisions) > MaxPerObject {
			t.Errorf("%s holds %d decisions", pd.Name, len(pd.Status.Decisions))
		}
		if pd.Labels[clusterv1beta1.PlacementLabel] != "app" || !metav1.IsControlledBy(&pd, p) {
			t.Errorf("%s not labelled/owned: %v %v", pd.Name, pd.Labels, pd.OwnerReferences)
		}
	}
	got, _ := Clusters(ctx, c, "ns", "app")
	if len(got) != 250 {
		t.Fatalf("read back %d clusters", len(got))
	}
	if p.Status.NumberOfSelectedClusters != 250 || len(p.Status.DecisionGroups[0].Decisions) != 3 {
		t.Errorf("placement status not updated: %+v", p.Status)
	}

	if err := SetActualClusters(ctx, c, p, []string{"c001"}); err != nil {
		t.Fatal(err)
	}
	if err := c.List(ctx, &l, client.InNamespace("ns")); err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 1 || l.Items[0].Name != "app-decision-1" {
		t.Fatalf("want only app-decision-1 left, got %d objects", len(l.Items))
	}
	if got, _ := Clusters(ctx, c, "ns", "app"); len(got) != 1 || got[0] != "c001" {
		t.Fatalf("got %v", got)
	}

	if err := SetActualClusters(ctx, c, p, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.List(ctx, &l, client.InNamespace("ns")); err != nil || len(l.Items) != 1 {
		t.Fatalf("an empty decision object must remain: %v %d", err, len(l.Items))
	}
}

func TestSetActualClustersRefusesScheduledPlacement(t *testing.T) {
	p := &clusterv1beta1.Placement{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "ns"}}
	err := SetActualClusters(context.Background(), newClient(t, p), p, []string{"c1"})
	if !errors.Is(err, ErrSchedulingEnabled) {
		t.Fatalf("want ErrSchedulingEnabled, got %v", err)
	}
}

func TestCompareNamesIsNumeric(t *testing.T) {
	if compareNames("app-decision-2", "app-decision-10") >= 0 {
		t.Error("decision-2 must sort before decision-10")
	}
}
