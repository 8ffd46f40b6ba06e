// Package report turns replication objects' status into the agent's
// conditions on its ManagedClusterAddOn (docs/protocol.md, "Uplink").
//
// One condition per migration and role: several replication objects of one
// migration (one per app namespace) are aggregated into it, and it is
// removed when the last of them is gone.
package report

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	replv1 "github.com/stateful-migration/stateful-migration/pkg/apis/replication/v1alpha1"
	"github.com/stateful-migration/stateful-migration/pkg/apis/uplink"
)

// ConditionWriter is the agent's uplink (pkg/addon/agent.StatusWriter).
type ConditionWriter interface {
	Update(ctx context.Context, set []metav1.Condition, remove ...string) error
}

// Reporter writes conditions, skipping writes that would change nothing.
type Reporter struct {
	Client client.Reader
	Writer ConditionWriter

	mu   sync.Mutex
	last map[string]written
}

// refresh re-asserts an unchanged condition this often, so that one removed
// by someone else on the hub comes back.
const refresh = 5 * time.Minute

type written struct {
	c  metav1.Condition
	at time.Time
}

// SyncSource recomputes the source condition of migrationID from every
// ReplicationSource of that migration: self as given (fresher than the
// cache), or without self when gone is true (its cleanup is done).
func (r *Reporter) SyncSource(ctx context.Context, self *replv1.ReplicationSource, gone bool) error {
	var list replv1.ReplicationSourceList
	if err := r.Client.List(ctx, &list); err != nil {
		return err
	}
	id := self.Spec.MigrationID
	items := withSelf(*self, gone, list.Items, func(o replv1.ReplicationSource) bool {
		return o.Spec.MigrationID == id && o.UID != self.UID
	})
	return r.publish(ctx, uplink.ConditionType(id, uplink.RoleSource), len(items) > 0,
		func() metav1.Condition { return SourceCondition(id, items) })
}

// SyncDestination is SyncSource for ReplicationDestinations.
func (r *Reporter) SyncDestination(ctx context.Context, self *replv1.ReplicationDestination, gone bool) error {
	var list replv1.ReplicationDestinationList
	if err := r.Client.List(ctx, &list); err != nil {
		return err
	}
	id := self.Spec.MigrationID
	items := withSelf(*self, gone, list.Items, func(o replv1.ReplicationDestination) bool {
		return o.Spec.MigrationID == id && o.UID != self.UID
	})
	return r.publish(ctx, uplink.ConditionType(id, uplink.RoleDestination), len(items) > 0,
		func() metav1.Condition { return DestinationCondition(id, items) })
}

// withSelf is self (unless gone) and the listed objects of its migration
// other than self.
func withSelf[T any](self T, gone bool, listed []T, sibling func(T) bool) []T {
	var out []T
	if !gone {
		out = append(out, self)
	}
	for _, o := range listed {
		if sibling(o) {
			out = append(out, o)
		}
	}
	return out
}

// publish sets the condition typ, or removes it when no object reports.
func (r *Reporter) publish(ctx context.Context, typ string, reporting bool, cond func() metav1.Condition) error {
	if !reporting {
		return r.remove(ctx, typ)
	}
	return r.set(ctx, cond())
}

// SourceCondition aggregates the ReplicationSources of one migration: the
// least advanced phase, summed bytes, the worst lag, the combined digest
// once all are Verified, the first error.
func SourceCondition(migrationID string, items []replv1.ReplicationSource) metav1.Condition {
	sort.Slice(items, func(i, j int) bool { return items[i].Namespace < items[j].Namespace })
	phase := replv1.SourceVerified
	m := uplink.Message{}
	protected, movedOut := true, true
	var pods int32
	digests := map[string]string{}
	var hooks []namespacedHook
	for _, o := range items {
		s := o.Status
		if o.Spec.PreQuiesceHook != nil {
			hooks = append(hooks, namespacedHook{o.Namespace, s.PreQuiesceHook})
		}
		if uplink.SourceRank(s.Phase) < uplink.SourceRank(phase) {
			phase = s.Phase
		}
		if phase == "" {
			phase = replv1.SourcePending
		}
		m.BytesTotal += s.BytesTotal
		m.BytesCopied += s.BytesCopied
		m.LagBytes += s.LagBytes
		m.LagSeconds = max(m.LagSeconds, s.LagSeconds)
		m.Throughput += s.Throughput
		m.EstimatedFinalSyncMillis = max(m.EstimatedFinalSyncMillis, s.EstimatedFinalSyncMillis)
		m.FinalSyncCold = m.FinalSyncCold || s.FinalSyncCold
		m.FinalPassFull = m.FinalPassFull || s.FinalPassFull
		m.UnseenChange = cmp.Or(m.UnseenChange, s.UnseenChange)
		protected = protected && s.Protected
		movedOut = movedOut && s.MovedOut
		pods += s.PodsUsingVolumes
		if m.Error == "" {
			m.Error = s.LastError
		}
		for _, v := range s.Volumes {
			digests[o.Namespace+"/"+v.PVCName] = v.Digest
		}
	}
	m.Protected, m.PodsUsingVolumes, m.MovedOut = &protected, &pods, movedOut && len(items) > 0
	m.Hook = combineHooks(hooks)
	if phase == replv1.SourceVerified {
		m.Digest = uplink.CombineDigests(digests)
	}
	return condition(uplink.ConditionType(migrationID, uplink.RoleSource), string(phase), phase != replv1.SourceFailed, m)
}

// DestinationCondition aggregates the ReplicationDestinations of one migration.
func DestinationCondition(migrationID string, items []replv1.ReplicationDestination) metav1.Condition {
	sort.Slice(items, func(i, j int) bool { return items[i].Namespace < items[j].Namespace })
	phase := replv1.DestinationVerified
	m := uplink.Message{Endpoints: map[string]string{}}
	digests := map[string]string{}
	appReady, verified := len(items) > 0, len(items) > 0
	var hooks []namespacedHook
	var point *uplink.Point
	pointDigests, allPoints, allExact := map[string]string{}, len(items) > 0, true
	for _, o := range items {
		s := o.Status
		if o.Spec.PostLaunchHook != nil {
			hooks = append(hooks, namespacedHook{o.Namespace, s.PostLaunchHook})
		}
		appReady = appReady && s.AppReady
		verified = verified && o.Spec.HubVerified
		if o.Spec.HubVerified {
			for _, v := range s.Volumes {
				if v.AppPod == "" {
					m.AppWaiting = append(m.AppWaiting, o.Namespace+"/"+v.PVCName)
				}
			}
		}
		if uplink.DestinationRank(s.Phase) < uplink.DestinationRank(phase) {
			phase = s.Phase
		}
		if phase == "" {
			phase = replv1.DestinationPreparing
		}
		m.BytesCopied += s.BytesReceived
		if m.Error == "" {
			m.Error = s.LastError
		}
		for _, v := range s.Volumes {
			if v.Endpoint != "" {
				m.Endpoints[o.Namespace+"/"+v.PVCName] = v.Endpoint
			}
			digests[o.Namespace+"/"+v.PVCName] = v.Digest
			if v.Point == nil {
				allPoints = false
				continue
			}
			pointDigests[o.Namespace+"/"+v.PVCName] = v.Point.Digest
			allExact = allExact && v.Point.Exact
			if point == nil || v.Point.Time.Before(&point.Time) {
				point = &uplink.Point{Time: v.Point.Time}
			}
		}
		allPoints = allPoints && len(s.Volumes) == len(o.Spec.Volumes) && len(s.Volumes) > 0
	}
	if allPoints && point != nil {
		point.Digest, point.Exact = uplink.CombineDigests(pointDigests), allExact
		m.Point = point
	}
	if len(m.Endpoints) == 0 {
		m.Endpoints = nil
	}
	if phase == replv1.DestinationVerified {
		m.Digest = uplink.CombineDigests(digests)
	}
	m.AppReady, m.HubVerified = appReady, verified
	m.Hook = combineHooks(hooks)
	return condition(uplink.ConditionType(migrationID, uplink.RoleDestination), string(phase), phase != replv1.DestinationFailed, m)
}

type namespacedHook struct {
	namespace string
	status    *replv1.HookStatus
}

// combineHooks: Failed if any namespace failed, Succeeded once all did,
// else Running; the most runs, the earliest start, the latest end.
func combineHooks(hs []namespacedHook) *replv1.HookStatus {
	if len(hs) == 0 {
		return nil
	}
	out := &replv1.HookStatus{Phase: replv1.HookSucceeded}
	var msgs []string
	for _, h := range hs {
		s := h.status
		if s == nil {
			s = &replv1.HookStatus{Phase: replv1.HookRunning}
		}
		switch {
		case s.Phase == replv1.HookFailed:
			out.Phase = replv1.HookFailed
		case s.Phase == replv1.HookRunning && out.Phase != replv1.HookFailed:
			out.Phase = replv1.HookRunning
		}
		out.Runs = max(out.Runs, s.Runs)
		if s.StartTime != nil && (out.StartTime == nil || s.StartTime.Before(out.StartTime)) {
			out.StartTime = s.StartTime
		}
		if s.CompletionTime != nil && (out.CompletionTime == nil || out.CompletionTime.Before(s.CompletionTime)) {
			out.CompletionTime = s.CompletionTime
		}
		if s.Message != "" {
			msgs = append(msgs, h.namespace+": "+s.Message)
		}
	}
	if out.Phase == replv1.HookRunning {
		out.CompletionTime = nil
	}
	out.Message = strings.Join(msgs, "; ")
	return out
}

func condition(typ, reason string, healthy bool, m uplink.Message) metav1.Condition {
	b, _ := json.Marshal(m)
	status := metav1.ConditionTrue
	if !healthy {
		status = metav1.ConditionFalse
	}
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: string(b)}
}

func (r *Reporter) set(ctx context.Context, c metav1.Condition) error {
	r.mu.Lock()
	w, ok := r.last[c.Type]
	r.mu.Unlock()
	prev := w.c
	if ok && time.Since(w.at) < refresh && prev.Status == c.Status && prev.Reason == c.Reason && prev.Message == c.Message {
		return nil
	}
	if err := r.Writer.Update(ctx, []metav1.Condition{c}); err != nil {
		return fmt.Errorf("reporting %s to the hub: %w", c.Type, err)
	}
	r.mu.Lock()
	if r.last == nil {
		r.last = map[string]written{}
	}
	r.last[c.Type] = written{c: c, at: time.Now()}
	r.mu.Unlock()
	return nil
}

func (r *Reporter) remove(ctx context.Context, typ string) error {
	if err := r.Writer.Update(ctx, nil, typ); err != nil {
		return fmt.Errorf("withdrawing %s from the hub: %w", typ, err)
	}
	r.mu.Lock()
	delete(r.last, typ)
	r.mu.Unlock()
	return nil
}
