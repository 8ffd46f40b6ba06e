# Shared settings and helpers for hack/e2e/*.sh (sourced, not executed).
# Everything built is cached under $E2E_CACHE, keyed by version or content, so a warm run
# skips the builds. Progress goes to stderr; scripts that "print a path" print only that.

E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E_CACHE=${E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stateful-migration/e2e}
E2E_BIN=$E2E_CACHE/bin

# Versions (override from the environment).
KIND_VERSION=${KIND_VERSION:-v0.30.0}
# The node image's Kubernetes when it is built here. 1.35 matches the envtest binaries
# (hack/envtest-assets.sh), so kube-apiserver, kubectl and etcd are shared and the Go build
# cache is warm. On a cgroup v1 host kubelet >= 1.35 needs failCgroupV1: false (set by
# cluster.sh only when the host is on cgroup v1).
E2E_K8S_VERSION=${E2E_K8S_VERSION:-v1.35.8}
E2E_ETCD_VERSION=${E2E_ETCD_VERSION:-v3.6.16}
CLUSTERADM_VERSION=${CLUSTERADM_VERSION:-v1.3.1}
CRANE_VERSION=${CRANE_VERSION:-v0.20.6}

# Heavy work yields to everything else on a shared machine.
NICE=(nice -n 19 ionice -c3)

e2e_log() { echo "[$(date +%H:%M:%S)] ${E2E_SCRIPT:-e2e}: $*" >&2; }
e2e_die() { e2e_log "error: $*"; exit 1; }

# e2e_lock NAME: serialize builds of one cache entry across concurrent runs (fd 9).
e2e_lock() {
  mkdir -p "$E2E_CACHE"
  exec 9>"$E2E_CACHE/.$1.lock"
  if ! flock -n 9; then
    e2e_log "waiting for another build holding $E2E_CACHE/.$1.lock"
    flock 9
  fi
}

# Isolated Go builds: no go.work or GOFLAGS of the caller, static binaries.
e2e_go_env() {
  export GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0
}

e2e_timing() { # e2e_timing STEP SECONDS: appended to $E2E_CACHE/timings.log
  mkdir -p "$E2E_CACHE"
  echo "$(date -u +%FT%TZ) $1 $2s" >>"$E2E_CACHE/timings.log"
  e2e_log "$1 took $2s"
}
