#!/usr/bin/env bash
# Prints a directory with kube-apiserver, etcd and kubectl for controller-runtime's envtest:
#
#   export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)
#
# Release binaries cannot be downloaded here or in CI, so the binaries are built from Go
# modules and cached per version. A warm run only prints the path; stdout carries nothing
# else (progress goes to stderr). Safe to run concurrently (flock), and an interrupted build
# never leaves a partial cache (binaries are built in a temp dir and renamed into place).
#
# Environment:
#   KUBEBUILDER_ASSETS    used as is if it already holds kube-apiserver and etcd
#   ENVTEST_CACHE         cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/stateful-migration/envtest)
#   ENVTEST_K8S_VERSION   k8s.io/kubernetes version (newest 1.35 patch the module proxy serves)
#   ENVTEST_ETCD_VERSION  go.etcd.io/etcd version; if it cannot be built, Debian's etcd-server
#                         package is used instead (recorded in the cache dir's SOURCES file)
set -euo pipefail

K8S_VERSION=${ENVTEST_K8S_VERSION:-v1.35.8}
ETCD_VERSION=${ENVTEST_ETCD_VERSION:-v3.6.16}

log() { echo "envtest-assets: $*" >&2; }
has_bins() { [[ -x $1/kube-apiserver && -x $1/etcd ]]; }

if [[ -n ${KUBEBUILDER_ASSETS:-} ]]; then
  if has_bins "$KUBEBUILDER_ASSETS"; then
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  log "ignoring KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS: no kube-apiserver and etcd there"
fi

root=${ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stateful-migration/envtest}
dir=$root/$K8S_VERSION-$ETCD_VERSION
if has_bins "$dir"; then
  echo "$dir"
  exit 0
fi

mkdir -p "$root"
exec 9>"$root/.lock"
if ! flock -n 9; then
  log "another build holds $root/.lock, waiting"
  flock 9
fi
if has_bins "$dir"; then # built by whoever held the lock
  echo "$dir"
  exit 0
fi
# We hold the lock: leftovers of interrupted builds are garbage.
rm -rf "$root"/.build.* "$dir"
work=$(mktemp -d "$root/.build.XXXXXX") # same filesystem as $dir, so the final mv is a rename
trap 'rm -rf "$work"' EXIT

# Build in throwaway main modules, isolated from any go.work or GOFLAGS of the caller.
export GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0
bin=$work/bin
mkdir -p "$bin"

build_etcd() {
  # etcd's go.mod files carry replace directives, so `go install pkg@version` refuses them;
  # requiring the server module from our own main module works. Its main package is the root.
  mkdir "$work/etcd" && cd "$work/etcd"
  go mod init envtest-etcd
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION" -tool=go.etcd.io/etcd/server/v3
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
  echo "etcd: go.etcd.io/etcd/server/v3 $ETCD_VERSION" >>"$bin/SOURCES"
}

etcd_from_debian() {
  # Unpack the package rather than install it: an installed etcd-server starts a system daemon.
  local sudo=
  [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  mkdir "$work/deb" && cd "$work/deb"
  apt-get download -qq etcd-server
  dpkg-deb -x etcd-server_*.deb root
  cp root/usr/bin/etcd "$bin/etcd"
  echo "etcd: Debian etcd-server $(dpkg-deb -f etcd-server_*.deb Version)" >>"$bin/SOURCES"
}

build_kube() {
  # k8s.io/kubernetes points its staging modules at ./staging/src/...; outside its repo each
  # must be replaced by its published v0.X.Y. The list comes from kubernetes' own go.mod.
  mkdir "$work/kube" && cd "$work/kube"
  go mod init envtest-kube
  local gomod staging=v0.${K8S_VERSION#v1.} mods=() args=() m
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  mapfile -t mods < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod")
  for m in "${mods[@]}"; do args+=("-replace=$m=$m@$staging"); done
  [[ ${#args[@]} -gt 0 ]] || { log "no staging replaces found in $gomod"; return 1; }
  go mod edit -require="k8s.io/kubernetes@$K8S_VERSION" "${args[@]}" \
    -tool=k8s.io/kubernetes/cmd/kube-apiserver -tool=k8s.io/kubernetes/cmd/kubectl
  go mod tidy
  # What kubernetes' hack/lib/version.sh stamps, so clients see the real server version.
  local v=${K8S_VERSION#v} ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=${v%%.*}"
    ldflags+=" -X $pkg.gitMinor=$(cut -d. -f2 <<<"$v") -X $pkg.gitTreeState=clean"
    ldflags+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  go build -trimpath -ldflags "$ldflags" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
  echo "kube-apiserver, kubectl: k8s.io/kubernetes $K8S_VERSION (staging modules $staging)" >>"$bin/SOURCES"
}

{
  start=$SECONDS
  log "building etcd $ETCD_VERSION"
  # Not `if ! build_etcd`: errexit would be ignored inside it.
  set +e; (set -e; build_etcd); rc=$?; set -e
  if ((rc != 0)); then
    log "building etcd failed; falling back to Debian's etcd-server package"
    (etcd_from_debian)
  fi
  log "building kube-apiserver and kubectl $K8S_VERSION (several minutes when cold)"
  (build_kube)
  has_bins "$bin"
  mv -T "$bin" "$dir"
  log "done in $((SECONDS - start))s: $dir"
} >&2
echo "$dir"
