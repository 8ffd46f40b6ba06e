package migration_test

import (
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	workv1 "open-cluster-management.io/api/work/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

func withHooks(p *migrationv1alpha1.MigrationPolicy) {
	p.Spec.MaxAttempts = 1
	p.Spec.Cutover.MaxLagBytes = ptr.To(int64(1 << 20))
	p.Spec.Hooks.PreQuiesce = &replv1.Hook{Command: []string{"psql", "-c", "CHECKPOINT"}, Container: "db",
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}
	p.Spec.Hooks.PostLaunch = &replv1.Hook{Command: []string{"pg_isready"}}
}

// preQuiesceIn returns the hook the source work asks the agent to run.
func preQuiesceIn(cluster, id string) func() *replv1.Hook {
	return func() *replv1.Hook {
		w, err := getWork(cluster, work.SourceName(id))()
		if err != nil {
			return nil
		}
		for _, rs := range replicationSources(w) {
			return rs.Spec.PreQuiesceHook
		}
		return nil
	}
}

// execRole returns the rules of the work's pods/exec Role, nil without one.
func execRole(w *workv1.ManifestWork, id string) []rbacv1.PolicyRule {
	for _, mf := range w.Spec.Workload.Manifests {
		var role rbacv1.Role
		if json.Unmarshal(mf.Raw, &role) == nil && role.Kind == "Role" && role.Name == work.HookExecName(id) {
			return role.Rules
		}
	}
	return nil
}

// syncingWithHooks moves a new app with hooks from cluster1 to cluster2 up
// to Syncing, recording the actual decisions.
func syncingWithHooks(prefix string) (*app, *migrationv1alpha1.Migration, string, *recorder) {
	a := newApp(prefix, "a", withHooks)
	rec := recordDecisions(a.ns, a.placement)
	editPlacement(a.ns, a.placement, "b")
	m := a.migrationOf()
	driveTo(a, m, phSyncing)
	return a, m, work.MigrationID(m), rec
}

var _ = Describe("Hooks", func() {
	caughtUp := srcState{phase: replv1.SourceSyncing, protected: true, pods: 1, total: 1000, copied: 1000, lag: 10, tput: 1000}
	succeeded := &replv1.HookStatus{Phase: replv1.HookSucceeded, Runs: 1, Message: "ran in db-0 in 120ms"}

	It("runs the pre-quiesce hook once the copy caught up and stops the app only after it; completes only after the post-launch check", func() {
		a, m, id, rec := syncingWithHooks("hooks")
		defer rec.stop()

		By("exec rights ship with each side that runs a hook, in the migration's own Role; the hook itself waits for the catch-up")
		src, err := getWork("cluster1", work.SourceName(id))()
		Expect(err).NotTo(HaveOccurred())
		Expect(execRole(src, id)).To(Equal([]rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create", "get"}}}))
		dst, err := getWork("cluster2", work.DestinationName(id))()
		Expect(err).NotTo(HaveOccurred())
		Expect(execRole(dst, id)).NotTo(BeNil())
		Consistently(preQuiesceIn("cluster1", id), time.Second, interval).Should(BeNil())

		By("caught up: the hub asks for the hook and keeps the app on cluster1 while it runs")
		reportSource("cluster1", id, caughtUp)
		Eventually(preQuiesceIn("cluster1", id), timeout, interval).Should(Equal(&replv1.Hook{Command: []string{"psql", "-c", "CHECKPOINT"},
			Container: "db", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, Timeout: &metav1.Duration{Duration: 30 * time.Second}}))
		Eventually(func() string { return get(m).Status.Reason }, timeout, interval).Should(Equal("RunningPreQuiesceHook"))
		running := caughtUp
		running.hook = &replv1.HookStatus{Phase: replv1.HookRunning, Runs: 1}
		reportSource("cluster1", id, running)
		Consistently(phaseOf(m), time.Second, interval).Should(Equal(phSyncing))
		Expect(rec.last()).To(Equal([]string{"cluster1"}))

		By("the hook succeeded: the app is stopped on cluster1")
		done := caughtUp
		done.hook = succeeded
		reportSource("cluster1", id, done)
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phQuiescing))
		pre := get(m).Status.Hooks.PreQuiesce
		Expect(pre).NotTo(BeNil())
		Expect(pre.Phase).To(Equal(replv1.HookSucceeded))
		Expect(pre.Message).To(ContainSubstring("ran in db-0"))
		Expect(pre.StartTime.Time.After(get(m).Status.Timings.QuiesceStart.Time)).To(BeFalse(), "the hook ran before the app was stopped")

		By("final sync and launch")
		stopped := done
		stopped.pods = 0
		reportSource("cluster1", id, stopped)
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phFinal))
		reportDestination("cluster2", id, replv1.DestinationVerified, "192.0.2.10:30443", "d1g35t", "")
		reportSource("cluster1", id, srcState{phase: replv1.SourceVerified, protected: true, total: 1000, copied: 1000, digest: "d1g35t", hook: succeeded})
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phLaunching))
		a.launchApp("cluster2")

		By("the app's pods are Ready but the post-launch check fails: not Completed, the reason says why")
		reportAppCheck("cluster2", id, "d1g35t", true, &replv1.HookStatus{Phase: replv1.HookFailed, Runs: 2, Message: "pod db-0 container db: exit code 2: no response"})
		Eventually(func() string { return get(m).Status.Message }, timeout, interval).Should(ContainSubstring("exit code 2: no response"))
		Expect(get(m).Status.Reason).To(Equal("WaitingForPostLaunchCheck"))
		Consistently(phaseOf(m), time.Second, interval).Should(Equal(phLaunching))

		By("the check succeeded: Completed, T_launch up to it")
		reportAppCheck("cluster2", id, "d1g35t", true, succeeded)
		reportSource("cluster1", id, srcState{phase: replv1.SourceVerified, protected: true, digest: "d1g35t", movedOut: true, hook: succeeded})
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phCompleted))
		got := get(m)
		Expect(got.Status.Hooks.PostLaunch.Phase).To(Equal(replv1.HookSucceeded))
		Expect(got.Status.Hooks.PostLaunch.Runs).To(Equal(int32(1)))
		Expect(got.Status.Timings.Launch).NotTo(BeNil())
	})

	It("keeps the app where it is when the pre-quiesce hook fails", func() {
		_, m, id, rec := syncingWithHooks("hookfail")
		defer rec.stop()
		reportSource("cluster1", id, caughtUp)
		Eventually(preQuiesceIn("cluster1", id), timeout, interval).ShouldNot(BeNil())
		failed := caughtUp
		failed.hook = &replv1.HookStatus{Phase: replv1.HookFailed, Runs: 1, Message: `pod db-0 container db: exit code 1: FATAL: the database system is shutting down`}
		reportSource("cluster1", id, failed)
		Eventually(phaseOf(m), timeout, interval).Should(Equal(migrationv1alpha1.PhaseFailed))
		got := get(m)
		Expect(got.Status.Reason).To(Equal("PreQuiesceHookFailed"))
		Expect(got.Status.Message).To(ContainSubstring("the database system is shutting down"))
		Expect(got.Status.Message).To(ContainSubstring("the app keeps running on cluster1"))
		Expect(got.Status.Hooks.PreQuiesce.Phase).To(Equal(replv1.HookFailed))
		Consistently(rec.sequence, 500*time.Millisecond, interval).Should(Equal([][]string{{"cluster1"}}))
	})

	It("says PostLaunchCheckFailed past the launch timeout and keeps the source data", func() {
		a := newApp("hooklate", "a", func(p *migrationv1alpha1.MigrationPolicy) {
			withHooks(p)
			p.Spec.Hooks.PreQuiesce = nil
			p.Spec.SourceDataPolicy = migrationv1alpha1.SourceDataDelete
			p.Spec.Timeouts.Launch = &metav1.Duration{Duration: 2 * time.Second}
		})
		editPlacement(a.ns, a.placement, "b")
		m := a.migrationOf()
		id := work.MigrationID(m)
		driveTo(a, m, phLaunching)
		a.launchApp("cluster2")
		reportAppCheck("cluster2", id, "d1g35t", true, &replv1.HookStatus{Phase: replv1.HookFailed, Runs: 3, Message: "exit code 2"})
		Eventually(func() string { return get(m).Status.Reason }, timeout, interval).Should(Equal("PostLaunchCheckFailed"))
		Consistently(phaseOf(m), time.Second, interval).Should(Equal(phLaunching))
		w, err := getWork("cluster1", work.SourceName(id))()
		Expect(err).NotTo(HaveOccurred())
		Expect(work.SourceReleases(w)).To(BeFalse(), "no source data released before the check succeeds")
	})
})
