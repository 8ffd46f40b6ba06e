package placement

// How an enrolled Placement P is run, and the choices made:
//
//   - Enrolment patches P, in one optimistic-locked write, with
//     cluster.open-cluster-management.io/experimental-scheduling-disable=true
//     and migration.open-cluster-management.io/policy=<ns>/<policy>. The
//     decisions the scheduler last wrote are left as they are: that is the
//     adoption, nothing moves. A Placement already claimed by another policy,
//     or with scheduling disabled by someone else, is refused
//     (Enrolled=False, PlacementAlreadyEnrolled).
//   - The companion "<P>-desired" (same namespace) is owned by P, not by the
//     policy, so deleting P removes it; it is labelled
//     migration.open-cluster-management.io/desired-for=<P> and
//     app.kubernetes.io/managed-by=stateful-migration. Its spec is P's, copied
//     on every edit; the real scheduler fills its decisions: the desired set.
//   - P's decisions are the actual set, written only through package decision
//     (one decision group, "<P>-decision-<n>", <=100 clusters each, owned by P).
//     P's status keeps numberOfSelectedClusters and decisionGroups from actual,
//     PlacementSatisfied/PlacementMisconfigured copied from the companion, and
//     a MigrationPolicyEnrolled condition saying who writes the decisions.
//   - Desired is trusted only once the companion has decisions and a
//     PlacementSatisfied condition, and not in the reconcile that just wrote
//     its spec: an empty desired set read too early would remove the app
//     everywhere.
//   - Difference: removed = actual-desired, added = desired-actual, both minus
//     the clusters of active (not finished) Migrations, which are never
//     touched here. Sorted, removed[i] pairs with added[i] and becomes one
//     Migration (Pending, owned by the policy, labelled with policy and
//     placement, generateName "<P>-<src>-to-<dst>-"). Unpaired additions and
//     removals carry no data and are written to actual directly, but only
//     while the policy has no active Migration: mid-move, an unpaired change
//     is usually the user re-targeting that move (the sequencing controller
//     decides what to do with it).
//   - A Migration of the same pair that ended Failed or RolledBack blocks a
//     new one (Converged=False, MigrationBlocked) so a failing move is not
//     retried forever by creating objects; deleting it, or editing P, retries.
//     Retries with backoff within one Migration are the sequencing
//     controller's job (spec.maxAttempts).
//   - Migrations and actual are read from the API server, not the cache, in
//     that order. The sequencing controller must therefore write actual
//     (decision.SetActualClusters) before it marks a Migration Completed;
//     then a finished move is never detected twice.
//   - Un-enrolment (policy deletion, finalizer) waits while a Migration is in
//     Quiescing, FinalSync, Launching or RollingBack, since the scheduler would
//     otherwise start the app on unverified data (Enrolled=True,
//     UnenrolBlockedByMigration). Otherwise it deletes the companion, removes
//     both annotations and the condition, and the scheduler takes P back.
//     Migrations are left to garbage collection through their owner reference.
