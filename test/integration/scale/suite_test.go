// Package scale runs the hub at fleet scale on a real kube-apiserver and etcd
// (envtest): N ManagedClusters with their ManagedClusterAddOns and leases,
// OCM's real placement scheduler, the hub manager as the binary users run
// (addon manager, placement and sequencing controllers, as its own
// ServiceAccount), and simulated agents that answer the protocol with the
// agent's own encoder and status writer (sim_test.go). SCALE_CLUSTERS and
// SCALE_MIGRATIONS size it (defaults 50 and 10, the size `make test` runs);
// `make bench-hub` runs the larger fleets and prints the table (docs/scale.md).
package scale

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"

	"github.com/stateful-migration/stateful-migration/pkg/hub"
	"github.com/stateful-migration/stateful-migration/test/integration/framework"
)

var (
	testEnv  *envtest.Environment
	cfg      *rest.Config
	k8s      client.Client
	addons   addonclient.Interface
	suiteCtx context.Context
	cancel   context.CancelFunc
	hubProc  *exec.Cmd
	metrics  string // the hub's metrics URL
	size     = fleetSize{clusters: envInt("SCALE_CLUSTERS", 50), migrations: envInt("SCALE_MIGRATIONS", 10)}
)

type fleetSize struct{ clusters, migrations int }

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestScale(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Hub at fleet scale")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(klog.NewKlogr())
	clusterCRDs, err := framework.ClusterCRDs()
	Expect(err).NotTo(HaveOccurred())
	addonCRDs, err := framework.AddonCRDs()
	Expect(err).NotTo(HaveOccurred())
	mwrs, err := framework.ManifestWorkReplicaSetCRD()
	Expect(err).NotTo(HaveOccurred())
	testEnv = &envtest.Environment{ErrorIfCRDPathMissing: true, CRDDirectoryPaths: append(append(clusterCRDs, addonCRDs...), mwrs)}
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	Expect(framework.StoreAddonsAsV1beta1(context.Background(), cfg)).To(Succeed())
	Expect(framework.InstallHub(cfg, GinkgoT().TempDir())).To(Succeed())

	// The test's own clients must not be what limits the fleet.
	fast := rest.CopyConfig(cfg)
	fast.QPS, fast.Burst = 5000, 10000
	k8s, err = client.New(fast, client.Options{Scheme: hub.NewScheme()})
	Expect(err).NotTo(HaveOccurred())
	addons, err = addonclient.NewForConfig(fast)
	Expect(err).NotTo(HaveOccurred())

	suiteCtx, cancel = context.WithCancel(context.Background())
	framework.StartScheduler(suiteCtx, fast)
	By(fmt.Sprintf("a fleet of %d clusters, each heartbeating", size.clusters))
	start := time.Now()
	createFleet(suiteCtx, size.clusters)
	AddReportEntry("fleet created", time.Since(start).Round(time.Millisecond).String())
	startHub()
	startSim(suiteCtx, fast)
})

var _ = AfterSuite(func() {
	if hubProc != nil && hubProc.Process != nil {
		_ = hubProc.Process.Kill()
		_ = hubProc.Wait()
	}
	if cancel != nil {
		cancel()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// startHub builds the manager binary and runs it as the shipped
// ServiceAccount, its metrics on a free loopback port.
func startHub() {
	dir := GinkgoT().TempDir()
	bin := filepath.Join(dir, "stateful-migration")
	build := exec.Command("go", "build", "-o", bin, "./cmd/stateful-migration")
	build.Dir = framework.RepoRoot()
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build: %s", out)
	kubeconfig := filepath.Join(dir, "manager.kubeconfig")
	Expect(framework.WriteKubeconfig(cfg, kubeconfig, framework.ManagerIdentity)).To(Succeed())
	addr := freePort()
	metrics = "http://" + addr + "/metrics"
	args := []string{"manager", "--agent-image=stateful-migration:scale",
		"--metrics-bind-address=" + addr, "--health-probe-bind-address=0", "--leader-elect=false"}
	// SCALE_HUB_ARGS: the manager's tuning flags, for comparing settings.
	hubProc = exec.Command(bin, append(args, strings.Fields(os.Getenv("SCALE_HUB_ARGS"))...)...)
	hubProc.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "POD_NAMESPACE=open-cluster-management-addon")
	// Kept after the suite, for a look at what the hub did.
	logf, err := os.CreateTemp("", "scale-manager-*.log")
	Expect(err).NotTo(HaveOccurred())
	hubProc.Stdout, hubProc.Stderr = logf, logf
	Expect(hubProc.Start()).To(Succeed())
	GinkgoWriter.Printf("hub manager pid %d, log %s\n", hubProc.Process.Pid, logf.Name())
	Eventually(func() error { _, err := requests(); return err }, time.Minute, 200*time.Millisecond).Should(Succeed())
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

// requests sums the hub's client-go requests by verb
// (rest_client_requests_total, from its own metrics endpoint).
func requests() (map[string]float64, error) {
	return scrape("rest_client_requests_total{", "method")
}

// scrape sums the hub's metric samples whose line starts with prefix by the
// value of label (and in "all").
func scrape(prefix, label string) (map[string]float64, error) {
	resp, err := http.Get(metrics) //nolint:noctx // loopback, the test's own process
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		j := strings.LastIndex(line, " ")
		if !strings.HasPrefix(line, prefix) || j < 0 {
			continue
		}
		key := ""
		if i := strings.Index(line, label+`="`); i >= 0 {
			key = line[i+len(label)+2:]
			key = key[:strings.Index(key, `"`)]
		}
		v, err := strconv.ParseFloat(line[j+1:], 64)
		if err != nil {
			return nil, err
		}
		out[key] += v
		out["all"] += v
	}
	return out, sc.Err()
}

// usage is the hub process's CPU seconds so far and its resident memory now
// and at peak (bytes).
func usage() (cpu float64, rss, peak int64) {
	pid := hubProc.Process.Pid
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	Expect(err).NotTo(HaveOccurred())
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64) // utime, field 14
	st, _ := strconv.ParseFloat(f[12], 64) // stime, field 15
	cpu = (ut + st) / 100                  // USER_HZ
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	Expect(err).NotTo(HaveOccurred())
	for _, l := range strings.Split(string(status), "\n") {
		fs := strings.Fields(l)
		if len(fs) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fs[1], 10, 64)
		switch fs[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return cpu, rss, peak
}
