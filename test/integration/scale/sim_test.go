package scale

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	workv1 "open-cluster-management.io/api/work/v1"
	workv1alpha1 "open-cluster-management.io/api/work/v1alpha1"

	"github.com/stateful-migration/stateful-migration/pkg/addon/agent"
	"github.com/stateful-migration/stateful-migration/pkg/agent/report"
	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/hub"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

// The simulated side of the fleet: OCM's work agent (PVC status feedback),
// both stateful-migration agents (their conditions, encoded by
// pkg/agent/report and written by the agent's StatusWriter, as the real
// agent does) and the ManifestWorkReplicaSet controller (the app's
// ManifestWork on the destination). It acts on the hub's ManifestWorks and
// Migrations as it sees them, and times the hub's reaction to each report:
// from the report written to the hub's next action seen.

// Steps the hub reacts to, in a move's order.
const (
	stepSizes    = "PVC sizes -> destination work"
	stepReady    = "destination Ready -> source replication"
	stepCaughtUp = "caught up -> final sync asked"
	stepStopped  = "app stopped -> FinalSync"
	stepVerified = "both Verified -> hubVerified"
	stepHanded   = "app Ready, source moved out -> Completed"
)

var steps = []string{stepSizes, stepReady, stepCaughtUp, stepStopped, stepVerified, stepHanded}

// copyFor is how long a simulated initial copy reports progress before it
// catches up: every agent writes its condition each poll meanwhile.
const (
	copyFor   = 4 * time.Second
	agentPoll = 2 * time.Second
	digest    = "d1g35t"
)

type sim struct {
	c  client.Client
	mu sync.Mutex
	ms map[string]*simMove // by migration ID
	// reactions by step
	reactions map[string][]time.Duration
}

// simMove is what the simulated agents did for one migration.
type simMove struct {
	mu                          sync.Mutex // one agent acts on it at a time
	appNS                       string
	fed, ready, copying, caught bool
	stopped, verified, launched bool
	movedOut, completed         bool
	srcReported, dstReported    bool
	stamp                       map[string]time.Time // step -> when its report was written
}

var theSim *sim

func startSim(ctx context.Context, cfg *rest.Config) {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: hub.NewScheme(), Metrics: metricsserver.Options{BindAddress: "0"}})
	Expect(err).NotTo(HaveOccurred())
	theSim = &sim{c: mgr.GetClient(), ms: map[string]*simMove{}, reactions: map[string][]time.Duration{}}
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetLabels()[work.MigrationIDLabel] != "" })
	Expect(ctrl.NewControllerManagedBy(mgr).Named("sim-agents").
		For(&workv1.ManifestWork{}, builder.WithPredicates(ours)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 16}).
		Complete(reconcilerFunc(theSim.work))).To(Succeed())
	Expect(ctrl.NewControllerManagedBy(mgr).Named("sim-migrations").
		For(&migrationv1alpha1.Migration{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 16}).
		Complete(reconcilerFunc(theSim.migration))).To(Succeed())
	go func() { _ = mgr.Start(ctx) }()
}

type reconcilerFunc func(context.Context, ctrl.Request) (ctrl.Result, error)

func (f reconcilerFunc) Reconcile(ctx context.Context, r ctrl.Request) (ctrl.Result, error) {
	return f(ctx, r)
}

func (s *sim) move(id string) *simMove {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.ms[id]
	if m == nil {
		m = &simMove{stamp: map[string]time.Time{}}
		s.ms[id] = m
	}
	return m
}

// stamped records that the report step reacts to was written now.
func (s *sim) stamped(m *simMove, step string) {
	s.mu.Lock()
	m.stamp[step] = time.Now()
	s.mu.Unlock()
}

// seen records the hub's reaction to step, once.
func (s *sim) seen(m *simMove, step string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := m.stamp[step]; ok {
		s.reactions[step] = append(s.reactions[step], time.Since(t))
		delete(m.stamp, step)
	}
}

func (s *sim) work(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	w := &workv1.ManifestWork{}
	if err := s.c.Get(ctx, req.NamespacedName, w); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	id := w.Labels[work.MigrationIDLabel]
	m := s.move(id)
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.Labels[work.RoleLabel] == uplink.RoleSource {
		return s.sourceAgent(ctx, w, id, m)
	}
	return ctrl.Result{}, s.destinationAgent(ctx, w, id, m)
}

func (s *sim) sourceAgent(ctx context.Context, w *workv1.ManifestWork, id string, m *simMove) (ctrl.Result, error) {
	cluster := w.Namespace
	var rs *replv1.ReplicationSource
	for _, o := range decode[replv1.ReplicationSource](w, "ReplicationSource") {
		rs = &o
	}
	switch {
	case rs == nil && m.srcReported: // cleanup: the agent withdraws its report
		m.srcReported = false
		return ctrl.Result{}, withdraw(ctx, cluster, id, uplink.RoleSource)
	case rs == nil && !m.fed:
		if err := s.feedPVCs(ctx, w); err != nil {
			return ctrl.Result{}, err
		}
		m.fed = true
		s.stamped(m, stepSizes)
	case rs == nil:
	case rs.Spec.HubVerified:
		if !m.movedOut {
			if err := s.reportSource(ctx, cluster, id, rs, replv1.SourceVerified, 0, true); err != nil {
				return ctrl.Result{}, err
			}
			m.movedOut, m.srcReported = true, true
			s.stamped(m, stepHanded)
		}
	case rs.Spec.FinalSync:
		s.seen(m, stepCaughtUp)
		if !m.stopped {
			if err := s.reportSource(ctx, cluster, id, rs, replv1.SourceSyncing, 0, false); err != nil {
				return ctrl.Result{}, err
			}
			m.stopped, m.srcReported = true, true
			s.stamped(m, stepStopped)
		}
	default:
		s.seen(m, stepReady)
		m.appNS = rs.Namespace
		if !m.copying {
			m.copying, m.srcReported = true, true
			go s.copy(ctx, cluster, id, *rs, m)
		}
	}
	return ctrl.Result{}, nil
}

// copy reports an initial copy's progress every poll for copyFor, then
// that it caught up.
func (s *sim) copy(ctx context.Context, cluster, id string, rs replv1.ReplicationSource, m *simMove) {
	for start := time.Now(); time.Since(start) < copyFor; time.Sleep(agentPoll) {
		rs.Status.BytesCopied = int64(time.Since(start) * 1000 / copyFor)
		_ = s.reportSource(ctx, cluster, id, &rs, replv1.SourceInitialSync, 1, false)
	}
	if s.reportSource(ctx, cluster, id, &rs, replv1.SourceSyncing, 1, false) == nil {
		s.stamped(m, stepCaughtUp)
	}
}

func (s *sim) destinationAgent(ctx context.Context, w *workv1.ManifestWork, id string, m *simMove) error {
	cluster := w.Namespace
	var rd *replv1.ReplicationDestination
	for _, o := range decode[replv1.ReplicationDestination](w, "ReplicationDestination") {
		rd = &o
	}
	switch {
	case rd == nil && m.dstReported:
		m.dstReported = false
		return withdraw(ctx, cluster, id, uplink.RoleDestination)
	case rd == nil:
	case rd.Spec.HubVerified:
		s.seen(m, stepVerified)
		if !m.launched {
			if err := s.launchApp(ctx, cluster, id); err != nil {
				return err
			}
			m.launched = true
			if err := s.reportDestination(ctx, cluster, id, rd, replv1.DestinationVerified, true); err != nil {
				return err
			}
			m.dstReported = true
			s.stamped(m, stepHanded)
		}
	case rd.Spec.FinalSync:
	default:
		s.seen(m, stepSizes)
		if !m.ready {
			if err := s.reportDestination(ctx, cluster, id, rd, replv1.DestinationReady, false); err != nil {
				return err
			}
			m.ready, m.dstReported = true, true
			s.stamped(m, stepReady)
		}
	}
	return nil
}

// migration plays what follows from phases only the Migration shows: the
// final sync done on both sides once the hub entered FinalSync.
func (s *sim) migration(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	mig := &migrationv1alpha1.Migration{}
	if err := s.c.Get(ctx, req.NamespacedName, mig); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	id := work.MigrationID(mig)
	m := s.move(id)
	m.mu.Lock()
	defer m.mu.Unlock()
	switch mig.CurrentPhase() {
	case migrationv1alpha1.PhaseFinalSync:
		s.seen(m, stepStopped)
		if !m.verified {
			rs := replv1.ReplicationSource{ObjectMeta: metav1.ObjectMeta{Namespace: m.appNS, Name: "smig-" + id}}
			rd := replv1.ReplicationDestination{ObjectMeta: metav1.ObjectMeta{Namespace: m.appNS, Name: "smig-" + id}}
			if err := s.reportDestination(ctx, mig.Spec.DestinationCluster, id, &rd, replv1.DestinationVerified, false); err != nil {
				return ctrl.Result{}, err
			}
			m.dstReported = true
			if err := s.reportSource(ctx, mig.Spec.SourceCluster, id, &rs, replv1.SourceVerified, 0, false); err != nil {
				return ctrl.Result{}, err
			}
			m.verified, m.srcReported = true, true
			s.stamped(m, stepVerified)
		}
	case migrationv1alpha1.PhaseCompleted:
		s.seen(m, stepHanded)
	}
	return ctrl.Result{}, nil
}

func (s *sim) reportSource(ctx context.Context, cluster, id string, rs *replv1.ReplicationSource, phase replv1.SourcePhase, pods int32, movedOut bool) error {
	o := *rs
	o.Spec.MigrationID, o.Spec.HubVerified = id, movedOut
	copied := max(o.Status.BytesCopied, 1)
	d := ""
	if phase == replv1.SourceVerified {
		d, copied = digest, 1000
	}
	o.Status = replv1.ReplicationSourceStatus{Phase: phase, Protected: true, PodsUsingVolumes: pods, BytesTotal: 1000,
		BytesCopied: copied, LagBytes: 1000 - copied, Throughput: 1000, MovedOut: movedOut,
		Volumes: []replv1.SourceVolumeStatus{{PVCName: "data", Digest: d}}}
	if phase == replv1.SourceSyncing {
		o.Status.LagBytes = 10
	}
	return writeCondition(ctx, cluster, report.SourceCondition(id, []replv1.ReplicationSource{o}))
}

func (s *sim) reportDestination(ctx context.Context, cluster, id string, rd *replv1.ReplicationDestination, phase replv1.DestinationPhase, app bool) error {
	o := *rd
	o.Spec.MigrationID, o.Spec.HubVerified = id, app
	v := replv1.DestinationVolumeStatus{PVCName: "data", Endpoint: "192.0.2.10:30443"}
	if phase == replv1.DestinationVerified {
		v.Digest = digest
	}
	if app {
		v.AppPod = "web-0"
	}
	o.Status = replv1.ReplicationDestinationStatus{Phase: phase, BytesReceived: 1000, Digest: v.Digest, AppReady: app,
		Volumes: []replv1.DestinationVolumeStatus{v}}
	return writeCondition(ctx, cluster, report.DestinationCondition(id, []replv1.ReplicationDestination{o}))
}

// writeCondition and withdraw write as the agent does, and keep trying as
// the agent's next reconcile would: many migrations on one cluster share
// its ManagedClusterAddOn, and the writer's own conflict retries can run out.
func writeCondition(ctx context.Context, cluster string, c metav1.Condition) error {
	return persist(ctx, func() error {
		return agent.NewStatusWriter(addons, cluster, uplink.AddonName).Update(ctx, []metav1.Condition{c})
	})
}

func withdraw(ctx context.Context, cluster, id, role string) error {
	return persist(ctx, func() error {
		return agent.NewStatusWriter(addons, cluster, uplink.AddonName).Update(ctx, nil, uplink.ConditionType(id, role))
	})
}

func persist(ctx context.Context, write func() error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := write()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// feedPVCs is the work agent's status feedback for the PVCs the source work
// probes.
func (s *sim) feedPVCs(ctx context.Context, w *workv1.ManifestWork) error {
	str := func(s string) workv1.FieldValue { return workv1.FieldValue{Type: workv1.String, String: &s} }
	w.Status.ResourceStatus.Manifests = nil
	for _, pvc := range decode[struct {
		Metadata struct{ Name, Namespace string }
	}](w, "PersistentVolumeClaim") {
		w.Status.ResourceStatus.Manifests = append(w.Status.ResourceStatus.Manifests, workv1.ManifestCondition{
			ResourceMeta: workv1.ManifestResourceMeta{Kind: "PersistentVolumeClaim", Version: "v1", Resource: "persistentvolumeclaims",
				Name: pvc.Metadata.Name, Namespace: pvc.Metadata.Namespace},
			StatusFeedbacks: workv1.StatusFeedbackResult{Values: []workv1.FeedbackValue{
				{Name: work.FeedbackRequest, Value: str("5Gi")},
				{Name: work.FeedbackCapacity, Value: str("5Gi")},
				{Name: work.FeedbackStorageClass, Value: str("standard")},
				{Name: work.FeedbackAccessMode, Value: str("ReadWriteOnce")},
				{Name: work.FeedbackVolumeMode, Value: str("Filesystem")},
			}},
			Conditions: []metav1.Condition{},
		})
	}
	return s.c.Status().Update(ctx, w)
}

// launchApp plays the ManifestWorkReplicaSet controller and the work agent:
// the app's ManifestWork on cluster, Available.
func (s *sim) launchApp(ctx context.Context, cluster, id string) error {
	var mig migrationv1alpha1.MigrationList
	if err := s.c.List(ctx, &mig); err != nil {
		return err
	}
	i := slices.IndexFunc(mig.Items, func(m migrationv1alpha1.Migration) bool { return work.MigrationID(&m) == id })
	if i < 0 {
		return nil
	}
	ns := mig.Items[i].Namespace
	w := &workv1.ManifestWork{ObjectMeta: metav1.ObjectMeta{Namespace: cluster, GenerateName: "web-app-", Labels: map[string]string{
		workv1alpha1.ManifestWorkReplicaSetControllerNameLabelKey: ns + ".web-app",
		workv1alpha1.ManifestWorkReplicaSetPlacementNameLabelKey:  "web",
	}}}
	if err := s.c.Create(ctx, w); err != nil {
		return err
	}
	meta.SetStatusCondition(&w.Status.Conditions, metav1.Condition{Type: workv1.WorkAvailable, Status: metav1.ConditionTrue,
		Reason: "ResourcesAvailable", ObservedGeneration: w.Generation})
	return s.c.Status().Update(ctx, w)
}

// decode returns the manifests of w of the given kind.
func decode[T any](w *workv1.ManifestWork, kind string) []T {
	var out []T
	for _, mf := range w.Spec.Workload.Manifests {
		var k struct{ Kind string }
		if json.Unmarshal(mf.Raw, &k) != nil || k.Kind != kind {
			continue
		}
		var o T
		if json.Unmarshal(mf.Raw, &o) == nil {
			out = append(out, o)
		}
	}
	return out
}
