#!/usr/bin/env bash
# Makes sure the OCM images that `clusteradm init/join --bundle-version $OCM_VERSION` deploys
# exist locally, and prints their tags one per line (for `kind load docker-image`):
#   quay.io/open-cluster-management/{registration-operator,registration,work,placement,addon-manager}:$OCM_VERSION
# A normal machine pulls them. Where no registry answers (or E2E_OFFLINE=1) they are built from
# the open-cluster-management.io/ocm module at $OCM_VERSION (binary at / as in OCM's own
# Dockerfiles, user 10001) and cached as a tarball keyed by version and this script.
# OCM_VERSION defaults to the ocm module clusteradm was built against (tools.sh records it).
set -euo pipefail
E2E_SCRIPT=ocm-images
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

OCM_VERSION=${OCM_VERSION:-$(cat "$E2E_BIN/clusteradm.ocm-version" 2>/dev/null || echo v1.2.0)}
REGISTRY=quay.io/open-cluster-management
# image name -> command package in the ocm module (the binary is /<basename>).
declare -A PKG=(
  [registration-operator]=cmd/registration-operator
  [registration]=cmd/registration
  [work]=cmd/work
  [placement]=cmd/placement
  [addon-manager]=cmd/addon
)
names=(registration-operator registration work placement addon-manager)
tags=()
for n in "${names[@]}"; do tags+=("$REGISTRY/$n:$OCM_VERSION"); done

present() { docker image inspect "$1" >/dev/null 2>&1; }
all_present() { for t in "${tags[@]}"; do present "$t" || return 1; done; }
done_() { printf '%s\n' "${tags[@]}"; exit 0; }

all_present && done_
if [[ ${E2E_OFFLINE:-0} != 1 ]] && [[ ! -e $E2E_CACHE/.pull-failed-ocm-$OCM_VERSION ]]; then
  e2e_log "trying to pull the OCM $OCM_VERSION images"
  ok=1
  for t in "${tags[@]}"; do present "$t" || timeout 300 docker pull "$t" >&2 || { ok=0; break; }; done
  ((ok)) && done_
  mkdir -p "$E2E_CACHE" && touch "$E2E_CACHE/.pull-failed-ocm-$OCM_VERSION"
  e2e_log "cannot pull them (remembered in $E2E_CACHE/.pull-failed-ocm-$OCM_VERSION): building"
fi

key=$(sha256sum <"$here/ocm-images.sh" | cut -c1-12)
archive=$E2E_CACHE/ocm/ocm-images-$OCM_VERSION-$key.tar
e2e_lock ocm-images
all_present && done_
if [[ -s $archive ]]; then
  e2e_log "loading cached $archive"
  docker load -i "$archive" >&2
  all_present && done_
fi

start=$SECONDS
mkdir -p "$E2E_CACHE/ocm"
work=$(mktemp -d "$E2E_CACHE/ocm/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$(e2e_go_env && go mod download -json "open-cluster-management.io/ocm@$OCM_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $src ]] || e2e_die "the module proxy does not serve open-cluster-management.io/ocm@$OCM_VERSION"
# Build inside the (read-only) module directory: its go.mod and go.sum are the release's own.
for n in "${names[@]}"; do
  t=$SECONDS
  e2e_log "building ${PKG[$n]} of ocm $OCM_VERSION"
  (cd "$src" && e2e_go_env && "${NICE[@]}" go build -mod=readonly -trimpath -ldflags "-s -w" \
    -o "$work/$n/$(basename "${PKG[$n]}")" "./${PKG[$n]}") >&2
  e2e_timing "ocm-build:$n" $((SECONDS - t))
done
for n in "${names[@]}"; do
  root=$work/$n
  mkdir -p "$root/tmp" "$root/etc/ssl/certs"
  chmod 1777 "$root/tmp"
  [[ ! -f /etc/ssl/certs/ca-certificates.crt ]] || cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  printf 'root:x:0:0:root:/:/sbin/nologin\nocm:x:10001:10001:ocm:/:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nocm:x:10001:\n' >"$root/etc/group"
  tar -C "$root" --numeric-owner -c . | docker import -c 'USER 10001' - "$REGISTRY/$n:$OCM_VERSION" >/dev/null
done
docker save -o "$archive.tmp" "${tags[@]}" && mv "$archive.tmp" "$archive"
find "$E2E_CACHE/ocm" -maxdepth 1 -name 'ocm-images-*.tar' ! -name "$(basename "$archive")" -delete
e2e_timing "ocm-images($OCM_VERSION)" $((SECONDS - start))
done_
