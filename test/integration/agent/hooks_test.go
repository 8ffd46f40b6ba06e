package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

// grantHookExec creates, in ns, the pods/exec Role and RoleBinding exactly
// as the hub's source work for migration id carries them.
func grantHookExec(ctx context.Context, ns, id string) {
	w, err := work.Source(work.SourceSpec{
		Common:  work.Common{Migration: &migrationv1alpha1.Migration{}, ID: id, AgentNS: agentSA.Namespace, RunsHook: true},
		Volumes: []work.VolumeRef{{Namespace: ns, PVCName: "data"}},
	})
	Expect(err).NotTo(HaveOccurred())
	n := 0
	for _, mf := range w.Spec.Workload.Manifests {
		var meta metav1.PartialObjectMetadata
		Expect(json.Unmarshal(mf.Raw, &meta)).To(Succeed())
		if meta.Name != work.HookExecName(id) {
			continue
		}
		switch meta.Kind {
		case "Role":
			var r rbacv1.Role
			Expect(json.Unmarshal(mf.Raw, &r)).To(Succeed())
			Expect(k8s.Create(ctx, &r)).To(Succeed())
		case "RoleBinding":
			var b rbacv1.RoleBinding
			Expect(json.Unmarshal(mf.Raw, &b)).To(Succeed())
			Expect(k8s.Create(ctx, &b)).To(Succeed())
		}
		n++
	}
	Expect(n).To(Equal(2))
}

// hookSource is a protected ReplicationSource of one PVC used by a running
// app pod on the exec kubelet's node, with a pre-quiesce hook.
func hookSource(ctx context.Context, ns, id string, hook *replv1.Hook) *replv1.ReplicationSource {
	appNamespace(ctx, ns)
	tlsSecret(ctx, ns, "smig-"+id+"-tls")
	sourcePVC(ctx, ns, "data")
	bindPVC(ctx, ns, "data", "pv-"+ns, corev1.PersistentVolumeReclaimRetain)
	appPod(ctx, ns, "db-0", execNode, "data")
	rs := &replv1.ReplicationSource{
		ObjectMeta: metav1.ObjectMeta{Name: "smig-" + id, Namespace: ns},
		Spec: replv1.ReplicationSourceSpec{
			MigrationID: id, TLSSecretName: "smig-" + id + "-tls",
			Volumes: []replv1.SourceVolume{{PVCName: "data", Destination: "203.0.113.9:31443"}}, PreQuiesceHook: hook,
		},
	}
	Expect(k8s.Create(ctx, rs)).To(Succeed())
	return rs
}

func hookOf(ctx context.Context, rs *replv1.ReplicationSource) func() *replv1.HookStatus {
	return func() *replv1.HookStatus {
		got := &replv1.ReplicationSource{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(rs), got)).To(Succeed())
		return got.Status.PreQuiesceHook
	}
}

// reportedHook is the hook status the agent reported to the hub for
// migration id's source (nil until reported; the report follows the status).
func reportedHook(ctx context.Context, id string) *replv1.HookStatus {
	c := hubCondition(ctx, uplink.ConditionType(id, "source"))
	if c == nil {
		return nil
	}
	return hubMessage(c).Hook
}

var _ = Describe("Hooks through pods/exec", func() {
	It("runs the pre-quiesce hook in the app's pod with the migration's exec Role, once, and reports it to the hub", func() {
		ctx := context.Background()
		agent := startAgent()
		defer func() { agent.stop() }()
		out := filepath.Join(GinkgoT().TempDir(), "ran")

		By("without the migration's exec Role the agent may not exec: the hook fails and says so")
		denied := hookSource(ctx, "hook-denied", "h0", &replv1.Hook{Command: []string{"sh", "-c", "echo ran >> " + out}})
		Eventually(hookOf(ctx, denied)).Should(And(Not(BeNil()), HaveField("Phase", replv1.HookFailed)))
		Expect(hookOf(ctx, denied)().Message).To(ContainSubstring("forbidden"))
		Expect(out).NotTo(BeAnExistingFile())

		By("with it, the command runs in the container that mounts the PVC, once")
		rs := hookSource(ctx, "hook-app", "h1", nil)
		grantHookExec(ctx, "hook-app", "h1")
		patchSpec(ctx, rs, func() {
			rs.Spec.PreQuiesceHook = &replv1.Hook{Command: []string{"sh", "-c", `echo "$POD $CONTAINER" >> ` + out}}
		})
		Eventually(hookOf(ctx, rs)).Should(And(Not(BeNil()), HaveField("Phase", replv1.HookSucceeded)))
		st := hookOf(ctx, rs)()
		Expect(st.Runs).To(Equal(int32(1)))
		Expect(st.Message).To(ContainSubstring("ran in db-0"))
		Expect(os.ReadFile(out)).To(Equal([]byte("hook-app.db-0 db\n")))
		Eventually(func() *replv1.HookStatus { return reportedHook(ctx, "h1") }).Should(HaveField("Phase", replv1.HookSucceeded))

		By("an agent restart does not run it again")
		agent.stop()
		agent = startAgent()
		Consistently(func() ([]byte, error) { return os.ReadFile(out) }, "2s").Should(Equal([]byte("hook-app.db-0 db\n")))
	})

	It("reports the exit code and the end of stderr of a failing hook", func() {
		ctx := context.Background()
		agent := startAgent()
		defer agent.stop()
		rs := hookSource(ctx, "hook-fail", "h2", nil)
		grantHookExec(ctx, "hook-fail", "h2")
		patchSpec(ctx, rs, func() {
			rs.Spec.PreQuiesceHook = &replv1.Hook{Command: []string{"sh", "-c", "echo 'FATAL: the database system is starting up' >&2; exit 3"}}
		})
		Eventually(hookOf(ctx, rs)).Should(And(Not(BeNil()), HaveField("Phase", replv1.HookFailed)))
		Expect(hookOf(ctx, rs)().Message).To(Equal("pod db-0 container db: exit code 3: FATAL: the database system is starting up"))
		Eventually(func() *replv1.HookStatus { return reportedHook(ctx, "h2") }).Should(HaveField("Phase", replv1.HookFailed))
	})
})
