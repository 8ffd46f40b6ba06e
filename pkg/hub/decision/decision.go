// Package decision reads and writes the clusters of a Placement's
// PlacementDecisions. For an enrolled Placement the hub is the only writer of
// these objects, which are the "actual" clusters every consumer follows.
package decision

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	clusterv1beta1 "open-cluster-management.io/api/cluster/v1beta1"
)

// MaxPerObject is the number of decisions one PlacementDecision may hold.
const MaxPerObject = 100

// Reason is written in each ClusterDecision we create.
const Reason = "WrittenByStatefulMigration"

// ErrSchedulingEnabled is returned when writing decisions the scheduler still owns.
var ErrSchedulingEnabled = errors.New("placement is not enrolled: its scheduler still writes its decisions")

// IsSchedulingDisabled tells whether the OCM scheduler leaves p alone.
func IsSchedulingDisabled(p *clusterv1beta1.Placement) bool {
	return p.Annotations[clusterv1beta1.PlacementDisableAnnotation] == "true"
}

// Clusters returns the sorted cluster names in the PlacementDecisions of the
// Placement namespace/name. Pass an uncached reader when the answer decides
// something that must not be done twice.
func Clusters(ctx context.Context, r client.Reader, namespace, name string) ([]string, error) {
	pds, err := list(ctx, r, namespace, name)
	if err != nil {
		return nil, err
	}
	out := sets.New[string]()
	for _, pd := range pds {
		for _, d := range pd.Status.Decisions {
			out.Insert(d.ClusterName)
		}
	}
	return sets.List(out), nil
}

// HasDecisions tells whether any PlacementDecision exists for the Placement,
// i.e. whether it was scheduled at least once.
func HasDecisions(ctx context.Context, r client.Reader, namespace, name string) (bool, error) {
	pds, err := list(ctx, r, namespace, name)
	return len(pds) > 0, err
}

func list(ctx context.Context, r client.Reader, namespace, name string) ([]clusterv1beta1.PlacementDecision, error) {
	var l clusterv1beta1.PlacementDecisionList
	if err := r.List(ctx, &l, client.InNamespace(namespace),
		client.MatchingLabels{clusterv1beta1.PlacementLabel: name}); err != nil {
		return nil, fmt.Errorf("listing decisions of placement %s/%s: %w", namespace, name, err)
	}
	slices.SortFunc(l.Items, func(a, b clusterv1beta1.PlacementDecision) int { return compareNames(a.Name, b.Name) })
	return l.Items, nil
}

// SetActualClusters makes the PlacementDecisions of the enrolled Placement p
// hold exactly clusters, the way the scheduler lays them out (one group,
// "<p>-decision-<n>", at most 100 each, owned by p), and updates p's
// numberOfSelectedClusters and decisionGroups. Idempotent; reasons of kept
// clusters are preserved. Returns ErrSchedulingEnabled unless p is enrolled.
func SetActualClusters(ctx context.Context, c client.Client, p *clusterv1beta1.Placement, clusters []string) error {
	if !IsSchedulingDisabled(p) {
		return ErrSchedulingEnabled
	}
	want := sets.List(sets.New(clusters...))
	existing, err := list(ctx, c, p.Namespace, p.Name)
	if err != nil {
		return err
	}
	reasons := map[string]string{}
	for _, pd := range existing {
		for _, d := range pd.Status.Decisions {
			reasons[d.ClusterName] = d.Reason
		}
	}
	var names []string
	for i, chunk := range chunks(want) {
		name := fmt.Sprintf("%s-decision-%d", p.Name, i+1)
		names = append(names, name)
		decisions := make([]clusterv1beta1.ClusterDecision, 0, len(chunk))
		for _, cl := range chunk {
			r, ok := reasons[cl]
			if !ok {
				r = Reason
			}
			decisions = append(decisions, clusterv1beta1.ClusterDecision{ClusterName: cl, Reason: r})
		}
		if err := apply(ctx, c, p, name, decisions); err != nil {
			return err
		}
	}
	// Drop objects beyond the new count (the scheduler does the same).
	for i := range existing {
		if slices.Contains(names, existing[i].Name) {
			continue
		}
		if err := c.Delete(ctx, &existing[i]); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting decision %s: %w", existing[i].Name, err)
		}
	}
	return setStatus(ctx, c, p, names, len(want))
}

// apply creates or updates one PlacementDecision; its status needs a second write.
func apply(ctx context.Context, c client.Client, p *clusterv1beta1.Placement, name string, decisions []clusterv1beta1.ClusterDecision) error {
	pd := &clusterv1beta1.PlacementDecision{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.Namespace}}
	err := c.Get(ctx, client.ObjectKeyFromObject(pd), pd)
	switch {
	case apierrors.IsNotFound(err):
		setMeta(pd, p)
		if err := controllerutil.SetControllerReference(p, pd, c.Scheme()); err != nil {
			return err
		}
		if err := c.Create(ctx, pd); err != nil {
			return fmt.Errorf("creating decision %s: %w", name, err)
		}
	case err != nil:
		return err
	default:
		before := pd.DeepCopy()
		setMeta(pd, p)
		if !maps.Equal(before.Labels, pd.Labels) {
			if err := c.Patch(ctx, pd, client.MergeFrom(before)); err != nil {
				return fmt.Errorf("labelling decision %s: %w", name, err)
			}
		}
	}
	if slices.Equal(pd.Status.Decisions, decisions) && pd.Status.Decisions != nil {
		return nil
	}
	before := pd.DeepCopy()
	pd.Status.Decisions = decisions
	// Optimistic lock: a stale read must not overwrite a newer decision.
	if err := c.Status().Patch(ctx, pd, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("writing decision %s: %w", name, err)
	}
	return nil
}

func setMeta(pd *clusterv1beta1.PlacementDecision, p *clusterv1beta1.Placement) {
	if pd.Labels == nil {
		pd.Labels = map[string]string{}
	}
	pd.Labels[clusterv1beta1.PlacementLabel] = p.Name
	pd.Labels[clusterv1beta1.DecisionGroupIndexLabel] = "0"
	pd.Labels[clusterv1beta1.DecisionGroupNameLabel] = ""
}

// setStatus keeps the parts of p's status the scheduler no longer writes.
func setStatus(ctx context.Context, c client.Client, p *clusterv1beta1.Placement, names []string, n int) error {
	before := p.DeepCopy()
	p.Status.NumberOfSelectedClusters = int32(n) //nolint:gosec // bounded by cluster count
	p.Status.DecisionGroups = []clusterv1beta1.DecisionGroupStatus{{
		DecisionGroupIndex: 0,
		DecisionGroupName:  "",
		Decisions:          names,
		ClustersCount:      int32(n), //nolint:gosec // bounded by cluster count
	}}
	if equalStatus(before.Status, p.Status) {
		return nil
	}
	if err := c.Status().Patch(ctx, p, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("updating status of placement %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// SetCondition sets one condition on p's status (used to mirror the companion's).
func SetCondition(ctx context.Context, c client.Client, p *clusterv1beta1.Placement, conds ...metav1.Condition) error {
	before := p.DeepCopy()
	changed := false
	for _, cond := range conds {
		changed = meta.SetStatusCondition(&p.Status.Conditions, cond) || changed
	}
	if !changed {
		return nil
	}
	return c.Status().Patch(ctx, p, client.MergeFrom(before))
}

// RemoveCondition drops a condition type from p's status.
func RemoveCondition(ctx context.Context, c client.Client, p *clusterv1beta1.Placement, condType string) error {
	if meta.FindStatusCondition(p.Status.Conditions, condType) == nil {
		return nil
	}
	before := p.DeepCopy()
	meta.RemoveStatusCondition(&p.Status.Conditions, condType)
	return c.Status().Patch(ctx, p, client.MergeFrom(before))
}

func chunks(clusters []string) [][]string {
	if len(clusters) == 0 {
		return [][]string{{}} // keep one empty decision, as the scheduler does
	}
	var out [][]string
	for len(clusters) > 0 {
		n := min(MaxPerObject, len(clusters))
		out = append(out, clusters[:n])
		clusters = clusters[n:]
	}
	return out
}

// compareNames orders "<p>-decision-<n>" numerically.
func compareNames(a, b string) int {
	na, ea := suffix(a)
	nb, eb := suffix(b)
	if ea == nil && eb == nil && na != nb {
		return na - nb
	}
	if a < b {
		return -1
	}
	if a > b {
		return 1
	}
	return 0
}

func suffix(s string) (int, error) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	return strconv.Atoi(s[i:])
}

func equalStatus(a, b clusterv1beta1.PlacementStatus) bool {
	if a.NumberOfSelectedClusters != b.NumberOfSelectedClusters || len(a.DecisionGroups) != len(b.DecisionGroups) {
		return false
	}
	for i := range a.DecisionGroups {
		x, y := a.DecisionGroups[i], b.DecisionGroups[i]
		if x.DecisionGroupIndex != y.DecisionGroupIndex || x.DecisionGroupName != y.DecisionGroupName ||
			x.ClustersCount != y.ClustersCount || !slices.Equal(x.Decisions, y.Decisions) {
			return false
		}
	}
	return true
}
