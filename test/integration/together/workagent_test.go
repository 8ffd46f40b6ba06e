package together

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/jsonpath"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	workv1 "open-cluster-management.io/api/work/v1"
)

// workFinalizer is the finalizer OCM's work agent holds on a ManifestWork
// until it removed what it applied.
const workFinalizer = "cluster.open-cluster-management.io/manifest-work-cleanup"

type appliedRef struct {
	gvr       schema.GroupVersionResource
	namespace string
	name      string
}

// workAgent plays OCM's work agent for one cluster: it applies the
// ManifestWorks of the cluster namespace on the hub onto the spoke (server-
// side apply; ReadOnly manifests are only read), deletes what a work no
// longer lists, deletes everything not orphaned when the work is deleted
// and waits until it is gone before releasing the work, and reports
// Applied/Available and the JSONPaths status feedback the hub asks for.
type workAgent struct {
	cluster string
	hub     client.Client
	spoke   dynamic.Interface
	mapper  meta.RESTMapper
	applied map[string][]appliedRef // by work UID
}

func (a *workAgent) run(ctx context.Context) {
	defer GinkgoRecover()
	for ctx.Err() == nil {
		var l workv1.ManifestWorkList
		if err := a.hub.List(ctx, &l, client.InNamespace(a.cluster)); err == nil {
			for i := range l.Items {
				if err := a.sync(ctx, &l.Items[i]); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
					GinkgoWriter.Printf("work agent %s: %s/%s: %v\n", a.cluster, l.Items[i].Namespace, l.Items[i].Name, err)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *workAgent) sync(ctx context.Context, w *workv1.ManifestWork) error {
	key := string(w.UID)
	if !w.DeletionTimestamp.IsZero() {
		if !controllerutil.ContainsFinalizer(w, workFinalizer) {
			return nil
		}
		left := 0
		for _, ref := range a.applied[key] {
			if orphaned(w, ref) {
				continue
			}
			gone, err := a.remove(ctx, ref)
			if err != nil {
				return err
			}
			if !gone {
				left++
			}
		}
		if left > 0 {
			return nil
		}
		delete(a.applied, key)
		patch := client.MergeFrom(w.DeepCopy())
		controllerutil.RemoveFinalizer(w, workFinalizer)
		return a.hub.Patch(ctx, w, patch)
	}
	if !controllerutil.ContainsFinalizer(w, workFinalizer) {
		patch := client.MergeFrom(w.DeepCopy())
		controllerutil.AddFinalizer(w, workFinalizer)
		if err := a.hub.Patch(ctx, w, patch); err != nil {
			return err
		}
	}

	var refs []appliedRef
	var conds []workv1.ManifestCondition
	allApplied, allAvailable := true, true
	for i, mf := range w.Spec.Workload.Manifests {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(mf.Raw); err != nil {
			return err
		}
		gvk := u.GroupVersionKind()
		m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("mapping %s: %w", gvk, err)
		}
		ref := appliedRef{gvr: m.Resource, namespace: u.GetNamespace(), name: u.GetName()}
		cfg := manifestConfig(w, ref)
		ri := a.spoke.Resource(ref.gvr).Namespace(ref.namespace)
		mc := workv1.ManifestCondition{ResourceMeta: workv1.ManifestResourceMeta{
			Ordinal: int32(i), Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, //nolint:gosec // small
			Resource: ref.gvr.Resource, Name: ref.name, Namespace: ref.namespace,
		}}
		var live *unstructured.Unstructured
		var applyErr error
		if cfg != nil && cfg.UpdateStrategy != nil && cfg.UpdateStrategy.Type == workv1.UpdateStrategyTypeReadOnly {
			live, applyErr = ri.Get(ctx, ref.name, metav1.GetOptions{})
		} else {
			refs = append(refs, ref)
			live, applyErr = ri.Apply(ctx, ref.name, u, metav1.ApplyOptions{FieldManager: "work-agent", Force: true})
		}
		applied := metav1.Condition{Type: workv1.ManifestApplied, Status: metav1.ConditionTrue, Reason: "AppliedManifestComplete", Message: "Apply manifest complete"}
		available := metav1.Condition{Type: workv1.ManifestAvailable, Status: metav1.ConditionTrue, Reason: "ResourceAvailable", Message: "Resource is available"}
		if applyErr != nil {
			allApplied, allAvailable = false, false
			applied.Status, applied.Reason, applied.Message = metav1.ConditionFalse, "AppliedManifestFailed", applyErr.Error()
			available.Status, available.Reason, available.Message = metav1.ConditionFalse, "ResourceNotAvailable", applyErr.Error()
		}
		for _, old := range w.Status.ResourceStatus.Manifests {
			if old.ResourceMeta == mc.ResourceMeta {
				mc.Conditions = old.Conditions
			}
		}
		meta.SetStatusCondition(&mc.Conditions, applied)
		meta.SetStatusCondition(&mc.Conditions, available)
		if live != nil && cfg != nil {
			mc.StatusFeedbacks.Values = feedback(live, cfg.FeedbackRules)
		}
		conds = append(conds, mc)
	}
	// Resources a work no longer lists are deleted, as the work agent does.
	for _, old := range a.applied[key] {
		keep := false
		for _, r := range refs {
			keep = keep || r == old
		}
		if !keep {
			if _, err := a.remove(ctx, old); err != nil {
				return err
			}
		}
	}
	a.applied[key] = refs

	next := w.Status.DeepCopy()
	next.ResourceStatus.Manifests = conds
	set := func(typ string, ok bool, reason string) {
		st := metav1.ConditionTrue
		if !ok {
			st = metav1.ConditionFalse
		}
		meta.SetStatusCondition(&next.Conditions, metav1.Condition{Type: typ, Status: st, Reason: reason, ObservedGeneration: w.Generation})
	}
	set(workv1.WorkApplied, allApplied, "AppliedManifestWorkComplete")
	set(workv1.WorkAvailable, allAvailable, "ResourcesAvailable")
	if equality.Semantic.DeepEqual(normalise(next), normalise(&w.Status)) {
		return nil
	}
	w.Status = *next
	return a.hub.Status().Update(ctx, w)
}

// normalise drops the manifests' transition times for comparison.
func normalise(s *workv1.ManifestWorkStatus) *workv1.ManifestWorkStatus {
	out := s.DeepCopy()
	for i := range out.ResourceStatus.Manifests {
		for j := range out.ResourceStatus.Manifests[i].Conditions {
			out.ResourceStatus.Manifests[i].Conditions[j].LastTransitionTime = metav1.Time{}
		}
	}
	return out
}

func (a *workAgent) remove(ctx context.Context, ref appliedRef) (bool, error) {
	ri := a.spoke.Resource(ref.gvr).Namespace(ref.namespace)
	err := ri.Delete(ctx, ref.name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	_, err = ri.Get(ctx, ref.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	return false, client.IgnoreNotFound(err)
}

func manifestConfig(w *workv1.ManifestWork, ref appliedRef) *workv1.ManifestConfigOption {
	for i := range w.Spec.ManifestConfigs {
		c := &w.Spec.ManifestConfigs[i]
		r := c.ResourceIdentifier
		if r.Group == ref.gvr.Group && r.Resource == ref.gvr.Resource && r.Name == ref.name && r.Namespace == ref.namespace {
			return c
		}
	}
	return nil
}

func orphaned(w *workv1.ManifestWork, ref appliedRef) bool {
	d := w.Spec.DeleteOption
	if d == nil {
		return false
	}
	switch d.PropagationPolicy {
	case workv1.DeletePropagationPolicyTypeOrphan:
		return true
	case workv1.DeletePropagationPolicyTypeSelectivelyOrphan:
		if d.SelectivelyOrphan == nil {
			return false
		}
		for _, r := range d.SelectivelyOrphan.OrphaningRules {
			if r.Group == ref.gvr.Group && r.Resource == ref.gvr.Resource && r.Name == ref.name && r.Namespace == ref.namespace {
				return true
			}
		}
	}
	return false
}

// feedback evaluates JSONPaths rules (scalar values only, as OCM does).
func feedback(obj *unstructured.Unstructured, rules []workv1.FeedbackRule) []workv1.FeedbackValue {
	var out []workv1.FeedbackValue
	for _, rule := range rules {
		if rule.Type != workv1.JSONPathsType {
			continue
		}
		for _, p := range rule.JsonPaths {
			jp := jsonpath.New(p.Name).AllowMissingKeys(true)
			if jp.Parse("{"+p.Path+"}") != nil {
				continue
			}
			res, err := jp.FindResults(obj.Object)
			if err != nil || len(res) == 0 || len(res[0]) == 0 {
				continue
			}
			v := res[0][0].Interface()
			fv := workv1.FieldValue{}
			switch v := v.(type) {
			case string:
				fv.Type, fv.String = workv1.String, ptr.To(v)
			case int64:
				fv.Type, fv.Integer = workv1.Integer, ptr.To(v)
			case bool:
				fv.Type, fv.Boolean = workv1.Boolean, ptr.To(v)
			default:
				raw, _ := json.Marshal(v)
				fv.Type, fv.JsonRaw = workv1.JsonRaw, ptr.To(string(raw))
			}
			out = append(out, workv1.FeedbackValue{Name: p.Name, Value: fv})
		}
	}
	return out
}
