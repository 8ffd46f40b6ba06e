package frame

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

type calls struct{ cleanup, withdraw, converge, report, statusWrites int }

func setup(t *testing.T, rs *replv1.ReplicationSource, converge func(*replv1.ReplicationSource) (time.Duration, error)) (Steps[*replv1.ReplicationSource], *calls, client.Client) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := replv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	n := &calls{}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(rs).WithStatusSubresource(rs).
		WithInterceptorFuncs(interceptor.Funcs{SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, o client.Object, opts ...client.SubResourceUpdateOption) error {
			n.statusWrites++
			return c.SubResource(sub).Update(ctx, o, opts...)
		}}).Build()
	return Steps[*replv1.ReplicationSource]{
		Client: c,
		New:    func() *replv1.ReplicationSource { return &replv1.ReplicationSource{} },
		Cleanup: func(context.Context, *replv1.ReplicationSource) error {
			n.cleanup++
			return nil
		},
		Withdraw: func(context.Context, *replv1.ReplicationSource) error {
			if n.cleanup == 0 {
				t.Error("withdrawn before the cleanup")
			}
			n.withdraw++
			return nil
		},
		Converge: func(_ context.Context, o *replv1.ReplicationSource) (time.Duration, error) {
			n.converge++
			return converge(o)
		},
		Report: func(context.Context, *replv1.ReplicationSource) error {
			n.report++
			return nil
		},
	}, n, c
}

func source() *replv1.ReplicationSource {
	return &replv1.ReplicationSource{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "smig-x", Generation: 3},
		Spec: replv1.ReplicationSourceSpec{MigrationID: "abc12345"}}
}

var req = ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "app", Name: "smig-x"}}

func TestAddsFinalizerWritesChangedStatusThenReports(t *testing.T) {
	s, n, c := setup(t, source(), func(o *replv1.ReplicationSource) (time.Duration, error) {
		o.Status.Phase = replv1.SourceSyncing
		return 5 * time.Second, nil
	})
	res, err := s.Reconcile(context.Background(), req)
	if err != nil || res.RequeueAfter != 5*time.Second {
		t.Fatalf("got %v, %v", res, err)
	}
	var got replv1.ReplicationSource
	if err := c.Get(context.Background(), req.NamespacedName, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Finalizers) != 1 || got.Finalizers[0] != replv1.Finalizer {
		t.Errorf("finalizers = %v", got.Finalizers)
	}
	if got.Status.Phase != replv1.SourceSyncing || got.Status.ObservedGeneration != 3 {
		t.Errorf("status = %+v", got.Status)
	}
	if n.converge != 1 || n.report != 1 || n.statusWrites != 1 || n.cleanup != 0 {
		t.Errorf("calls = %+v", *n)
	}

	// Nothing changed: no status write, still a report.
	if _, err := s.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if n.statusWrites != 1 || n.report != 2 {
		t.Errorf("an unchanged status was written again, or the report skipped: %+v", *n)
	}
}

func TestForbiddenNamesTheMissingGrantAndRetries(t *testing.T) {
	s, n, c := setup(t, source(), func(*replv1.ReplicationSource) (time.Duration, error) {
		return 0, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "x", errors.New("no"))
	})
	res, err := s.Reconcile(context.Background(), req)
	if err != nil || res.RequeueAfter != ForbiddenRetry {
		t.Fatalf("got %v, %v", res, err)
	}
	var got replv1.ReplicationSource
	if err := c.Get(context.Background(), req.NamespacedName, &got); err != nil {
		t.Fatal(err)
	}
	ready := meta.FindStatusCondition(got.Status.Conditions, replv1.ConditionReady)
	if ready == nil || ready.Reason != "Forbidden" || ready.Status != metav1.ConditionFalse {
		t.Fatalf("Ready = %+v", ready)
	}
	for _, want := range []string{"namespace app", "smig-abc12345-replicator", replv1.ReplicatorClusterRole, "smig-abc12345-tls-reader"} {
		if !strings.Contains(got.Status.LastError, want) {
			t.Errorf("lastError %q does not name %q", got.Status.LastError, want)
		}
	}
	if n.report != 1 {
		t.Errorf("a Forbidden step must still report: %+v", *n)
	}
}

func TestOtherErrorsReturnWithoutAStatusWrite(t *testing.T) {
	s, n, _ := setup(t, source(), func(o *replv1.ReplicationSource) (time.Duration, error) {
		o.Status.Phase = replv1.SourceFailed
		return 0, errors.New("boom")
	})
	if _, err := s.Reconcile(context.Background(), req); err == nil || err.Error() != "boom" {
		t.Fatalf("err = %v", err)
	}
	if n.statusWrites != 0 || n.report != 0 {
		t.Errorf("calls = %+v", *n)
	}
}

func TestDeletionCleansWithdrawsThenLetsGo(t *testing.T) {
	o := source()
	o.Finalizers = []string{replv1.Finalizer}
	now := metav1.Now()
	o.DeletionTimestamp = &now
	s, n, c := setup(t, o, func(*replv1.ReplicationSource) (time.Duration, error) { return 0, nil })
	if _, err := s.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if n.cleanup != 1 || n.withdraw != 1 || n.converge != 0 || n.report != 0 {
		t.Errorf("calls = %+v", *n)
	}
	if err := c.Get(context.Background(), req.NamespacedName, &replv1.ReplicationSource{}); !apierrors.IsNotFound(err) {
		t.Errorf("the finalizer must go once withdrawn (the object with it): %v", err)
	}
}

func TestFailedCleanupKeepsTheFinalizer(t *testing.T) {
	o := source()
	o.Finalizers = []string{replv1.Finalizer}
	now := metav1.Now()
	o.DeletionTimestamp = &now
	s, n, c := setup(t, o, func(*replv1.ReplicationSource) (time.Duration, error) { return 0, nil })
	s.Cleanup = func(context.Context, *replv1.ReplicationSource) error { return errors.New("pod still there") }
	if _, err := s.Reconcile(context.Background(), req); err == nil {
		t.Fatal("a failed cleanup must be retried")
	}
	var got replv1.ReplicationSource
	if err := c.Get(context.Background(), req.NamespacedName, &got); err != nil || len(got.Finalizers) != 1 || n.withdraw != 0 {
		t.Errorf("finalizer kept and nothing withdrawn: %v %v %+v", err, got.Finalizers, *n)
	}
}

func TestInNamespaceMapsToEveryObjectThere(t *testing.T) {
	a, b := source(), source()
	b.Name = "smig-y"
	other := source()
	other.Namespace = "elsewhere"
	scheme := runtime.NewScheme()
	if err := replv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(a, b, other).Build()
	pod := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db-0"}}
	reqs := InNamespace(c, func() client.ObjectList { return &replv1.ReplicationSourceList{} })(context.Background(), pod)
	if len(reqs) != 2 || reqs[0].Namespace != "app" || reqs[1].Namespace != "app" {
		t.Fatalf("reqs = %v", reqs)
	}
}
