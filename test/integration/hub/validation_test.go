package hub_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
)

var _ = Describe("API validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace("valid") })

	It("accepts a minimal policy and fills the defaults", func() {
		p := newPolicy(ns, "ok", "no-such-placement")
		Expect(k8s.Create(ctx, p)).To(Succeed())
		Expect(p.Spec.Endpoint.Type).To(Equal(migrationv1alpha1.EndpointNodePort))
		Expect(p.Spec.SourceDataPolicy).To(Equal(migrationv1alpha1.SourceDataRetain))
		Expect(p.Spec.MaxAttempts).To(BeEquivalentTo(3))
		Expect(p.Spec.Cutover.MaxLagBytes).To(HaveValue(BeEquivalentTo(64 << 20)))
		Expect(p.Spec.Cutover.MaxEstimatedFinalSync.Duration).To(Equal(10 * time.Second))
		Expect(p.Spec.Timeouts.InitialSync.Duration).To(Equal(24 * time.Hour))

		By("placementRef is immutable")
		before := p.DeepCopy()
		p.Spec.PlacementRef.Name = "another"
		// A patch, not an update: the controller adds its finalizer meanwhile.
		err := k8s.Patch(ctx, p, client.MergeFrom(before))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("placementRef is immutable"))
	})

	DescribeTable("rejects a nonsense policy",
		func(mutate func(*migrationv1alpha1.MigrationPolicy), message string) {
			p := newPolicy(ns, "bad", "app")
			mutate(p)
			err := k8s.Create(ctx, p)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("empty placementRef", func(p *migrationv1alpha1.MigrationPolicy) { p.Spec.PlacementRef.Name = "" },
			"spec.placementRef.name"),
		Entry("no volumes", func(p *migrationv1alpha1.MigrationPolicy) { p.Spec.Volumes = nil },
			"spec.volumes"),
		Entry("volumes without names", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Volumes = []migrationv1alpha1.VolumeSelection{{Namespace: "app"}}
		}, "spec.volumes[0].names"),
		Entry("a PVC name no PVC can have", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Volumes[0].Names = []string{"../etc"}
		}, "spec.volumes[0].names[0]"),
		Entry("a service annotation under our prefix", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Endpoint.ServiceAnnotations = map[string]string{"migration.open-cluster-management.io/policy": "x"}
		}, "reserved"),
		Entry("volume without namespace", func(p *migrationv1alpha1.MigrationPolicy) { p.Spec.Volumes[0].Namespace = "" },
			"spec.volumes[0].namespace"),
		Entry("negative maxLagBytes", func(p *migrationv1alpha1.MigrationPolicy) { p.Spec.Cutover.MaxLagBytes = ptr.To[int64](-1) },
			"spec.cutover.maxLagBytes"),
		Entry("negative maxEstimatedFinalSync", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Cutover.MaxEstimatedFinalSync = &metav1.Duration{Duration: -time.Second}
		}, "must not be negative"),
		Entry("negative timeout", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Timeouts.Launch = &metav1.Duration{Duration: -time.Minute}
		}, "must not be negative"),
		Entry("bad endpoint type", func(p *migrationv1alpha1.MigrationPolicy) { p.Spec.Endpoint.Type = "Ingress" },
			"spec.endpoint.type"),
		Entry("bad source data policy", func(p *migrationv1alpha1.MigrationPolicy) { p.Spec.SourceDataPolicy = "Shred" },
			"spec.sourceDataPolicy"),
		Entry("duplicate storage-class source", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.StorageClassMapping = []migrationv1alpha1.StorageClassMapping{{Source: "a", Destination: "b"}, {Source: "a", Destination: "c"}}
		}, "spec.storageClassMapping"),
		Entry("zero attempts", func(p *migrationv1alpha1.MigrationPolicy) { p.Spec.MaxAttempts = -1 },
			"spec.maxAttempts"),
		Entry("a standby naming neither a cluster nor a Placement", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Standby = &migrationv1alpha1.Standby{}
		}, "set one of clusterName and placementRef"),
		Entry("a standby naming both", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Standby = &migrationv1alpha1.Standby{ClusterName: "c2", PlacementRef: &migrationv1alpha1.PlacementRef{Name: "dr"}}
		}, "set one of clusterName and placementRef"),
		Entry("a standby Placement that is the app's", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Standby = &migrationv1alpha1.Standby{PlacementRef: &migrationv1alpha1.PlacementRef{Name: p.Spec.PlacementRef.Name}}
		}, "standby.placementRef must not be the app's Placement"),
		Entry("standby points neither Latest nor Exact", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Standby = &migrationv1alpha1.Standby{ClusterName: "c2", Points: "Sometimes"}
		}, "spec.standby.points"),
		Entry("perFileAfter without exact points", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Standby = &migrationv1alpha1.Standby{ClusterName: "c2", Points: migrationv1alpha1.StandbyPointsLatest,
				PerFileAfter: &metav1.Duration{Duration: time.Minute}}
		}, "perFileAfter needs points: Exact"),
		Entry("perFileAfter negative", func(p *migrationv1alpha1.MigrationPolicy) {
			p.Spec.Standby = &migrationv1alpha1.Standby{ClusterName: "c2", PerFileAfter: &metav1.Duration{Duration: -time.Second}}
		}, "must not be negative"),
	)

	newMigration := func(src, dst string) *migrationv1alpha1.Migration {
		return &migrationv1alpha1.Migration{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "m-", Namespace: ns},
			Spec:       migrationv1alpha1.MigrationSpec{PolicyName: "p", PlacementName: "app", SourceCluster: src, DestinationCluster: dst},
		}
	}

	It("rejects a Migration whose source is its destination", func() {
		err := k8s.Create(ctx, newMigration("cluster1", "cluster1"))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("must differ"))
	})

	It("rejects a Migration with an empty cluster", func() {
		err := k8s.Create(ctx, newMigration("", "cluster2"))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("spec.sourceCluster"))
	})

	It("keeps a Migration's spec immutable and its phase in the enum", func() {
		m := newMigration("cluster1", "cluster2")
		Expect(k8s.Create(ctx, m)).To(Succeed())
		m.Spec.DestinationCluster = "cluster3"
		err := k8s.Update(ctx, m)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("spec is immutable"))

		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(m), m)).To(Succeed())
		m.Status.Phase = "Teleporting"
		err = k8s.Status().Update(ctx, m)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("status.phase"))
	})
})
