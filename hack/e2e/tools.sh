#!/usr/bin/env bash
# Installs the e2e tools into $E2E_BIN, keyed by version, and prints that directory:
#   kind        go install sigs.k8s.io/kind@$KIND_VERSION
#   kubectl     the one hack/envtest-assets.sh builds ($E2E_K8S_VERSION), else one on PATH
#   clusteradm  go install open-cluster-management.io/clusteradm/cmd/clusteradm@$CLUSTERADM_VERSION
#               (falls back to the newest v1.2.x the module proxy serves)
# Usage: hack/e2e/tools.sh [TOOL...]   (default: kind kubectl clusteradm)
set -euo pipefail
E2E_SCRIPT=tools
source "$(dirname "$0")/lib.sh"

tools=("$@")
((${#tools[@]})) || tools=(kind kubectl clusteradm)
mkdir -p "$E2E_BIN"

# go_install NAME VERSIONED_DIR PKG@VERSION [MODULE]: build into a versioned dir, link
# $E2E_BIN/NAME. When `go install pkg@version` fails (e.g. the proxy refuses the module's
# version list, which go install reads for deprecation notices), build the same package from a
# throwaway main module that requires MODULE at that version.
go_install() {
  local name=$1 dir=$2 pkg=$3 mod=${4:-} start=$SECONDS
  if [[ ! -x $dir/$name ]]; then
    e2e_lock "tool-$name"
    if [[ ! -x $dir/$name ]]; then
      e2e_log "building $pkg"
      rm -rf "$dir.tmp" "$dir.mod"
      if ! (e2e_go_env && GOBIN=$dir.tmp "${NICE[@]}" go install -trimpath -ldflags "-s -w" "$pkg") >&2; then
        [[ -n $mod ]] || e2e_die "go install $pkg failed"
        e2e_log "go install failed; building $pkg from a throwaway module requiring $mod"
        mkdir -p "$dir.mod" && (
          cd "$dir.mod" && e2e_go_env
          go mod init e2e-tool-"$name" >/dev/null 2>&1
          go mod edit -require="$mod@${pkg##*@}" -tool="${pkg%@*}" ${GO_INSTALL_REPLACES:-}
          go mod tidy
          "${NICE[@]}" go build -trimpath -ldflags "-s -w" -o "$dir.tmp/$name" "${pkg%@*}"
        ) >&2
        rm -rf "$dir.mod"
      fi
      mv -T "$dir.tmp" "$dir"
      e2e_timing "tool $pkg" $((SECONDS - start))
    fi
  fi
  ln -sfn "$dir/$name" "$E2E_BIN/$name"
}

for t in "${tools[@]}"; do
  case $t in
  kind) go_install kind "$E2E_BIN/kind-$KIND_VERSION" "sigs.k8s.io/kind@$KIND_VERSION" ;;
  kubectl)
    # Preferred: the envtest build of $E2E_K8S_VERSION (same version as the node image built
    # here; kubectl supports +-1 minor). Else a kubectl already on PATH. Else build it (with
    # envtest's kube-apiserver and etcd, which `make test` needs anyway).
    envtest_dir=${ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stateful-migration/envtest}/$E2E_K8S_VERSION-$E2E_ETCD_VERSION
    onpath=$(PATH=${PATH//$E2E_BIN:/} command -v kubectl || true)
    if [[ -x $envtest_dir/kubectl ]]; then
      ln -sfn "$envtest_dir/kubectl" "$E2E_BIN/kubectl"
    elif [[ -n $onpath ]]; then
      ln -sfn "$onpath" "$E2E_BIN/kubectl"
    else
      assets=$(ENVTEST_K8S_VERSION=$E2E_K8S_VERSION ENVTEST_ETCD_VERSION=$E2E_ETCD_VERSION \
        "${NICE[@]}" "$E2E_ROOT/hack/envtest-assets.sh")
      ln -sfn "$assets/kubectl" "$E2E_BIN/kubectl"
    fi
    ;;
  clusteradm)
    v=$CLUSTERADM_VERSION
    if [[ ! -x $E2E_BIN/clusteradm-$v/clusteradm ]] &&
      ! (e2e_go_env && go list -m "open-cluster-management.io/clusteradm@$v" >/dev/null 2>&1); then
      # The proxy may refuse the version list; ask for the v1.2 line by query instead.
      v=$(e2e_go_env && go list -m -f '{{.Version}}' "open-cluster-management.io/clusteradm@v1.2" 2>/dev/null) ||
        e2e_die "no clusteradm $CLUSTERADM_VERSION nor v1.2.x on the module proxy"
      e2e_log "clusteradm $CLUSTERADM_VERSION unavailable, using $v"
    fi
    # clusteradm imports open-cluster-management.io/ocm (operator charts). If the module proxy
    # will not serve the ocm version it requires, build against $CLUSTERADM_OCM_FALLBACK; the
    # binary then deploys that ocm's charts. The ocm version it carries is recorded in
    # clusteradm.ocm-version: the --bundle-version to use and the images ocm-images.sh makes.
    dir=$E2E_BIN/clusteradm-$v
    ocm=$(cat "$dir/ocm-version" 2>/dev/null || true)
    if [[ -z $ocm ]]; then
      gomod=$(e2e_go_env && go mod download -json "open-cluster-management.io/clusteradm@$v" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
      ocm=$(awk '$1 == "open-cluster-management.io/ocm" {print $2; exit}' "$gomod")
      [[ -n $ocm ]] || e2e_die "clusteradm $v does not require open-cluster-management.io/ocm"
      if ! (e2e_go_env && go mod download "open-cluster-management.io/ocm@$ocm" >/dev/null 2>&1); then
        fb=${CLUSTERADM_OCM_FALLBACK:-v1.2.0}
        e2e_log "the module proxy does not serve open-cluster-management.io/ocm@$ocm; building clusteradm $v against ocm $fb"
        GO_INSTALL_REPLACES="-replace=open-cluster-management.io/ocm=open-cluster-management.io/ocm@$fb"
        ocm=$fb
      fi
      rm -rf "$dir"
    fi
    go_install clusteradm "$dir" "open-cluster-management.io/clusteradm/cmd/clusteradm@$v" \
      open-cluster-management.io/clusteradm
    echo "$ocm" >"$dir/ocm-version"
    ln -sfn "$dir/ocm-version" "$E2E_BIN/clusteradm.ocm-version"
    ;;
  *) e2e_die "unknown tool $t" ;;
  esac
done
echo "$E2E_BIN"
