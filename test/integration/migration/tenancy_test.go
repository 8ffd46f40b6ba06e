package migration_test

import (
	"bytes"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/credentials"
	"github.com/stateful-migration/stateful-migration/pkg/hub/migration"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
	"github.com/stateful-migration/stateful-migration/test/integration/framework"
)

// impersonate returns a client acting as user (and groups).
func impersonate(user string, groups ...string) client.Client {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append(groups, "system:authenticated")}
	cl, err := client.New(c, client.Options{Scheme: testScema})
	Expect(err).NotTo(HaveOccurred())
	return cl
}

// tenantCanWriteMigrations grants user every ordinary verb on the migration
// API in ns, the most a namespace admin could be given.
func tenantCanWriteMigrations(ns, user string) {
	Expect(k8s.Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{migrationv1alpha1.GroupVersion.Group},
			Resources: []string{"migrations", "migrations/status", "migrationpolicies"},
			Verbs:     []string{"get", "list", "watch", "create", "update", "patch", "delete"},
		}},
	})).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "tenant"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	})).To(Succeed())
}

// untouched asserts that a refused Migration changed nothing: no work on
// any cluster, no credentials, the app's clusters as they were.
func untouched(a *app, m *migrationv1alpha1.Migration, actual ...string) {
	id := work.MigrationID(m)
	for _, cl := range []string{"cluster1", "cluster2", "cluster3", "cluster4", outsider} {
		Consistently(workExists(cl, work.SourceName(id)), "300ms", interval).Should(BeFalse(), cl)
		Expect(workExists(cl, work.DestinationName(id))()).To(BeFalse(), cl)
	}
	err := k8s.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: credentials.SecretName(m)}, &corev1.Secret{})
	Expect(apierrors.IsNotFound(err)).To(BeTrue(), "credentials secret: %v", err)
	Expect(decided(a.ns, a.placement)()).To(Equal(actual))
}

func admitted(m *migrationv1alpha1.Migration) func() string {
	return func() string {
		c := meta.FindStatusCondition(get(m).Status.Conditions, migrationv1alpha1.ConditionAdmitted)
		if c == nil {
			return ""
		}
		return string(c.Status) + "/" + c.Reason
	}
}

var _ = Describe("Tenancy and trust", func() {
	It("lets only the manager write Migrations (the API server enforces manifests/admissionpolicy.yaml)", func() {
		a := newApp("vap", "a", nil)
		tenantCanWriteMigrations(a.ns, "tenant")
		tenant := impersonate("tenant")
		forged := func() *migrationv1alpha1.Migration {
			return &migrationv1alpha1.Migration{
				ObjectMeta: metav1.ObjectMeta{Namespace: a.ns, GenerateName: "forged-"},
				Spec: migrationv1alpha1.MigrationSpec{PolicyName: a.policy, PlacementName: a.placement,
					SourceCluster: "cluster1", DestinationCluster: "cluster2"},
			}
		}
		By("a tenant with every ordinary right on migrations is refused")
		Eventually(func() string {
			m := forged()
			err := tenant.Create(ctx, m)
			if err == nil { // the policy was not in force yet
				Expect(k8s.Delete(ctx, m)).To(Succeed())
				return "created"
			}
			Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
			return err.Error()
		}, timeout, interval).Should(ContainSubstring("written by the stateful-migration manager only"))

		By("the same tenant may still write its MigrationPolicy")
		pol := &migrationv1alpha1.MigrationPolicy{}
		Expect(tenant.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: a.policy}, pol)).To(Succeed())
		pol.Spec.MaxAttempts = 5
		Expect(tenant.Update(ctx, pol)).To(Succeed())

		By("the tenant cannot rewrite the status of the policy's own Migration")
		editPlacement(a.ns, a.placement, "b")
		m := a.migrationOf()
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phPreparing))
		mine := get(m)
		before := mine.DeepCopy()
		mine.Status.Phase = migrationv1alpha1.PhaseLaunching
		err := tenant.Status().Patch(ctx, mine, client.MergeFrom(before))
		Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(get(m).Status.Phase).To(Equal(phPreparing))

		By("an identity bound to the manager's ClusterRole may")
		Expect(framework.ApplyFile(ctx, k8s, filepath.Join(framework.RepoRoot(), "manifests", "clusterrole.yaml"))).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: a.ns, Name: "manager"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "open-cluster-management:stateful-migration:manager"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "manager"}},
		})).To(Succeed())
		byManager := forged()
		Eventually(func() error { return impersonate("manager").Create(ctx, byManager) }, timeout, interval).Should(Succeed())
		// Not the policy's: the sequencing controller still refuses it.
		Eventually(admitted(byManager), timeout, interval).Should(Equal("False/" + migration.ReasonNotCreatedByPolicy))
	})

	// Each Migration below passes the admission policy (written as a cluster
	// admin) and is refused by the sequencing controller before it acts.
	DescribeTable("refuses a Migration its policy would not have written, touching nothing",
		func(src, dst string, owned bool, reason string) {
			a := newApp("forge", "a", nil)
			pol := &migrationv1alpha1.MigrationPolicy{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: a.policy}, pol)).To(Succeed())
			m := &migrationv1alpha1.Migration{
				ObjectMeta: metav1.ObjectMeta{Namespace: a.ns, GenerateName: "forged-",
					Labels: map[string]string{migrationv1alpha1.PolicyLabel: a.policy}},
				Spec: migrationv1alpha1.MigrationSpec{PolicyName: a.policy, PlacementName: a.placement,
					SourceCluster: src, DestinationCluster: dst},
			}
			if owned {
				m.OwnerReferences = []metav1.OwnerReference{{APIVersion: migrationv1alpha1.GroupVersion.String(), Kind: "MigrationPolicy",
					Name: pol.Name, UID: pol.UID, Controller: ptr.To(true)}}
			}
			Expect(k8s.Create(ctx, m)).To(Succeed())
			Eventually(phaseOf(m), timeout, interval).Should(Equal(migrationv1alpha1.PhaseFailed))
			Expect(admitted(m)()).To(Equal("False/" + reason))
			Expect(get(m).Status.Reason).To(Equal(reason))
			untouched(a, m, "cluster1")
			// The policy ignores a Migration it does not control.
			Expect(getPolicy(a).Status.ActiveMigrations).To(BeEmpty())
		},
		Entry("hand-made: no owner", "cluster1", "cluster2", false, migration.ReasonNotCreatedByPolicy),
		Entry("onto a cluster in no bound ClusterSet", "cluster1", outsider, true, migration.ReasonClusterNotInBoundSet),
		Entry("from a cluster the app is not on", "cluster3", "cluster2", true, migration.ReasonSourceNotActual),
		Entry("to a cluster the scheduler did not choose", "cluster1", "cluster2", true, migration.ReasonDestinationNotDesired),
	)

	It("enrols no policy naming a namespace its app does not deliver into", func() {
		ns := newNamespace("foreign")
		p := &clusterv1beta1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}}
		setEnvs(p, "a")
		Expect(k8s.Create(ctx, p)).To(Succeed())
		Eventually(decided(ns, "web"), timeout, interval).Should(Equal([]string{"cluster1"}))
		Expect(k8s.Create(ctx, framework.AppDelivery(ns, "web-app", []string{"web"}, "app-foreign"))).To(Succeed())
		pol := &migrationv1alpha1.MigrationPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "steal"},
			Spec: migrationv1alpha1.MigrationPolicySpec{
				PlacementRef: migrationv1alpha1.PlacementRef{Name: "web"},
				Volumes:      []migrationv1alpha1.VolumeSelection{{Namespace: "app-foreign", Names: []string{"data"}}, {Namespace: "kube-system", Names: []string{"etcd"}}},
			},
		}
		Expect(k8s.Create(ctx, pol)).To(Succeed())
		enrolledReason := enrolled(ns, "steal")
		Eventually(enrolledReason, timeout, interval).Should(And(
			HavePrefix("False/"+migrationv1alpha1.ReasonVolumeNamespaceNotOwned), ContainSubstring("[kube-system]")))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
		Expect(p.Annotations).NotTo(HaveKey(clusterv1beta1.PlacementDisableAnnotation), "the Placement must not be claimed")

		By("the Placement stays the scheduler's: an edit moves no data and writes no Migration")
		editPlacement(ns, "web", "b")
		Eventually(decided(ns, "web"), timeout, interval).Should(Equal([]string{"cluster2"}))
		var l migrationv1alpha1.MigrationList
		Expect(k8s.List(ctx, &l, client.InNamespace(ns))).To(Succeed())
		Expect(l.Items).To(BeEmpty())

		By("naming only the app's namespace enrols it")
		Eventually(func() error {
			got := getPolicy(&app{ns: ns, policy: "steal"})
			got.Spec.Volumes = got.Spec.Volumes[:1]
			return k8s.Update(ctx, got)
		}, timeout, interval).Should(Succeed())
		Eventually(enrolledReason, timeout, interval).Should(HavePrefix("True/"))
	})

	It("freezes an enrolled Placement whose app stops owning a volume's namespace", func() {
		a := newApp("frozen", "a", nil)
		Eventually(func() error {
			mwrs := framework.AppDelivery(a.ns, a.mwrs, []string{a.placement}, "elsewhere")
			cur := mwrs.DeepCopy()
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(mwrs), cur); err != nil {
				return err
			}
			cur.Spec = mwrs.Spec
			return k8s.Update(ctx, cur)
		}, timeout, interval).Should(Succeed())
		Eventually(func() string {
			c := meta.FindStatusCondition(getPolicy(a).Status.Conditions, migrationv1alpha1.ConditionEnrolled)
			return c.Reason + ": " + c.Message
		}, timeout, interval).Should(And(HavePrefix(migrationv1alpha1.ReasonVolumeNamespaceNotOwned), ContainSubstring("frozen")))
		editPlacement(a.ns, a.placement, "b")
		Consistently(decided(a.ns, a.placement), "2s", interval).Should(Equal([]string{"cluster1"}))
		var l migrationv1alpha1.MigrationList
		Expect(k8s.List(ctx, &l, client.InNamespace(a.ns))).To(Succeed())
		Expect(l.Items).To(BeEmpty())
	})

	It("refuses a credentials Secret it did not mint, and neither ships nor deletes it", func() {
		a := newApp("creds", "a", nil)
		editPlacement(a.ns, a.placement, "b")
		m := a.migrationOf()
		id := work.MigrationID(m)
		Eventually(phaseOf(m), timeout, interval).Should(Equal(phPreparing))
		Eventually(workExists("cluster1", work.SourceName(id)), timeout, interval).Should(BeTrue())
		key := client.ObjectKey{Namespace: a.ns, Name: credentials.SecretName(m)}
		minted := &corev1.Secret{}
		Expect(k8s.Get(ctx, key, minted)).To(Succeed())

		By("a tenant rewrites it with its own CA, keeping the Migration as controller")
		// Rewritten in place, not deleted and created: between the two the
		// hub may mint again, and the create would then race it.
		own, err := credentials.Mint(credentials.Validity)
		Expect(err).NotTo(HaveOccurred())
		minted.Data = map[string][]byte{credentials.KeyCA: own.Server.CA, credentials.KeyServerCert: own.Server.Cert, credentials.KeyServerKey: own.Server.Key,
			credentials.KeyClientCert: own.Client.Cert, credentials.KeyClientKey: own.Client.Key}
		Expect(k8s.Update(ctx, minted)).To(Succeed())
		Expect(metav1.GetControllerOf(minted).UID).To(Equal(m.UID))
		// The running hub keeps shipping the bundle it minted; a restarted
		// one reads the Secret again, and must refuse it.
		stopManager()
		startManager()

		Eventually(phaseOf(m), timeout, interval).Should(Equal(migrationv1alpha1.PhaseFailed))
		Expect(get(m).Status.Reason).To(Equal(migration.ReasonCredentialsRefused))
		Expect(get(m).Status.Message).To(ContainSubstring("other than the one minted"))
		for _, name := range []string{work.SourceName(id), work.DestinationName(id)} {
			for _, cl := range []string{"cluster1", "cluster2"} {
				if w, err := getWork(cl, name)(); err == nil {
					Expect(carries(w, own.Server.CA)).To(BeFalse(), "the forged CA reached %s/%s", cl, name)
				}
			}
		}
		Eventually(workExists("cluster1", work.SourceName(id)), timeout, interval).Should(BeFalse())
		Expect(k8s.Get(ctx, key, &corev1.Secret{})).To(Succeed(), "a Secret the hub did not mint is not deleted")
		Expect(decided(a.ns, a.placement)()).To(Equal([]string{"cluster1"}))
	})
})

func carries(w *workv1.ManifestWork, pem []byte) bool {
	for _, mf := range w.Spec.Workload.Manifests {
		var s corev1.Secret
		if jsonUnmarshal(mf.Raw, &s) == nil && s.Kind == "Secret" && bytes.Equal(s.Data["ca.crt"], pem) {
			return true
		}
	}
	return false
}

func getPolicy(a *app) *migrationv1alpha1.MigrationPolicy {
	p := &migrationv1alpha1.MigrationPolicy{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: a.policy}, p)).To(Succeed())
	return p
}
