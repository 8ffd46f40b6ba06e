#!/usr/bin/env bash
# `make test-e2e`: bring up the fleet (hack/e2e/fleet.sh up), run the Ginkgo suite in e2e/
# against it, and tear the clusters down again unless E2E_KEEP=1 (caches are always kept).
# Extra `go test` arguments come from E2E_ARGS (e.g. E2E_ARGS='-ginkgo.focus=moves'); the
# measurements labelled "bench" run only with E2E_LABELS=bench (`make bench-e2e`). Then the
# demo (`make demo`) runs on the same fleet, as a new user would run it.
set -euo pipefail
E2E_SCRIPT=run
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

start=$SECONDS
"$here/fleet.sh" up
[[ ${E2E_KEEP:-0} == 1 ]] || trap '"$here/fleet.sh" down' EXIT
set -a
source <("$here/fleet.sh" env)
set +a
t=$SECONDS
rc=0
(cd "$E2E_ROOT" && go test -v -count=1 -timeout 90m ./e2e/ -ginkgo.v -ginkgo.label-filter="${E2E_LABELS:-!bench}" ${E2E_ARGS:-}) || rc=$?
e2e_timing "e2e:suite" $((SECONDS - t))
# `make demo` runs here too, to its last line, on the same fleet (the suite
# removed its apps): what CI does not run breaks unnoticed. E2E_SKIP_DEMO=1 skips it.
if [[ $rc == 0 && -z ${E2E_LABELS:-} && ${E2E_SKIP_DEMO:-0} != 1 ]]; then
  t=$SECONDS
  "$here/demo.sh" || rc=$?
  e2e_timing "e2e:demo" $((SECONDS - t))
fi
e2e_timing "e2e:total" $((SECONDS - start))
exit $rc
