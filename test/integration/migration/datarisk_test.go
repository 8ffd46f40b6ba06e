package migration_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
	workv1 "open-cluster-management.io/api/work/v1"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	"github.com/stateful-migration/stateful-migration/test/integration/framework"
)

// Enrolment checks what OCM would do to the data: removing the app from the
// old cluster must not delete the PVCs (or their namespace), and the app's
// PVC manifest must adopt the PVC pre-created on the new cluster. Each
// refusal names the exact fix, and no Placement is claimed until it is made.
var _ = Describe("Enrolment checks the app's delivery for data loss", func() {
	It("refuses a delivery that would delete or strand the PVC, with the fix, and enrols once fixed", func() {
		ns := newNamespace("risky")
		p := &clusterv1beta1.Placement{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"}}
		setEnvs(p, "a")
		Expect(k8s.Create(ctx, p)).To(Succeed())
		Eventually(decided(ns, "db"), timeout, interval).Should(Equal([]string{"cluster1"}))

		mwrs := framework.AppDelivery(ns, "db-app", []string{"db"}, "app-risky")
		t := &mwrs.Spec.ManifestWorkTemplate
		t.DeleteOption = nil // OCM's default: delete everything it delivered
		t.Workload.Manifests = append(t.Workload.Manifests,
			framework.Manifest(`{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"data","namespace":"app-risky"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}`),
			framework.Manifest(`{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db","namespace":"app-risky"},"spec":{"selector":{"matchLabels":{"app":"db"}},"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Delete"},"template":{"metadata":{"labels":{"app":"db"}},"spec":{"containers":[{"name":"db","image":"db"}]}},"volumeClaimTemplates":[{"metadata":{"name":"wal"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}]}}`))
		Expect(k8s.Create(ctx, mwrs)).To(Succeed())
		pol := &migrationv1alpha1.MigrationPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
			Spec: migrationv1alpha1.MigrationPolicySpec{
				PlacementRef: migrationv1alpha1.PlacementRef{Name: "db"},
				Volumes:      []migrationv1alpha1.VolumeSelection{{Namespace: "app-risky", Names: []string{"data", "wal-db-0"}}},
			},
		}
		Expect(k8s.Create(ctx, pol)).To(Succeed())
		enrolment := enrolled(ns, "db")
		Eventually(enrolment, timeout, interval).Should(And(
			HavePrefix("False/"+migrationv1alpha1.ReasonDataAtRisk),
			ContainSubstring(`Namespace app-risky is deleted, with its PVCs, when OCM removes the app from a cluster: add {group: "", resource: namespaces, name: app-risky}`),
			ContainSubstring(`PVC app-risky/data is deleted when OCM removes the app from a cluster: add {group: "", resource: persistentvolumeclaims, namespace: app-risky, name: data}`),
			ContainSubstring(`PVC app-risky/data cannot adopt the PVC the migration pre-creates on the new cluster: add {resourceIdentifier: {group: "", resource: persistentvolumeclaims, namespace: app-risky, name: data}, updateStrategy: {type: ServerSideApply}}`),
			ContainSubstring("StatefulSet app-risky/db deletes its PVCs when OCM removes it from a cluster: set spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Retain")))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
		Expect(p.Annotations).NotTo(HaveKey(clusterv1beta1.PlacementDisableAnnotation), "the Placement must not be claimed")

		By("applying every fix the condition names enrols the Placement")
		Eventually(func() error {
			cur := mwrs.DeepCopy()
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(mwrs), cur); err != nil {
				return err
			}
			t := &cur.Spec.ManifestWorkTemplate
			t.DeleteOption = &workv1.DeleteOption{PropagationPolicy: workv1.DeletePropagationPolicyTypeSelectivelyOrphan,
				SelectivelyOrphan: &workv1.SelectivelyOrphan{OrphaningRules: []workv1.OrphaningRule{
					{Resource: "namespaces", Name: "app-risky"}, {Resource: "persistentvolumeclaims", Namespace: "app-risky", Name: "data"}}}}
			t.ManifestConfigs = []workv1.ManifestConfigOption{{
				ResourceIdentifier: workv1.ResourceIdentifier{Resource: "persistentvolumeclaims", Namespace: "app-risky", Name: "data"},
				UpdateStrategy:     &workv1.UpdateStrategy{Type: workv1.UpdateStrategyTypeServerSideApply}}}
			t.Workload.Manifests = t.Workload.Manifests[:2] // the StatefulSet goes: its PVCs would be deleted with it
			return k8s.Update(ctx, cur)
		}, timeout, interval).Should(Succeed())
		Eventually(enrolment, timeout, interval).Should(HavePrefix("True/"))
	})
})
