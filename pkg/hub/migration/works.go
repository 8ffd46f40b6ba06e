package migration

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	migrationv1alpha1 "github.com/stateful-migration/stateful-migration/pkg/apis/migration/v1alpha1"
	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/hub/credentials"
	"github.com/stateful-migration/stateful-migration/pkg/hub/decision"
	"github.com/stateful-migration/stateful-migration/pkg/hub/reports"
	"github.com/stateful-migration/stateful-migration/pkg/hub/work"
)

// destinationWork builds the destination work from the PVC sizes the source
// work's probes report; final tells the agent the final sync has started.
func (r *Reconciler) destinationWork(s *state, src *workv1.ManifestWork, server credentials.Pair, final bool) (*workv1.ManifestWork, []string, error) {
	refs := volumeRefs(s.policy)
	vols, pending, err := work.ProbedVolumes(src, refs, classMap(s.policy))
	if err != nil || len(pending) > 0 {
		return nil, pending, err
	}
	spec := work.DestinationSpec{
		Common:             r.common(s, s.m.Spec.DestinationCluster, agentNamespace(s.dstAddon), server, s.policy.Spec.Hooks.PostLaunch != nil),
		Volumes:            vols,
		EndpointType:       replv1.EndpointType(s.policy.Spec.Endpoint.Type),
		ServiceAnnotations: s.policy.Spec.Endpoint.ServiceAnnotations,
		FinalSync:          final,
		HubVerified:        s.hubVerified(),
		PostLaunchHook:     s.policy.Spec.Hooks.PostLaunch,
		Standby:            s.m.Spec.Standby,
		Promote:            s.m.Status.Failover != nil,
	}
	if sb := s.policy.Spec.Standby; s.m.Spec.Standby && sb != nil {
		exact, after := sb.ExactPoints()
		spec.ExactPoints = exact
		if after > 0 {
			spec.PerFileAfter = &metav1.Duration{Duration: after}
		}
	}
	w, err := work.Destination(spec)
	return w, nil, err
}

// rewriteDestination brings the destination work in step with the
// Migration: final sync asked (final), hubVerified, promotion.
func (r *Reconciler) rewriteDestination(ctx context.Context, s *state, final bool) error {
	if s.srcWork == nil || s.dstWork == nil {
		return nil
	}
	creds, err := r.creds.Ensure(ctx, r.Client, r.APIReader, s.m)
	if err != nil {
		return err
	}
	dst, pending, err := r.destinationWork(s, s.srcWork, creds.Server, final)
	if err != nil || len(pending) > 0 {
		return err
	}
	_, err = r.ensureWork(ctx, dst, s.dstWork)
	return err
}

// volumeRefs lists the PVCs that travel (the CRD requires at least one).
func volumeRefs(p *migrationv1alpha1.MigrationPolicy) []work.VolumeRef {
	var out []work.VolumeRef
	for _, v := range p.Spec.Volumes {
		for _, n := range v.Names {
			out = append(out, work.VolumeRef{Namespace: v.Namespace, PVCName: n})
		}
	}
	return out
}

func classMap(p *migrationv1alpha1.MigrationPolicy) map[string]string {
	out := map[string]string{}
	for _, m := range p.Spec.StorageClassMapping {
		out[m.Source] = m.Destination
	}
	return out
}

// destinationEndpoints returns the receivers the destination reports per volume.
func destinationEndpoints(dst *reports.Report, refs []work.VolumeRef) (map[string]string, []string) {
	out := map[string]string{}
	var missing []string
	for _, ref := range refs {
		var ep string
		if dst != nil {
			ep = dst.Endpoints[ref.Key()]
		}
		if ep == "" {
			missing = append(missing, ref.Key())
			continue
		}
		out[ref.Key()] = ep
	}
	return out, missing
}

func (r *Reconciler) common(s *state, cluster, agentNS string, pair credentials.Pair, runsHook bool) work.Common {
	return work.Common{Migration: s.m, ID: s.id, Cluster: cluster, AgentNS: agentNS, Credentials: pair,
		MoverResources: s.policy.Spec.MoverResources, RunsHook: runsHook}
}

// sourceAsk is what the source work asks beyond the move's settings.
type sourceAsk int

const (
	// srcProbe: the PVCs' sizes and classes, no replication yet.
	srcProbe sourceAsk = iota
	// srcReplicate: senders to the recorded receivers.
	srcReplicate
	// srcFinalSync: the app is stopped, the senders finish.
	srcFinalSync
	// srcRelease: srcFinalSync, and the source data may go (sourceDataPolicy Delete).
	srcRelease
)

// ensureSourceWork writes the source work; the endpoints are s.m.Status.Source's.
func (r *Reconciler) ensureSourceWork(ctx context.Context, s *state, pair credentials.Pair, ask sourceAsk) (*workv1.ManifestWork, error) {
	refs := volumeRefs(s.policy)
	var endpoints map[string]string
	if ask != srcProbe && s.m.Status.Source != nil {
		endpoints = s.m.Status.Source.Endpoints
	}
	w, err := work.Source(work.SourceSpec{
		Common:    r.common(s, s.m.Spec.SourceCluster, agentNamespace(s.srcAddon), pair, s.policy.Spec.Hooks.PreQuiesce != nil),
		Volumes:   refs,
		Endpoints: endpoints, FinalSync: ask >= srcFinalSync, ReleaseSource: ask == srcRelease,
		QuiesceStart: s.m.Status.Timings.QuiesceStart,
		FullVerify:   s.policy.Spec.Verification == migrationv1alpha1.VerifyFull,
		HubVerified:  s.hubVerified(),
		PreQuiesce:   s.preQuiesceAsked(),
	})
	if err != nil {
		return nil, err
	}
	return r.ensureWork(ctx, w, s.srcWork)
}

// ensureReplicating keeps the source work with its ReplicationSources
// pointing at the receivers, recorded in the status the first time the
// destination reports them all. Once asked, srcRelease is never taken back.
func (r *Reconciler) ensureReplicating(ctx context.Context, s *state, ask sourceAsk) error {
	if s.m.Status.Source == nil {
		// A work written before status.source existed (an upgraded hub) keeps its endpoints.
		endpoints := work.SourceEndpoints(s.srcWork)
		if endpoints == nil {
			var missing []string
			if endpoints, missing = destinationEndpoints(s.dst, volumeRefs(s.policy)); len(missing) > 0 {
				return fmt.Errorf("destination endpoints of %v unknown", missing)
			}
		}
		s.m.Status.Source = &migrationv1alpha1.SourceRequest{Endpoints: endpoints, Released: work.SourceReleases(s.srcWork)}
	}
	if ask == srcRelease {
		s.m.Status.Source.Released = true
	} else if s.m.Status.Source.Released {
		ask = srcRelease
	}
	creds, err := r.creds.Ensure(ctx, r.Client, r.APIReader, s.m)
	if err != nil {
		return err
	}
	_, err = r.ensureSourceWork(ctx, s, creds.Client, ask)
	return err
}

// ensureWork creates want, or updates existing when the spec the hub last
// wrote differs. A work being deleted (previous attempt) is waited for.
func (r *Reconciler) ensureWork(ctx context.Context, want, existing *workv1.ManifestWork) (*workv1.ManifestWork, error) {
	if err := work.SetSpecHash(want); err != nil {
		return nil, err
	}
	if existing == nil {
		err := r.Create(ctx, want)
		if err == nil {
			klog.FromContext(ctx).V(1).Info("Created ManifestWork", "work", want.Namespace+"/"+want.Name)
			return want, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating ManifestWork %s/%s: %w", want.Namespace, want.Name, err)
		}
		// Created by the previous pass, not in the cache yet.
		existing = &workv1.ManifestWork{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(want), existing); err != nil {
			return nil, err
		}
	}
	if !existing.DeletionTimestamp.IsZero() {
		return nil, fmt.Errorf("ManifestWork %s/%s is still being deleted", existing.Namespace, existing.Name)
	}
	if existing.Annotations[work.SpecHashAnnotation] == want.Annotations[work.SpecHashAnnotation] {
		return existing, nil
	}
	next := existing.DeepCopy()
	next.Spec = want.Spec
	next.Labels, next.Annotations = want.Labels, want.Annotations
	if err := r.Update(ctx, next); err != nil {
		return nil, fmt.Errorf("updating ManifestWork %s/%s: %w", want.Namespace, want.Name, err)
	}
	return next, nil
}

// releaseApplied: the work agent applied the generation that sets releaseSource.
func releaseApplied(s *state) bool {
	return s.srcWork != nil && work.Applied(s.srcWork) && work.SourceReleases(s.srcWork)
}

// setActual adds add and removes remove from the Placement's actual
// clusters, reading the current ones from the API server, held against
// other writers of that Placement (decision.Hold).
func (r *Reconciler) setActual(ctx context.Context, s *state, add, remove string) error {
	if s.placement == nil {
		return nil
	}
	defer decision.Hold(s.placement.Namespace, s.placement.Name)()
	cur, err := decision.Clusters(ctx, r.APIReader, s.placement.Namespace, s.placement.Name)
	if err != nil {
		return err
	}
	next := sets.New(cur...)
	if add != "" {
		next.Insert(add)
	}
	if remove != "" {
		next.Delete(remove)
	}
	if slices.Equal(cur, sets.List(next)) {
		return nil
	}
	if err := decision.SetActualClusters(ctx, r.Client, s.placement, sets.List(next)); err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Actual clusters updated", "placement", s.placement.Name, "from", cur, "to", sets.List(next))
	r.placementEvent(s, corev1.EventTypeNormal, "ActualUpdated", "Migration %s (%s): clusters %v -> %v",
		s.m.Name, s.m.CurrentPhase(), cur, sets.List(next))
	return nil
}
