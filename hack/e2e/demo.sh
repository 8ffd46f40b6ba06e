#!/usr/bin/env bash
# `make demo`: the whole product on this machine. Brings up hub, cluster1, cluster2 on kind
# with OCM and stateful-migration (hack/e2e/fleet.sh up), deploys a stateful app (the e2e
# writer: checksummed records, fsynced, ~5 MB/s) on cluster1 with a Placement and a
# ManifestWorkReplicaSet, edits the Placement to cluster2, shows the Migration as it moves,
# and prints its timings. `make demo-clean` deletes the clusters.
set -euo pipefail
E2E_SCRIPT=demo
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
export PATH=$E2E_BIN:$PATH

"$here/fleet.sh" up
eval "$("$here/fleet.sh" env)"
hub=(kubectl --kubeconfig "$E2E_KUBECONFIG_HUB")
c1=(kubectl --kubeconfig "$E2E_KUBECONFIG_CLUSTER1" -n e2e-writer)
c2=(kubectl --kubeconfig "$E2E_KUBECONFIG_CLUSTER2" -n e2e-writer)
ns=e2e-writer

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Labelling the managed clusters (the app's Placement selects by this label)"
for c in cluster1 cluster2; do
  "${hub[@]}" label managedcluster "$c" "e2e.stateful-migration.io/name=$c" --overwrite
done

say "Deploying the app on cluster1: Placement + ManifestWorkReplicaSet + MigrationPolicy"
if "${hub[@]}" get namespace "$ns" >/dev/null 2>&1; then
  e2e_die "namespace $ns exists on the hub: a previous demo is still there (make demo-clean)"
fi
sed -e "s|\${WRITER_IMAGE}|$E2E_WRITER_IMAGE|g" -e 's|\${CLUSTER}|cluster1|g' -e 's|\${PREFILL}|536870912|g' -e 's|\${SIZE}|1Gi|g' -e 's|\${MAX_BYTES}|805306368|g' \
  "$E2E_ROOT/e2e/testdata/writer-app.yaml" | "${hub[@]}" apply --server-side -f -
"${hub[@]}" -n "$ns" get placement,manifestworkreplicaset,migrationpolicy

say "Waiting for the writer on cluster1 (it writes 512 MiB first, then ~5 MB/s)"
for _ in $(seq 1 150); do
  "${c1[@]}" logs deploy/writer 2>/dev/null | grep -q '^ack ' && break
  sleep 2
done
# Logs are read whole, then filtered: a filter that stops early (head, grep -m1)
# would kill kubectl with SIGPIPE, which pipefail turns into a failed demo.
grep -m1 '^ack ' <<<"$("${c1[@]}" logs deploy/writer)" || e2e_die "the writer did not start on cluster1"
sleep 10
"${c1[@]}" get pods,pvc

say "Moving the app: editing its Placement to select cluster2 (the only user action)"
"${hub[@]}" -n "$ns" patch placement writer --type merge -p \
  '{"spec":{"predicates":[{"requiredClusterSelector":{"labelSelector":{"matchLabels":{"e2e.stateful-migration.io/name":"cluster2"}}}}]}}'

say "Progress (kubectl get migrations -n $ns)"
last= phase=
for _ in $(seq 1 600); do
  now=$("${hub[@]}" -n "$ns" get migrations --no-headers 2>/dev/null || true)
  [[ $now == "$last" ]] || { echo "$(date +%T)  $now"; last=$now; }
  phase=$("${hub[@]}" -n "$ns" get migrations -o jsonpath='{.items[0].status.phase}' 2>/dev/null || true)
  [[ $phase == Completed || $phase == Failed || $phase == RolledBack ]] && break
  sleep 1
done
"${hub[@]}" -n "$ns" get migrations -o wide
[[ $phase == Completed ]] || e2e_die "the migration ended $phase (kubectl describe migrations -n $ns)"

say "The app on cluster2 found every record on its volume and goes on writing"
for _ in $(seq 1 60); do "${c2[@]}" logs deploy/writer 2>/dev/null | grep -q '^ack ' && break; sleep 1; done
sed -n 1p <<<"$("${c2[@]}" logs deploy/writer)"
"${c2[@]}" get pods,pvc

say "Timings"
"${hub[@]}" -n "$ns" get migrations -o go-template='{{range .items}}
  migration   {{.metadata.name}}  ({{.spec.sourceCluster}} -> {{.spec.destinationCluster}})
  T_term      {{.status.timings.termination}}   (quiesce start -> last app container on the source exited)
  T_copy      {{.status.timings.finalSync}}   (final sync + verification, until the hub has both digests)
  T_launch    {{.status.timings.launch}}   (launch -> app pods Ready on the destination)
  T_down      {{.status.timings.downtime}}
  copied      {{.status.progress.copied}}
  rate        {{.status.progress.rate}}
  digest      {{.status.digest}}
{{end}}'
echo
echo "The clusters stay up for a look around (kubeconfigs: hack/e2e/fleet.sh env). Remove them: make demo-clean"
