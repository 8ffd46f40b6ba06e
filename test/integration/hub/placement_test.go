package hub_test

import (
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
	"github.com/stateful-migration/stateful-migration/pkg/hub/placement"
)

var _ = Describe("Placement desired vs actual", func() {
	var ns string
	const app, pol = "app", "app-policy"
	companion := placement.CompanionName(app)

	BeforeEach(func() {
		ns = newNamespace("enrol")
		Expect(k8s.Create(ctx, placementFor(ns, app, "a"))).To(Succeed())
		By("the scheduler decides cluster1 before enrolment")
		Eventually(decided(ns, app), timeout, interval).Should(Equal([]string{"cluster1"}))
	})

	It("adopts the current decision on enrolment without moving anything", func() {
		Eventually(func() (int32, error) {
			p, err := getPlacement(ns, app)()
			return p.Status.NumberOfSelectedClusters, err
		}, timeout, interval).Should(BeEquivalentTo(1))
		before := &clusterv1beta1.PlacementDecision{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: app + "-decision-1"}, before)).To(Succeed())

		Expect(k8s.Create(ctx, newPolicy(ns, pol, app))).To(Succeed())
		enrolled(ns, pol, app, "cluster1")

		p, err := getPlacement(ns, app)()
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Annotations).To(HaveKeyWithValue(clusterv1beta1.PlacementDisableAnnotation, "true"))
		Expect(meta.IsStatusConditionTrue(p.Status.Conditions, placement.PlacementConditionManaged)).To(BeTrue())
		Expect(p.Status.NumberOfSelectedClusters).To(BeEquivalentTo(1))

		c, err := getPlacement(ns, companion)()
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Labels).To(HaveKeyWithValue(migrationv1alpha1.DesiredForLabel, app))
		Expect(c.OwnerReferences).To(ContainElement(HaveField("UID", p.UID)))
		Expect(c.Annotations).NotTo(HaveKey(clusterv1beta1.PlacementDisableAnnotation))
		Expect(decided(ns, companion)()).To(Equal([]string{"cluster1"}))

		pol := getPolicy(ns, pol)
		Expect(pol.Finalizers).To(ContainElement(placement.Finalizer))
		Expect(pol.Status.DesiredClusters).To(Equal([]string{"cluster1"}))
		Expect(pol.Status.DesiredPlacement).To(Equal(companion))
		Expect(pol.Status.ObservedGeneration).To(Equal(pol.Generation))

		By("the scheduler's decision object is kept as is and no migration appears")
		Consistently(func() []migrationv1alpha1.Migration { return migrations(ns)() }, 2*time.Second, interval).Should(BeEmpty())
		after := &clusterv1beta1.PlacementDecision{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(before), after)).To(Succeed())
		Expect(after.UID).To(Equal(before.UID))
		Expect(after.ResourceVersion).To(Equal(before.ResourceVersion), "adopting must not rewrite the decision")
		Expect(after.Status.Decisions).To(Equal(before.Status.Decisions))
		Expect(eventReasons(ns, app)()).To(ContainElement("Enrolled"))
	})

	It("mirrors every edit of the Placement into the companion", func() {
		Expect(k8s.Create(ctx, newPolicy(ns, pol, app))).To(Succeed())
		enrolled(ns, pol, app, "cluster1")

		Eventually(func() error {
			p, err := getPlacement(ns, app)()
			if err != nil {
				return err
			}
			n := int32(2)
			p.Spec.NumberOfClusters = &n
			p.Spec.Tolerations = []clusterv1beta1.Toleration{{Key: "maintenance", Operator: clusterv1beta1.TolerationOpExists}}
			return k8s.Update(ctx, p)
		}, timeout, interval).Should(Succeed())
		Eventually(func() (clusterv1beta1.PlacementSpec, error) {
			c, err := getPlacement(ns, companion)()
			if err != nil {
				return clusterv1beta1.PlacementSpec{}, err
			}
			return c.Spec, nil
		}, timeout, interval).Should(SatisfyAll(
			HaveField("NumberOfClusters", HaveValue(BeEquivalentTo(2))),
			HaveField("Tolerations", HaveLen(1)),
		))
		p, _ := getPlacement(ns, app)()
		c, _ := getPlacement(ns, companion)()
		Expect(c.Spec).To(Equal(p.Spec))
	})

	It("turns a predicate edit into exactly one Migration while actual stays put", func() {
		Expect(k8s.Create(ctx, newPolicy(ns, pol, app))).To(Succeed())
		enrolled(ns, pol, app, "cluster1")

		editPlacement(ns, app, "b")
		By("the scheduler moves the desired clusters; the hub records the move")
		var desiredAt, detectedAt time.Time
		Eventually(func() bool {
			now := time.Now()
			if desiredAt.IsZero() && slices.Equal(decided(ns, companion)(), []string{"cluster2"}) {
				desiredAt = now
			}
			if !desiredAt.IsZero() && len(migrations(ns)()) > 0 {
				detectedAt = now
			}
			return !detectedAt.IsZero()
		}, timeout, 10*time.Millisecond).Should(BeTrue())
		AddReportEntry("hub reaction: desired changed -> Migration recorded", detectedAt.Sub(desiredAt).String())
		Expect(detectedAt.Sub(desiredAt)).To(BeNumerically("<", time.Second), "hub must react within 1 s")

		By("exactly one Pending cluster1 -> cluster2 Migration, and actual unchanged")
		Consistently(func() []migrationv1alpha1.Migration { return migrations(ns)() }, 3*time.Second, interval).Should(HaveLen(1))
		Consistently(decided(ns, app), time.Second, interval).Should(Equal([]string{"cluster1"}))
		m := migrations(ns)()[0]
		Expect(m.Spec).To(Equal(migrationv1alpha1.MigrationSpec{
			PolicyName: pol, PlacementName: app, SourceCluster: "cluster1", DestinationCluster: "cluster2",
		}))
		Expect(m.Status.Phase).To(Equal(migrationv1alpha1.PhasePending))
		Expect(m.Labels).To(HaveKeyWithValue(migrationv1alpha1.PolicyLabel, pol))
		Expect(metav1.IsControlledBy(&m, getPolicy(ns, pol))).To(BeTrue())

		Eventually(conditionReason(ns, pol, migrationv1alpha1.ConditionConverged), timeout, interval).Should(Equal("False/MigrationInProgress"))
		st := getPolicy(ns, pol).Status
		Expect(st.DesiredClusters).To(Equal([]string{"cluster2"}))
		Expect(st.ActualClusters).To(Equal([]string{"cluster1"}))
		Expect(st.ActiveMigrations).To(Equal([]string{m.Name}))
		Expect(eventReasons(ns, pol)()).To(ContainElement("MigrationDetected"))
		Expect(eventReasons(ns, app)()).To(ContainElement("MigrationDetected"))

		By("the sequencing controller's contract: write actual, then mark Completed")
		p, err := getPlacement(ns, app)()
		Expect(err).NotTo(HaveOccurred())
		Expect(decision.SetActualClusters(ctx, k8s, p, []string{"cluster2"})).To(Succeed())
		setPhase(&m, migrationv1alpha1.PhaseCompleted)
		Eventually(conditionReason(ns, pol, migrationv1alpha1.ConditionConverged), timeout, interval).Should(Equal("True/ActualMatchesDesired"))
		Consistently(func() []migrationv1alpha1.Migration { return migrations(ns)() }, 2*time.Second, interval).Should(HaveLen(1))
		Expect(decided(ns, app)()).To(Equal([]string{"cluster2"}))
		p, _ = getPlacement(ns, app)()
		Expect(p.Status.NumberOfSelectedClusters).To(BeEquivalentTo(1))
		Expect(p.Status.DecisionGroups).To(ConsistOf(HaveField("Decisions", Equal([]string{app + "-decision-1"}))))
	})

	It("applies an addition with no matching removal directly, without a Migration", func() {
		Expect(k8s.Create(ctx, newPolicy(ns, pol, app))).To(Succeed())
		enrolled(ns, pol, app, "cluster1")

		editPlacement(ns, app, "a", "b")
		Eventually(decided(ns, app), timeout, interval).Should(Equal([]string{"cluster1", "cluster2"}))
		Eventually(conditionReason(ns, pol, migrationv1alpha1.ConditionConverged), timeout, interval).Should(Equal("True/ActualMatchesDesired"))
		Expect(migrations(ns)()).To(BeEmpty())
		p, _ := getPlacement(ns, app)()
		Expect(p.Status.NumberOfSelectedClusters).To(BeEquivalentTo(2))
	})

	It("records one Migration per (removed, added) pair", func() {
		editPlacement(ns, app, "a", "b")
		Eventually(decided(ns, app), timeout, interval).Should(Equal([]string{"cluster1", "cluster2"}))
		Expect(k8s.Create(ctx, newPolicy(ns, pol, app))).To(Succeed())
		enrolled(ns, pol, app, "cluster1", "cluster2")

		editPlacement(ns, app, "c", "d")
		Eventually(func() []migrationv1alpha1.Migration { return migrations(ns)() }, timeout, interval).Should(HaveLen(2))
		Consistently(func() []migrationv1alpha1.Migration { return migrations(ns)() }, 2*time.Second, interval).Should(ConsistOf(
			HaveField("Spec", SatisfyAll(HaveField("SourceCluster", "cluster1"), HaveField("DestinationCluster", "cluster3"))),
			HaveField("Spec", SatisfyAll(HaveField("SourceCluster", "cluster2"), HaveField("DestinationCluster", "cluster4"))),
		))
		Expect(decided(ns, app)()).To(Equal([]string{"cluster1", "cluster2"}))
	})

	It("does not apply a re-target as a direct addition while a migration is active", func() {
		Expect(k8s.Create(ctx, newPolicy(ns, pol, app))).To(Succeed())
		enrolled(ns, pol, app, "cluster1")
		editPlacement(ns, app, "b")
		Eventually(func() []migrationv1alpha1.Migration { return migrations(ns)() }, timeout, interval).Should(HaveLen(1))

		By("moving the target to cluster3 mid-migration")
		editPlacement(ns, app, "c")
		Eventually(decided(ns, companion), timeout, interval).Should(Equal([]string{"cluster3"}))
		Consistently(decided(ns, app), 2*time.Second, interval).Should(Equal([]string{"cluster1"}))
		Expect(migrations(ns)()).To(HaveLen(1))
		// SchedulingPending is a legitimate transient while the companion's
		// status catches up with its new spec; the settled reason is what counts.
		Eventually(conditionReason(ns, pol, migrationv1alpha1.ConditionConverged), timeout, interval).Should(Equal("False/MigrationInProgress"))
	})

	It("does not recreate a move that ended unsuccessfully until the user deletes it", func() {
		Expect(k8s.Create(ctx, newPolicy(ns, pol, app))).To(Succeed())
		enrolled(ns, pol, app, "cluster1")
		editPlacement(ns, app, "b")
		Eventually(func() []migrationv1alpha1.Migration { return migrations(ns)() }, timeout, interval).Should(HaveLen(1))
		m := migrations(ns)()[0]
		setPhase(&m, migrationv1alpha1.PhaseFailed)

		Eventually(conditionReason(ns, pol, migrationv1alpha1.ConditionConverged), timeout, interval).Should(Equal("False/MigrationBlocked"))
		Consistently(func() []migrationv1alpha1.Migration { return migrations(ns)() }, 2*time.Second, interval).Should(HaveLen(1))
		Expect(decided(ns, app)()).To(Equal([]string{"cluster1"}))

		Expect(k8s.Delete(ctx, &m)).To(Succeed())
		Eventually(func() []migrationv1alpha1.Migration { return migrations(ns)() }, timeout, interval).Should(
			ConsistOf(SatisfyAll(HaveField("Spec.DestinationCluster", "cluster2"), Not(HaveField("Name", m.Name)))))
	})

	It("gives the Placement back to the scheduler on un-enrolment", func() {
		Expect(k8s.Create(ctx, newPolicy(ns, pol, app))).To(Succeed())
		enrolled(ns, pol, app, "cluster1")
		editPlacement(ns, app, "b")
		Eventually(func() []migrationv1alpha1.Migration { return migrations(ns)() }, timeout, interval).Should(HaveLen(1))
		Expect(decided(ns, app)()).To(Equal([]string{"cluster1"}))

		Expect(k8s.Delete(ctx, getPolicy(ns, pol))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: pol}, &migrationv1alpha1.MigrationPolicy{}))
		}, timeout, interval).Should(BeTrue())

		By("the companion is gone and the scheduler writes the user's decision again")
		Eventually(func() bool {
			_, err := getPlacement(ns, companion)()
			return apierrors.IsNotFound(err)
		}, timeout, interval).Should(BeTrue())
		p, err := getPlacement(ns, app)()
		Expect(err).NotTo(HaveOccurred())
		Expect(p.Annotations).NotTo(HaveKey(clusterv1beta1.PlacementDisableAnnotation))
		Expect(p.Annotations).NotTo(HaveKey(migrationv1alpha1.PolicyAnnotation))
		Eventually(decided(ns, app), timeout, interval).Should(Equal([]string{"cluster2"}))
		p, _ = getPlacement(ns, app)()
		Expect(meta.FindStatusCondition(p.Status.Conditions, placement.PlacementConditionManaged)).To(BeNil())
		Expect(eventReasons(ns, app)()).To(ContainElement("Unenrolled"))
	})

	It("holds un-enrolment while a migration has the app between clusters", func() {
		Expect(k8s.Create(ctx, newPolicy(ns, pol, app))).To(Succeed())
		enrolled(ns, pol, app, "cluster1")
		editPlacement(ns, app, "b")
		Eventually(func() []migrationv1alpha1.Migration { return migrations(ns)() }, timeout, interval).Should(HaveLen(1))
		m := migrations(ns)()[0]
		setPhase(&m, migrationv1alpha1.PhaseQuiescing)

		Expect(k8s.Delete(ctx, getPolicy(ns, pol))).To(Succeed())
		Eventually(conditionReason(ns, pol, migrationv1alpha1.ConditionEnrolled), timeout, interval).Should(Equal("True/" + migrationv1alpha1.ReasonUnenrolBlocked))
		Consistently(func() map[string]string {
			p, _ := getPlacement(ns, app)()
			return p.Annotations
		}, 2*time.Second, interval).Should(HaveKeyWithValue(clusterv1beta1.PlacementDisableAnnotation, "true"))

		setPhase(&m, migrationv1alpha1.PhaseRolledBack)
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: pol}, &migrationv1alpha1.MigrationPolicy{}))
		}, timeout, interval).Should(BeTrue())
	})

	It("refuses a second policy for an enrolled Placement", func() {
		Expect(k8s.Create(ctx, newPolicy(ns, pol, app))).To(Succeed())
		enrolled(ns, pol, app, "cluster1")
		Expect(k8s.Create(ctx, newPolicy(ns, "other", app))).To(Succeed())
		Eventually(conditionReason(ns, "other", migrationv1alpha1.ConditionEnrolled), timeout, interval).
			Should(Equal("False/" + migrationv1alpha1.ReasonPlacementAlreadyEnrolled))
		p, _ := getPlacement(ns, app)()
		Expect(p.Annotations).To(HaveKeyWithValue(migrationv1alpha1.PolicyAnnotation, ns+"/"+pol))
	})

	It("reports a missing Placement and enrols it once it appears", func() {
		Expect(k8s.Create(ctx, newPolicy(ns, pol, "late"))).To(Succeed())
		Eventually(conditionReason(ns, pol, migrationv1alpha1.ConditionEnrolled), timeout, interval).
			Should(Equal("False/" + migrationv1alpha1.ReasonPlacementNotFound))
		Expect(k8s.Create(ctx, placementFor(ns, "late", "c"))).To(Succeed())
		enrolled(ns, pol, "late", "cluster3")
		Expect(decided(ns, "late")()).To(Equal([]string{"cluster3"}))
	})
})

var _ = Describe("Two enrolled namespaces", func() {
	It("keeps policies in different namespaces isolated", func() {
		nsA, nsB := newNamespace("iso-a"), newNamespace("iso-b")
		for _, ns := range []string{nsA, nsB} {
			Expect(k8s.Create(ctx, placementFor(ns, "app", "a"))).To(Succeed())
			Eventually(decided(ns, "app"), timeout, interval).Should(Equal([]string{"cluster1"}))
			Expect(k8s.Create(ctx, newPolicy(ns, "pol", "app"))).To(Succeed())
			enrolled(ns, "pol", "app", "cluster1")
		}
		companionB, err := getPlacement(nsB, placement.CompanionName("app"))()
		Expect(err).NotTo(HaveOccurred())

		editPlacement(nsA, "app", "c")
		Eventually(func() []migrationv1alpha1.Migration { return migrations(nsA)() }, timeout, interval).Should(
			ConsistOf(HaveField("Spec.DestinationCluster", "cluster3")))
		Consistently(func() []migrationv1alpha1.Migration { return migrations(nsB)() }, 2*time.Second, interval).Should(BeEmpty())
		Expect(decided(nsB, placement.CompanionName("app"))()).To(Equal([]string{"cluster1"}))
		Expect(decided(nsB, "app")()).To(Equal([]string{"cluster1"}))
		after, _ := getPlacement(nsB, placement.CompanionName("app"))()
		Expect(after.Generation).To(Equal(companionB.Generation))
		Expect(conditionReason(nsB, "pol", migrationv1alpha1.ConditionConverged)()).To(Equal("True/ActualMatchesDesired"))
	})
})
