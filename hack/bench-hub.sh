#!/usr/bin/env bash
# The hub at fleet scale (docs/scale.md): the scale suite of
# test/integration/scale on a real kube-apiserver and etcd (envtest), once per
# fleet size, and its figures as one table. FLEETS lists "clusters:migrations"
# pairs (default "100:10 500:50 1000:100"); HUB_ARGS passes the manager's
# tuning flags (e.g. "--workers=1 --kube-api-qps=20 --kube-api-burst=30").
# It reports the reaction times it measures against the 1 s target instead of
# failing on them; it fails when a move does not complete or the hub is busy
# at rest.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
FLEETS=${FLEETS:-"100:10 500:50 1000:100"}
KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)
export KUBEBUILDER_ASSETS
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for f in $FLEETS; do
  n=${f%%:*} m=${f##*:}
  echo "== $n clusters, $m migrations ${HUB_ARGS:+($HUB_ARGS)}" >&2
  if ! SCALE_CLUSTERS=$n SCALE_MIGRATIONS=$m SCALE_HUB_ARGS=${HUB_ARGS:-} SCALE_MEASURE_ONLY=1 \
      go test -v -count=1 -timeout 40m ./test/integration/scale/ -ginkgo.v >"$out/$n.log" 2>&1; then
    echo "fleet $n:$m failed; its log:" >&2
    grep -E 'FAIL|Expected|\[It\]' "$out/$n.log" | head -20 >&2
    status=1
  fi
  grep -h '^SCALE |' "$out/$n.log" | sort -u >>"$out/table" || true
  grep -E '^\s+(PVC|destination|caught|app |both)' "$out/$n.log" | sed "s/^/  N=$n /" >>"$out/steps" || true
done
echo
echo "hub at fleet scale (${HUB_ARGS:-default flags}):"
sed 's/^SCALE | //' "$out/table"
echo
echo "reaction by step:"
cat "$out/steps" 2>/dev/null || true
exit $status
