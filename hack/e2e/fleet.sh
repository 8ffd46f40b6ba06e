#!/usr/bin/env bash
# The e2e fleet: kind clusters `hub`, `cluster1`, `cluster2` with OCM installed by clusteradm
# (ManifestWorkReplicaSet on), both clusters joined and accepted, and stateful-migration
# installed on the hub (`kubectl apply -k manifests/`) and enabled with `clusteradm addon enable`.
#   hack/e2e/fleet.sh up      create or reuse everything (idempotent; a warm run only checks)
#   hack/e2e/fleet.sh addon   rebuild and reinstall our image (after a code change)
#   hack/e2e/fleet.sh down    delete the three clusters (caches are kept)
#   hack/e2e/fleet.sh env     print E2E_KUBECONFIG_* lines for the Ginkgo suite
set -euo pipefail
E2E_SCRIPT=fleet
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
export PATH=$E2E_BIN:$PATH

HUB=${E2E_HUB:-hub}
SPOKES=(${E2E_SPOKES:-cluster1 cluster2})
IMAGE=${E2E_IMAGE:-stateful-migration:e2e}
WRITER_IMAGE=${E2E_WRITER_IMAGE:-stateful-migration/e2e-writer:e2e}
kc() { "$here/cluster.sh" kubeconfig "$1"; }

load() { # load IMAGE... into every cluster
  local c
  for c in "$HUB" "${SPOKES[@]}"; do kind load docker-image "$@" --name "$c" >&2; done
}

ocm() {
  local t=$SECONDS hubkc v images token api c joined=()
  hubkc=$(kc "$HUB")
  v=$(cat "$E2E_BIN/clusteradm.ocm-version")
  mapfile -t images < <("$here/ocm-images.sh")
  if ! kubectl --kubeconfig "$hubkc" get clustermanager cluster-manager >/dev/null 2>&1; then
    load "${images[@]}"
    e2e_log "clusteradm init on $HUB (OCM $v, ManifestWorkReplicaSet on)"
    # stdout carries the join token: not logged.
    clusteradm init --kubeconfig "$hubkc" --bundle-version "$v" --wait \
      --feature-gates=ManifestWorkReplicaSet=true >/dev/null
    e2e_timing "fleet:init" $((SECONDS - t))
  fi
  for c in "${SPOKES[@]}"; do
    kubectl --kubeconfig "$hubkc" get managedcluster "$c" >/dev/null 2>&1 && continue
    t=$SECONDS
    token=$(clusteradm get token --kubeconfig "$hubkc" -o json | sed -n 's/.*"hub-token": *"\([^"]*\)".*/\1/p')
    [[ -n $token ]] || e2e_die "clusteradm get token gave no token"
    api=$(kubectl --kubeconfig "$hubkc" config view --minify -o jsonpath='{.clusters[0].cluster.server}')
    e2e_log "clusteradm join $c (klusterlet reaches the hub at its Docker name)"
    # --force-internal-endpoint-lookup: the klusterlet uses cluster-info's in-cluster endpoint
    # (https://$HUB-control-plane:6443), which pods resolve through CoreDNS -> Docker's DNS.
    clusteradm join --kubeconfig "$(kc "$c")" --hub-token "$token" --hub-apiserver "$api" \
      --cluster-name "$c" --bundle-version "$v" --force-internal-endpoint-lookup --wait >&2
    joined+=("$c")
    e2e_timing "fleet:join($c)" $((SECONDS - t))
  done
  if ((${#joined[@]})); then
    t=$SECONDS
    clusteradm accept --kubeconfig "$hubkc" --clusters "$(IFS=,; echo "${joined[*]}")" --wait >&2
    e2e_timing "fleet:accept" $((SECONDS - t))
  fi
  for c in "${SPOKES[@]}"; do
    kubectl --kubeconfig "$hubkc" wait --for=condition=ManagedClusterConditionAvailable \
      "managedcluster/$c" --timeout=300s >&2
  done
}

addon() {
  local t=$SECONDS hubkc overlay c pg
  hubkc=$(kc "$HUB")
  make -C "$E2E_ROOT" --no-print-directory build >&2
  "$E2E_ROOT/hack/image-offline.sh" "$IMAGE" "$E2E_ROOT/bin/stateful-migration" >&2
  (cd "$E2E_ROOT" && e2e_go_env && go build -trimpath -o bin/e2e-writer ./test/writer/cmd/e2e-writer) >&2
  "$E2E_ROOT/hack/image-offline.sh" "$WRITER_IMAGE" "$E2E_ROOT/bin/e2e-writer" >&2
  load "$IMAGE" "$WRITER_IMAGE"
  # The database the suite moves runs on the managed clusters only.
  pg=$("$here/postgres-image.sh")
  for c in "${SPOKES[@]}"; do kind load docker-image "$pg" --name "$c" >&2; done
  overlay=$(mktemp -d)
  cat >"$overlay/kustomization.yaml" <<EOF
resources: [$(realpath --relative-to="$overlay" "$E2E_ROOT/manifests")]
images: [{name: stateful-migration, newName: ${IMAGE%:*}, newTag: ${IMAGE##*:}}]
patches:
- target: {kind: Deployment, name: stateful-migration-manager}
  patch: |-
    - {op: replace, path: /spec/template/spec/containers/0/env/0/value, value: "$IMAGE"}
EOF
  kubectl --kubeconfig "$hubkc" apply -k "$overlay" >&2
  rm -rf "$overlay"
  # A rebuilt image under the same tag: restart what runs it.
  kubectl --kubeconfig "$hubkc" -n open-cluster-management-addon rollout restart deploy/stateful-migration-manager >&2
  kubectl --kubeconfig "$hubkc" -n open-cluster-management-addon rollout status deploy/stateful-migration-manager --timeout=300s >&2
  clusteradm addon enable --kubeconfig "$hubkc" --names stateful-migration \
    --clusters "$(IFS=,; echo "${SPOKES[*]}")" >&2
  for c in "${SPOKES[@]}"; do
    kubectl --kubeconfig "$hubkc" -n "$c" wait --for=condition=Available \
      managedclusteraddon/stateful-migration --timeout=300s >&2
    kubectl --kubeconfig "$(kc "$c")" -n open-cluster-management-agent-addon \
      rollout restart deploy/stateful-migration-agent >&2 2>&1 || true
  done
  e2e_timing "fleet:addon" $((SECONDS - t))
}

up() {
  local start=$SECONDS c
  for c in "$HUB" "${SPOKES[@]}"; do "$here/cluster.sh" up "$c"; done
  "$here/tools.sh" clusteradm >/dev/null
  ocm
  addon
  e2e_timing "fleet:up" $((SECONDS - start))
}

case ${1:?usage: fleet.sh up|addon|down|env} in
up) up ;;
addon) addon ;;
down) for c in "$HUB" "${SPOKES[@]}"; do "$here/cluster.sh" down "$c"; done ;;
env)
  echo "E2E_KUBECONFIG_HUB=$(kc "$HUB")"
  echo "E2E_KUBECONFIG_CLUSTER1=$(kc "${SPOKES[0]}")"
  echo "E2E_KUBECONFIG_CLUSTER2=$(kc "${SPOKES[1]}")"
  echo "E2E_WRITER_IMAGE=$WRITER_IMAGE"
  echo "E2E_POSTGRES_IMAGE=$("$here/postgres-image.sh")"
  ;;
*) e2e_die "unknown command $1" ;;
esac
