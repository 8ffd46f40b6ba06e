package migration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	clusterv1beta2 "open-cluster-management.io/api/cluster/v1beta2"
	workv1 "open-cluster-management.io/api/work/v1"
	workv1alpha1 "open-cluster-management.io/api/work/v1alpha1"

	"github.com/stateful-migration/stateful-migration/pkg/addon/agent"
	"github.com/stateful-migration/stateful-migration/pkg/agent/report"
	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
	"github.com/stateful-migration/stateful-migration/test/integration/framework"
)

var ctx = context.Background()

func newNamespace(prefix string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	Expect(k8s.Create(ctx, &clusterv1beta2.ManagedClusterSetBinding{
		ObjectMeta: metav1.ObjectMeta{Name: clusterSet, Namespace: ns.Name},
		Spec:       clusterv1beta2.ManagedClusterSetBindingSpec{ClusterSet: clusterSet},
	})).To(Succeed())
	return ns.Name
}

func setEnvs(p *clusterv1beta1.Placement, envs ...string) {
	p.Spec.Predicates = []clusterv1beta1.ClusterPredicate{{
		RequiredClusterSelector: clusterv1beta1.ClusterSelector{LabelSelector: metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "env", Operator: metav1.LabelSelectorOpIn, Values: envs}},
		}},
	}}
}

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

func decided(ns, placement string) func() []string {
	return func() []string {
		c, err := decision.Clusters(ctx, k8s, ns, placement)
		Expect(err).NotTo(HaveOccurred())
		return c
	}
}

// app is one enrolled app: a Placement, a ManifestWorkReplicaSet using it and
// a MigrationPolicy moving PVC app/data.
type app struct {
	ns, placement, policy, mwrs string
	appNS                       string
}

func newApp(prefix, env string, mutate func(*migrationv1alpha1.MigrationPolicy)) *app {
	a := &app{ns: newNamespace(prefix), placement: "web", policy: "web-policy", mwrs: "web-app", appNS: "app-" + prefix}
	p := &clusterv1beta1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: a.ns, Name: a.placement}}
	setEnvs(p, env)
	Expect(k8s.Create(ctx, p)).To(Succeed())
	Eventually(decided(a.ns, a.placement), timeout, interval).Should(HaveLen(1))
	Expect(k8s.Create(ctx, framework.AppDelivery(a.ns, a.mwrs, []string{a.placement}, a.appNS))).To(Succeed())
	pol := &migrationv1alpha1.MigrationPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: a.ns, Name: a.policy},
		Spec: migrationv1alpha1.MigrationPolicySpec{
			PlacementRef:        migrationv1alpha1.PlacementRef{Name: a.placement},
			Volumes:             []migrationv1alpha1.VolumeSelection{{Namespace: a.appNS, Names: []string{"data"}}},
			StorageClassMapping: []migrationv1alpha1.StorageClassMapping{{Source: "standard", Destination: "fast"}},
			Endpoint:            migrationv1alpha1.Endpoint{ServiceAnnotations: map[string]string{"networking.example.com/internal": "true"}},
			MoverResources:      &moverResources,
		},
	}
	if mutate != nil {
		mutate(pol)
	}
	Expect(k8s.Create(ctx, pol)).To(Succeed())
	Eventually(func() string {
		got := &migrationv1alpha1.MigrationPolicy{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(pol), got)).To(Succeed())
		c := meta.FindStatusCondition(got.Status.Conditions, migrationv1alpha1.ConditionConverged)
		if c == nil {
			return ""
		}
		return c.Reason
	}, timeout, interval).Should(Equal(migrationv1alpha1.ReasonActualMatchesDesired))
	return a
}

// migrationOf waits for the single Migration of the app and returns it.
func (a *app) migrationOf() *migrationv1alpha1.Migration {
	var m *migrationv1alpha1.Migration
	Eventually(func() int {
		var l migrationv1alpha1.MigrationList
		Expect(k8s.List(ctx, &l, client.InNamespace(a.ns))).To(Succeed())
		if len(l.Items) == 1 {
			m = &l.Items[0]
		}
		return len(l.Items)
	}, timeout, interval).Should(Equal(1))
	return m
}

func get(m *migrationv1alpha1.Migration) *migrationv1alpha1.Migration {
	out := &migrationv1alpha1.Migration{}
	Expect(k8s.Get(ctx, client.ObjectKeyFromObject(m), out)).To(Succeed())
	return out
}

func phaseOf(m *migrationv1alpha1.Migration) func() migrationv1alpha1.MigrationPhase {
	return func() migrationv1alpha1.MigrationPhase { return get(m).CurrentPhase() }
}

// recorder records every distinct value of a Placement's actual clusters,
// in order, from a watch on its PlacementDecisions.
type recorder struct {
	mu   sync.Mutex
	seq  [][]string
	at   []time.Time
	stop func()
}

func recordDecisions(ns, placement string) *recorder {
	r := &recorder{}
	w, err := k8s.Watch(ctx, &clusterv1beta1.PlacementDecisionList{}, client.InNamespace(ns),
		client.MatchingLabels{clusterv1beta1.PlacementLabel: placement})
	Expect(err).NotTo(HaveOccurred())
	r.stop = w.Stop
	r.add(decided(ns, placement)())
	go func() {
		defer GinkgoRecover()
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				continue
			}
			pd, ok := ev.Object.(*clusterv1beta1.PlacementDecision)
			if !ok {
				continue
			}
			var cl []string
			if ev.Type != watch.Deleted {
				for _, d := range pd.Status.Decisions {
					cl = append(cl, d.ClusterName)
				}
			}
			slices.Sort(cl)
			r.add(cl)
		}
	}()
	return r
}

func (r *recorder) add(cl []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cl == nil {
		cl = []string{}
	}
	if n := len(r.seq); n > 0 && slices.Equal(r.seq[n-1], cl) {
		return
	}
	r.seq = append(r.seq, cl)
	r.at = append(r.at, time.Now())
}

func (r *recorder) sequence() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seq)
}

func (r *recorder) last() []string {
	s := r.sequence()
	return s[len(s)-1]
}

// --- playing the agents (conditions encoded by pkg/agent/report, written by
// the agent's own StatusWriter) ---

type srcState struct {
	phase     replv1.SourcePhase
	protected bool
	pods      int32
	total     int64
	copied    int64
	lag       int64
	tput      int64
	digest    string
	err       string
	cold      bool
	unseen    string             // a change inotify missed: the final pass listed everything
	movedOut  bool               // the agent took hubVerified and labelled the PVC
	hook      *replv1.HookStatus // the pre-quiesce hook, once asked
}

func reportSource(cluster, id string, s srcState) {
	rs := replv1.ReplicationSource{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "smig-" + id}}
	rs.Spec.MigrationID, rs.Spec.HubVerified = id, s.movedOut
	if s.hook != nil {
		rs.Spec.PreQuiesceHook = &replv1.Hook{Command: []string{"true"}}
	}
	rs.Status = replv1.ReplicationSourceStatus{MovedOut: s.movedOut, PreQuiesceHook: s.hook,
		Phase: s.phase, Protected: s.protected, PodsUsingVolumes: s.pods, BytesTotal: s.total, BytesCopied: s.copied,
		LagBytes: s.lag, Throughput: s.tput, LastError: s.err, FinalSyncCold: s.cold,
		FinalPassFull: s.unseen != "", UnseenChange: s.unseen,
		Volumes: []replv1.SourceVolumeStatus{{PVCName: "data", Digest: s.digest, FinalSyncCold: s.cold,
			FinalPassFull: s.unseen != "", UnseenChange: s.unseen}},
	}
	writeCondition(cluster, report.SourceCondition(id, []replv1.ReplicationSource{rs}))
}

// destinationNamespace is the app namespace whose volumes migration id
// moves (its policy's first), as the agents key their reports by it.
func destinationNamespace(cluster, id string) string {
	var ms migrationv1alpha1.MigrationList
	Expect(k8s.List(ctx, &ms)).To(Succeed())
	for i := range ms.Items {
		m := &ms.Items[i]
		if work.MigrationID(m) != id {
			continue
		}
		var p migrationv1alpha1.MigrationPolicy
		if k8s.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Spec.PolicyName}, &p) == nil && len(p.Spec.Volumes) > 0 {
			return p.Spec.Volumes[0].Namespace
		}
	}
	return "app"
}

func reportDestination(cluster, id string, phase replv1.DestinationPhase, endpoint, digest, errMsg string) {
	rd := replv1.ReplicationDestination{ObjectMeta: metav1.ObjectMeta{Namespace: destinationNamespace(cluster, id), Name: "smig-" + id}}
	rd.Spec.MigrationID = id
	rd.Status = replv1.ReplicationDestinationStatus{Phase: phase, LastError: errMsg, BytesReceived: 100,
		Volumes: []replv1.DestinationVolumeStatus{{PVCName: "data", Endpoint: endpoint, Digest: digest}}}
	writeCondition(cluster, report.DestinationCondition(id, []replv1.ReplicationDestination{rd}))
}

// reportApp plays the destination agent once the hub verified the data
// (hubVerified): a Ready app pod mounts the PVC, or none does yet.
func reportApp(cluster, id, digest string, ready bool) {
	reportAppCheck(cluster, id, digest, ready, nil)
}

// reportAppCheck is reportApp with the post-launch check's status.
func reportAppCheck(cluster, id, digest string, ready bool, check *replv1.HookStatus) {
	rd := replv1.ReplicationDestination{ObjectMeta: metav1.ObjectMeta{Namespace: destinationNamespace(cluster, id), Name: "smig-" + id}}
	rd.Spec.MigrationID, rd.Spec.HubVerified = id, true
	if check != nil {
		rd.Spec.PostLaunchHook = &replv1.Hook{Command: []string{"true"}}
	}
	v := replv1.DestinationVolumeStatus{PVCName: "data", Digest: digest}
	if ready {
		v.AppPod = "web-0"
	}
	rd.Status = replv1.ReplicationDestinationStatus{Phase: replv1.DestinationVerified, BytesReceived: 100, Digest: digest,
		AppReady: ready, Volumes: []replv1.DestinationVolumeStatus{v}, PostLaunchHook: check}
	writeCondition(cluster, report.DestinationCondition(id, []replv1.ReplicationDestination{rd}))
}

// hubVerifiedIn tells whether every replication object in w carries hubVerified.
func hubVerifiedIn(w *workv1.ManifestWork) bool {
	n := 0
	for _, mf := range w.Spec.Workload.Manifests {
		var obj struct {
			Kind string
			Spec struct{ HubVerified bool }
		}
		if err := jsonUnmarshal(mf.Raw, &obj); err != nil || obj.Kind != "ReplicationSource" && obj.Kind != "ReplicationDestination" {
			continue
		}
		if !obj.Spec.HubVerified {
			return false
		}
		n++
	}
	return n > 0
}

func writeCondition(cluster string, c metav1.Condition) {
	w := agent.NewStatusWriter(addons, cluster, uplink.AddonName)
	Expect(w.Update(ctx, []metav1.Condition{c})).To(Succeed())
}

func withdraw(cluster, id string) {
	w := agent.NewStatusWriter(addons, cluster, uplink.AddonName)
	Expect(w.Update(ctx, nil, uplink.ConditionType(id, uplink.RoleSource), uplink.ConditionType(id, uplink.RoleDestination))).To(Succeed())
}

// --- playing the work agent ---

func getWork(cluster, name string) func() (*workv1.ManifestWork, error) {
	return func() (*workv1.ManifestWork, error) {
		w := &workv1.ManifestWork{}
		return w, k8s.Get(ctx, client.ObjectKey{Namespace: cluster, Name: name}, w)
	}
}

func workExists(cluster, name string) func() bool {
	return func() bool { _, err := getWork(cluster, name)(); return err == nil }
}

// feedPVC reports the source PVC probe's feedback, as the work agent does.
func feedPVC(cluster, id, appNS, size, class string) {
	Eventually(func() error {
		w, err := getWork(cluster, work.SourceName(id))()
		if err != nil {
			return err
		}
		str := func(s string) workv1.FieldValue { return workv1.FieldValue{Type: workv1.String, String: &s} }
		w.Status.ResourceStatus.Manifests = []workv1.ManifestCondition{{
			ResourceMeta: workv1.ManifestResourceMeta{Kind: "PersistentVolumeClaim", Version: "v1", Resource: "persistentvolumeclaims",
				Name: "data", Namespace: appNS},
			StatusFeedbacks: workv1.StatusFeedbackResult{Values: []workv1.FeedbackValue{
				{Name: work.FeedbackRequest, Value: str(size)},
				{Name: work.FeedbackCapacity, Value: str(size)},
				{Name: work.FeedbackStorageClass, Value: str(class)},
				{Name: work.FeedbackAccessMode, Value: str("ReadWriteOnce")},
				{Name: work.FeedbackVolumeMode, Value: str("Filesystem")},
			}},
			Conditions: []metav1.Condition{},
		}}
		return k8s.Status().Update(ctx, w)
	}, timeout, interval).Should(Succeed())
}

// launchApp plays the ManifestWorkReplicaSet controller and the work agent:
// the app's ManifestWork on cluster, Available.
func (a *app) launchApp(cluster string) {
	w := &workv1.ManifestWork{ObjectMeta: metav1.ObjectMeta{
		Namespace: cluster, GenerateName: a.mwrs + "-",
		Labels: map[string]string{
			workv1alpha1.ManifestWorkReplicaSetControllerNameLabelKey: a.ns + "." + a.mwrs,
			workv1alpha1.ManifestWorkReplicaSetPlacementNameLabelKey:  a.placement,
		},
	}}
	Expect(k8s.Create(ctx, w)).To(Succeed())
	meta.SetStatusCondition(&w.Status.Conditions, metav1.Condition{Type: workv1.WorkAvailable, Status: metav1.ConditionTrue,
		Reason: "ResourcesAvailable", ObservedGeneration: w.Generation})
	Expect(k8s.Status().Update(ctx, w)).To(Succeed())
}

// decodeSource returns the ReplicationSources in a source work.
func replicationSources(w *workv1.ManifestWork) []replv1.ReplicationSource {
	var out []replv1.ReplicationSource
	for _, mf := range w.Spec.Workload.Manifests {
		var rs replv1.ReplicationSource
		if err := jsonUnmarshal(mf.Raw, &rs); err == nil && rs.Kind == "ReplicationSource" {
			out = append(out, rs)
		}
	}
	return out
}

// destinationFinal tells whether the destination work's ReplicationDestinations
// carry finalSync.
func destinationFinal(w *workv1.ManifestWork) bool {
	return everyDestination(w, func(s replv1.ReplicationDestinationSpec) bool { return s.FinalSync })
}

// everyDestination tells whether w holds ReplicationDestinations and ok
// holds for the spec of each.
func everyDestination(w *workv1.ManifestWork, ok func(replv1.ReplicationDestinationSpec) bool) bool {
	n := 0
	for _, mf := range w.Spec.Workload.Manifests {
		var rd replv1.ReplicationDestination
		if err := jsonUnmarshal(mf.Raw, &rd); err == nil && rd.Kind == "ReplicationDestination" {
			if !ok(rd.Spec) {
				return false
			}
			n++
		}
	}
	return n > 0
}

// --- hub reaction time ---

var (
	reactionsMu sync.Mutex
	reactions   = map[string]time.Duration{}
)

// react does action (an agent's report) and measures the time until the
// hub's next action is visible; it must be under 1 s.
func react(step string, action func(), done func() bool) {
	start := time.Now()
	action()
	Eventually(done, 5*time.Second, 5*time.Millisecond).Should(BeTrue(), "hub did not react to %s", step)
	d := time.Since(start)
	reactionsMu.Lock()
	if d > reactions[step] {
		reactions[step] = d
	}
	reactionsMu.Unlock()
	fmt.Fprintf(GinkgoWriter, "hub reaction %-40s %v\n", step, d)
	AddReportEntry("hub reaction "+step, d.String())
	Expect(d).To(BeNumerically("<", time.Second), "hub reaction to %s", step)
}

var _ = ReportAfterSuite("hub reaction times", func(r Report) {
	for _, sr := range r.SpecReports {
		for _, e := range sr.ReportEntries {
			fmt.Printf("%s: %s\n", e.Name, e.StringRepresentation())
		}
	}
})

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }

// moverResources is what every test policy asks for its mover pods.
var moverResources = corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("3Gi")}}

// counterValue reads a counter or gauge of the manager's registry by its labels (0 if absent).
func counterValue(name string, labels map[string]string) float64 {
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// enrolled returns a poll of a policy's Enrolled condition as "Status/Reason: message".
func enrolled(ns, policy string) func() string {
	return func() string {
		c := meta.FindStatusCondition(getPolicy(&app{ns: ns, policy: policy}).Status.Conditions, migrationv1alpha1.ConditionEnrolled)
		if c == nil {
			return ""
		}
		return string(c.Status) + "/" + c.Reason + ": " + c.Message
	}
}
