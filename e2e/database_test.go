package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
)

// postgresApp is PostgreSQL and a writer committing numbered rows (testdata/postgres-app.yaml).
var postgresApp = app{ns: "e2e-postgres", file: "testdata/postgres-app.yaml", selector: "app=e2e-postgres-writer"}

// postgresRows fills a table of ~270 MiB (fillfactor 50) that the writer dirties after each start.
const postgresRows = 300000

// hooks: a CHECKPOINT while the database still serves, so that its shutdown
// checkpoint has little left to write; "the database answers" as the sign it is back.
const postgresHooks = `{"spec":{"hooks":{
  "preQuiesce":{"command":["psql","-h","/tmp","-U","postgres","-c","CHECKPOINT"],"timeout":"2m"},
  "postLaunch":{"command":["psql","-h","/tmp","-U","postgres","-Atc","SELECT count(*) FROM acks"],"timeout":"10s"}}}}`

var _ = Describe("Moving PostgreSQL, with and without a pre-quiesce CHECKPOINT", Ordered, func() {
	a := postgresApp
	var obs, db *observer
	var without checkpoint
	var withoutM *migrationv1alpha1.Migration

	BeforeAll(func(ctx context.Context) {
		obs = a.deployWithVars(ctx, map[string]string{"POSTGRES_IMAGE": postgresImage, "CLUSTER": cluster1.name, "ROWS": strconv.Itoa(postgresRows)})
		octx, cancel := context.WithCancel(context.Background())
		DeferCleanup(cancel)
		db = observe(octx, a.ns, "app=e2e-postgres", cluster1, cluster2)
	}, NodeTimeout(5*time.Minute))

	It("runs PostgreSQL on cluster1, committing, with most of its table dirty in shared buffers", func(ctx context.Context) {
		a.runsOn(ctx, obs, cluster1)
		dirtied(obs, cluster1)
	}, NodeTimeout(10*time.Minute))

	It("moves it to cluster2 without hooks: every acknowledged commit kept, the shutdown checkpoint in the downtime", func(ctx context.Context) {
		since := time.Now()
		a.selectCluster(ctx, cluster2.name)
		withoutM = a.watchMigration(ctx, cluster1.name, cluster2.name, since, 15*time.Minute, migrationv1alpha1.PhaseCompleted, nil)
		checkMove(obs, withoutM, cluster1, cluster2)
		_, overlaps := db.result()
		Expect(overlaps).To(BeEmpty(), "PostgreSQL ran on both clusters at once")
		without = lastShutdownCheckpoint(ctx, cluster2, a.ns)
		GinkgoWriter.Printf("shutdown checkpoint on cluster1 without the hook: %+v\n", without)
	}, NodeTimeout(20*time.Minute))

	It("moves it back with a pre-quiesce CHECKPOINT and a post-launch check: the shutdown writes little, the downtime shrinks", func(ctx context.Context) {
		a.patchPolicy(ctx, postgresHooks)
		dirtied(obs, cluster2)
		since := time.Now()
		a.selectCluster(ctx, cluster1.name)
		m := a.watchMigration(ctx, cluster2.name, cluster1.name, since, 15*time.Minute, migrationv1alpha1.PhaseCompleted, nil)
		checkMove(obs, m, cluster2, cluster1)
		_, overlaps := db.result()
		Expect(overlaps).To(BeEmpty(), "PostgreSQL ran on both clusters at once")

		h := m.Status.Hooks
		Expect(h.PreQuiesce).NotTo(BeNil())
		Expect(h.PreQuiesce.Phase).To(Equal(replv1.HookSucceeded), "pre-quiesce hook: %s", h.PreQuiesce.Message)
		Expect(h.PreQuiesce.Message).To(ContainSubstring("ran in db-0"))
		Expect(h.PostLaunch).NotTo(BeNil())
		Expect(h.PostLaunch.Phase).To(Equal(replv1.HookSucceeded), "post-launch check: %s", h.PostLaunch.Message)

		with := lastShutdownCheckpoint(ctx, cluster1, a.ns)
		t0, t1 := withoutM.Status.Timings, m.Status.Timings
		line := fmt.Sprintf("shutdown checkpoint: without hook %d buffers in %.3fs, with hook %d buffers in %.3fs (hook %s); "+
			"T_term %s -> %s, T_copy %s -> %s, T_down %s -> %s",
			without.buffers, without.seconds, with.buffers, with.seconds, h.PreQuiesce.Duration().Round(time.Millisecond),
			t0.Termination.Round(time.Millisecond), t1.Termination.Round(time.Millisecond),
			t0.FinalSync.Round(time.Millisecond), t1.FinalSync.Round(time.Millisecond),
			t0.Downtime.Round(time.Millisecond), t1.Downtime.Round(time.Millisecond))
		AddReportEntry("PostgreSQL with and without a pre-quiesce CHECKPOINT", line)
		GinkgoWriter.Println(line)
		Expect(without.buffers).To(BeNumerically(">", 20000), "the writer dirtied the table before the first move")
		Expect(with.buffers).To(BeNumerically("<", without.buffers/4), "the CHECKPOINT hook left the shutdown little to write")
	}, NodeTimeout(20*time.Minute))
})

// postgresAmcheck: the user's own check of the database once it runs on the
// new cluster, here after a failover: pg_amcheck over every table and index.
const postgresAmcheck = `{"spec":{"hooks":{"postLaunch":{"command":["pg_amcheck","-h","/tmp","-U","postgres",
  "--install-missing","--heapallindexed","-d","postgres"],"timeout":"3m"}}}}`

var _ = Describe("Failing PostgreSQL over to its standby when its cluster is lost", Ordered, func() {
	a := postgresApp
	var obs, db *observer
	var standby *migrationv1alpha1.Migration

	BeforeAll(func(ctx context.Context) {
		obs = a.deployWithVars(ctx, map[string]string{"POSTGRES_IMAGE": postgresImage, "CLUSTER": cluster1.name, "ROWS": "20000"})
		octx, cancel := context.WithCancel(context.Background())
		DeferCleanup(cancel)
		db = observe(octx, a.ns, "app=e2e-postgres", cluster1, cluster2)
		mayLose(ctx, cluster1)
	}, NodeTimeout(5*time.Minute))

	It("runs PostgreSQL on cluster1, committing, with a standby on cluster2 that holds a point", func(ctx context.Context) {
		a.runsOn(ctx, obs, cluster1)
		a.patchPolicy(ctx, postgresAmcheck)
		standby = a.standbyOn(ctx, cluster2)
	}, NodeTimeout(12*time.Minute))

	It("recovers it on cluster2 from the point: crash recovery succeeds, pg_amcheck finds nothing corrupt, no commit missing before the newest kept", func(ctx context.Context) {
		pausedAt, lostAt := a.lose(ctx, cluster1, standby)
		editedAt := time.Now()
		m := a.failOver(ctx, standby, cluster2)
		checkFailover(obs, m, cluster1, cluster2, pausedAt, lostAt, editedAt)
		now := obs.view(cluster2.name)
		Expect(now.start["rows"]).To(Equal(now.start["last"]), "every commit up to the newest kept is in the table")
		Expect(dbLogLine(ctx, cluster2, a.ns, "cluster-state:")).To(Equal("cluster-state: in production"),
			"the point was copied from a running database: its start on cluster2 needed crash recovery")
		h := m.Status.Hooks.PostLaunch
		Expect(h).NotTo(BeNil(), "the post-launch check ran after the failover")
		Expect(h.Phase).To(Equal(replv1.HookSucceeded), "pg_amcheck: %s", h.Message)
		_, overlaps := db.result()
		Expect(overlaps).To(BeEmpty(), "PostgreSQL ran on both clusters at once")
	}, NodeTimeout(16*time.Minute))
})

// dbLogLine returns the last line of db-0's log on c starting with prefix.
func dbLogLine(ctx context.Context, c *cluster, ns, prefix string) string {
	var line string
	Eventually(func(g Gomega) {
		raw, err := c.kube.CoreV1().Pods(ns).GetLogs("db-0", &corev1.PodLogOptions{Container: "db"}).DoRaw(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(l, prefix) {
				line = l
			}
		}
		g.Expect(line).NotTo(BeEmpty(), "no %q line in the log of db-0 on %s", prefix, c.name)
	}, time.Minute, time.Second).Should(Succeed())
	return line
}

// dirtied waits until the writer on c has made a pass over the whole table
// since it started (100 commits each update a hundredth of its rows).
func dirtied(obs *observer, c *cluster) {
	start := obs.view(c.name).acks
	Eventually(func() int { return obs.view(c.name).acks - start }, 5*time.Minute, time.Second).Should(BeNumerically(">=", 150),
		"the writer on %s commits", c.name)
}

type checkpoint struct {
	buffers int
	seconds float64
}

var checkpointLine = regexp.MustCompile(`wrote (\d+) buffers .* total=([0-9.]+) s`)

// lastShutdownCheckpoint reads, from the log of the database's start on c,
// what the last shutdown's checkpoint wrote (its log moved with the data).
func lastShutdownCheckpoint(ctx context.Context, c *cluster, ns string) checkpoint {
	var cp checkpoint
	Eventually(func(g Gomega) {
		raw, err := c.kube.CoreV1().Pods(ns).GetLogs("db-0", &corev1.PodLogOptions{Container: "db"}).DoRaw(ctx)
		g.Expect(err).NotTo(HaveOccurred())
		var line string
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(l, "last-shutdown-checkpoint:") {
				line = l
			}
		}
		m := checkpointLine.FindStringSubmatch(line)
		g.Expect(m).NotTo(BeNil(), "no shutdown checkpoint in the log of db-0 on %s: %q", c.name, line)
		cp.buffers, _ = strconv.Atoi(m[1])
		cp.seconds, _ = strconv.ParseFloat(m[2], 64)
	}, time.Minute, time.Second).Should(Succeed())
	return cp
}
