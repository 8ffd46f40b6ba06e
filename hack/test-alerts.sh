#!/usr/bin/env bash
# Unit-tests the shipped alert rules with promtool: the PrometheusRule's spec
# (its groups) is what Prometheus loads, so it is what the tests run against.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
promtool=$("$ROOT/hack/promtool.sh")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed -n '/^spec:$/,$p' "$ROOT/manifests/monitoring/prometheusrule.yaml" | tail -n +2 | sed 's/^  //' >"$work/rules.yaml"
cp "$ROOT/test/alerts/alerts_test.yaml" "$work/"
"$promtool" check rules "$work/rules.yaml"
"$promtool" test rules "$work/alerts_test.yaml"
