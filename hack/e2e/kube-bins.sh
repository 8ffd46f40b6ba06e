#!/usr/bin/env bash
# Prints a directory holding the Kubernetes binaries a kind node needs, built from Go modules
# (release binaries cannot be downloaded everywhere this runs):
#   kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd
# kube-apiserver, kubectl and etcd come from hack/envtest-assets.sh (same version, same cache);
# the rest are built here the same way: a throwaway main module requiring k8s.io/kubernetes with
# every staging module replaced by its published v0.Y.Z. Cached per version under $E2E_CACHE.
set -euo pipefail
E2E_SCRIPT=kube-bins
source "$(dirname "$0")/lib.sh"

BINS=(kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd)
dir=$E2E_CACHE/kube/$E2E_K8S_VERSION-etcd$E2E_ETCD_VERSION
complete() { local b; for b in "${BINS[@]}"; do [[ -x $1/$b ]] || return 1; done; }

if complete "$dir"; then echo "$dir"; exit 0; fi
e2e_lock kube
if complete "$dir"; then echo "$dir"; exit 0; fi

start=$SECONDS
rm -rf "$E2E_CACHE"/kube/.build.* "$dir"
mkdir -p "$E2E_CACHE/kube"
work=$(mktemp -d "$E2E_CACHE/kube/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
bin=$work/bin
mkdir -p "$bin"

{
  e2e_log "kube-apiserver, kubectl, etcd via hack/envtest-assets.sh"
  assets=$(ENVTEST_K8S_VERSION=$E2E_K8S_VERSION ENVTEST_ETCD_VERSION=$E2E_ETCD_VERSION \
    "${NICE[@]}" "$E2E_ROOT/hack/envtest-assets.sh")
  cp "$assets"/kube-apiserver "$assets"/kubectl "$assets"/etcd "$bin/"
  cp "$assets/SOURCES" "$bin/SOURCES" 2>/dev/null || true

  e2e_go_env
  mkdir "$work/kube" && cd "$work/kube"
  go mod init e2e-kube >/dev/null 2>&1
  staging=v0.${E2E_K8S_VERSION#v1.}
  gomod=$(go mod download -json "k8s.io/kubernetes@$E2E_K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  mapfile -t mods < <(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod")
  ((${#mods[@]} > 0)) || e2e_die "no staging replaces found in $gomod"
  args=()
  for m in "${mods[@]}"; do args+=("-replace=$m=$m@$staging"); done
  cmds=(kubelet kubeadm kube-controller-manager kube-scheduler kube-proxy)
  for c in "${cmds[@]}"; do args+=("-tool=k8s.io/kubernetes/cmd/$c"); done
  go mod edit -require="k8s.io/kubernetes@$E2E_K8S_VERSION" "${args[@]}"
  go mod tidy
  # What kubernetes' hack/lib/version.sh stamps, so kubeadm and kubelet know their version.
  v=${E2E_K8S_VERSION#v}
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$E2E_K8S_VERSION -X $pkg.gitMajor=${v%%.*}"
    ldflags+=" -X $pkg.gitMinor=$(cut -d. -f2 <<<"$v") -X $pkg.gitTreeState=clean"
    ldflags+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  for c in "${cmds[@]}"; do
    e2e_log "building $c $E2E_K8S_VERSION"
    "${NICE[@]}" go build -trimpath -ldflags "$ldflags" -o "$bin/$c" "k8s.io/kubernetes/cmd/$c"
  done
  echo "kubelet, kubeadm, kube-controller-manager, kube-scheduler, kube-proxy: k8s.io/kubernetes $E2E_K8S_VERSION (staging $staging)" >>"$bin/SOURCES"
  complete "$bin"
  mv -T "$bin" "$dir"
  e2e_timing "kube-bins($E2E_K8S_VERSION)" $((SECONDS - start))
} >&2
echo "$dir"
