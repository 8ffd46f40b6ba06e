#!/usr/bin/env bash
# Prints the kind node image to use, making sure it exists locally:
#  1. $E2E_NODE_IMAGE if set (must be present or pullable);
#  2. kind's default kindest/node image for $KIND_VERSION if present or pullable (a normal machine);
#  3. otherwise (no registry) builds stateful-migration/kind-node:$E2E_K8S_VERSION here:
#     Debian root filesystem (rootfs.sh), Kubernetes binaries from Go modules (kube-bins.sh),
#     control-plane, etcd, CoreDNS, pause, kube-proxy and local-path-provisioner images made
#     with `docker import` and preloaded into the node's containerd (namespace k8s.io) under the
#     exact tags `kubeadm config images list` asks for.
# Set E2E_OFFLINE=1 to skip the pull attempt. Every artifact is cached under $E2E_CACHE,
# keyed by version or content: a warm run only checks and prints.
set -euo pipefail
E2E_SCRIPT=node-image
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

# kind's default node image per kind release (pkg/apis/config/defaults/image.go).
case $KIND_VERSION in
v0.30.0) KIND_DEFAULT_IMAGE=kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a ;;
*) KIND_DEFAULT_IMAGE=${KIND_DEFAULT_IMAGE:?set KIND_DEFAULT_IMAGE for kind $KIND_VERSION} ;;
esac
COREDNS_MODULE_VERSION=${COREDNS_MODULE_VERSION:-} # default: the version kubeadm asks for
LOCAL_PATH_VERSION=${LOCAL_PATH_VERSION:-v0.0.30}

present() { docker image inspect "$1" >/dev/null 2>&1; }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
# drop_old TAG OLD_ID: after TAG moved to a new build, remove the image it pointed to before.
drop_old() { [[ -z $2 || $2 == "$(image_id "$1")" ]] || docker rmi "$2" >/dev/null 2>&1 || true; }
# A failed pull is remembered for a day, so warm runs on a machine without a registry do not
# wait on it again (a blackholed registry can take the whole timeout).
try_pull() {
  [[ ${E2E_OFFLINE:-0} != 1 ]] || return 1
  local mark=$E2E_CACHE/.pull-failed-$(echo "$1" | sha256sum | cut -c1-12)
  if [[ -n $(find "$mark" -mmin -1440 2>/dev/null) ]]; then
    e2e_log "not retrying the pull of $1 (failed within the last day; rm $mark to retry)"
    return 1
  fi
  e2e_log "trying to pull $1"
  if timeout 300 docker pull "$1" >&2; then
    rm -f "$mark"
    return 0
  fi
  mkdir -p "$E2E_CACHE" && touch "$mark"
  return 1
}

if [[ -n ${E2E_NODE_IMAGE:-} ]]; then
  present "$E2E_NODE_IMAGE" || try_pull "$E2E_NODE_IMAGE" || e2e_die "cannot find or pull $E2E_NODE_IMAGE"
  echo "$E2E_NODE_IMAGE"
  exit 0
fi
if present "$KIND_DEFAULT_IMAGE" || try_pull "$KIND_DEFAULT_IMAGE" 2>/dev/null; then
  echo "$KIND_DEFAULT_IMAGE"
  exit 0
fi
e2e_log "kind's default image cannot be pulled: building a node image locally"

# Content key: the scripts and node files that shape the image, and the versions.
key=$(cat "$here/node-image.sh" "$here/rootfs.sh" "$here/kube-bins.sh" "$here"/node/* \
  "$here"/pause/*.go "$here"/runc-wrapper/*.go |
  { cat; echo "$E2E_K8S_VERSION $E2E_ETCD_VERSION $COREDNS_MODULE_VERSION $LOCAL_PATH_VERSION"; } |
  sha256sum | cut -c1-12)
IMAGE=stateful-migration/kind-node:$E2E_K8S_VERSION
LABEL=io.stateful-migration.e2e.key
current() { [[ $(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$IMAGE" 2>/dev/null) == "$key" ]]; }
archive=$E2E_CACHE/node/kind-node-$E2E_K8S_VERSION-$key.tar

if current; then echo "$IMAGE"; exit 0; fi
e2e_lock node-image
if current; then echo "$IMAGE"; exit 0; fi
if [[ -s $archive ]]; then
  e2e_log "loading cached $archive"
  docker load -i "$archive" >&2
  if current; then echo "$IMAGE"; exit 0; fi
fi

total=$SECONDS
mkdir -p "$E2E_CACHE/node" "$E2E_CACHE/images"
work=$(mktemp -d "$E2E_CACHE/node/.build.XXXXXX")
builder=
cleanup() {
  [[ -z $builder ]] || docker rm -f "$builder" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

t=$SECONDS; rootfs=$("$here/rootfs.sh"); e2e_timing node-image:rootfs $((SECONDS - t))
t=$SECONDS; bins=$("$here/kube-bins.sh"); e2e_timing node-image:kube-bins $((SECONDS - t))
e2e_go_env

# Images kubeadm will ask for, by role.
mapfile -t wanted < <("$bins/kubeadm" config images list --kubernetes-version "$E2E_K8S_VERSION" 2>/dev/null)
img_for() { printf '%s\n' "${wanted[@]}" | grep -m1 "/$1:" || e2e_die "kubeadm lists no $1 image"; }
PAUSE_IMAGE=$(img_for pause)
ETCD_IMAGE=$(img_for etcd)
COREDNS_IMAGE=$(img_for coredns)
coredns_version=${COREDNS_MODULE_VERSION:-${COREDNS_IMAGE##*:}}
PROVISIONER_IMAGE=stateful-migration/local-path-provisioner:$LOCAL_PATH_VERSION
HELPER_IMAGE=stateful-migration/busybox:local

# go_tool NAME PKG@VERSION: build once into $E2E_CACHE/images/NAME-VERSION/NAME; prints path.
go_tool() {
  local name=$1 pkg=$2 dir=$E2E_CACHE/images/$1-${2##*@} t=$SECONDS
  if [[ ! -x $dir/$name ]]; then
    e2e_log "building $pkg"
    rm -rf "$dir.tmp"
    GOBIN=$dir.tmp "${NICE[@]}" go install -trimpath -ldflags "-s -w" "$pkg" >&2
    [[ -x $dir.tmp/$name ]] || mv "$dir.tmp/$(basename "${pkg%@*}")" "$dir.tmp/$name"
    mv -T "$dir.tmp" "$dir"
    e2e_timing "build $pkg" $((SECONDS - t))
  fi
  echo "$dir/$name"
}
# go_local NAME DIR [LDFLAGS]: build a program of this repo (its own module) into $work.
go_local() {
  (cd "$here/$2" && go build -trimpath -ldflags "-s -w ${3:-}" -o "$work/$1" .) >&2
  echo "$work/$1"
}

# small_image TAG ENTRYPOINT_JSON FILE:DEST...: a scratch image of static binaries.
small_image() {
  local tag=$1 entry=$2 root=$work/img-$RANDOM f
  shift 2
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/var/run" "$root/usr/local/bin"
  chmod 1777 "$root/tmp"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" 2>/dev/null || true
  printf 'root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  for f in "$@"; do
    mkdir -p "$root$(dirname "${f#*:}")"
    install -m 0755 "${f%%:*}" "$root${f#*:}"
  done
  local changes=(-c 'ENV PATH=/usr/local/bin:/usr/bin:/bin')
  [[ -z $entry ]] || changes+=(-c "ENTRYPOINT $entry")
  local old
  old=$(image_id "$tag")
  tar -C "$root" --numeric-owner -c . | docker import "${changes[@]}" - "$tag" >/dev/null
  drop_old "$tag" "$old"
  rm -rf "$root"
  e2e_log "image $tag"
}

t=$SECONDS
k=$E2E_K8S_VERSION
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  small_image "$(img_for "$c")" "" "$bins/$c:/usr/local/bin/$c"
done
small_image "$ETCD_IMAGE" "" "$bins/etcd:/usr/local/bin/etcd"
small_image "$PAUSE_IMAGE" '["/pause"]' "$(go_local pause pause):/pause"
small_image "$COREDNS_IMAGE" '["/coredns"]' "$(go_tool coredns "github.com/coredns/coredns@$coredns_version"):/coredns"
small_image "$PROVISIONER_IMAGE" '["/local-path-provisioner"]' \
  "$(go_tool local-path-provisioner "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION"):/local-path-provisioner"
"$here/busybox-image.sh" >/dev/null

# The Debian tree as a base image, for kube-proxy (needs iptables) and the node itself.
BASE=stateful-migration/kind-rootfs:$(basename "$rootfs" .tar)
present "$BASE" || docker import "$rootfs" "$BASE" >/dev/null
# derive FROM TAG CHANGES... -- SRC:DEST...: copy files into a container of FROM, commit as TAG.
derive() {
  local from=$1 tag=$2 changes=() c f old
  shift 2
  old=$(image_id "$tag")
  while [[ $1 != -- ]]; do changes+=(-c "$1"); shift; done
  shift
  c=$(docker create "$from" /bin/true)
  for f in "$@"; do docker cp "${f%%:*}" "$c:${f#*:}"; done
  docker commit "${changes[@]}" "$c" "$tag" >/dev/null
  docker rm "$c" >/dev/null
  drop_old "$tag" "$old"
  e2e_log "image $tag"
}
derive "$BASE" "$(img_for kube-proxy)" 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  'ENTRYPOINT ["/usr/local/bin/kube-proxy"]' -- "$bins/kube-proxy:/usr/local/bin/kube-proxy"
e2e_timing node-image:component-images $((SECONDS - t))

# The node's own files.
t=$SECONDS
files=$work/files
mkdir -p "$files"/{kind/manifests,etc/systemd/system/kubelet.service.d,etc/systemd/system/multi-user.target.wants,etc/containerd,etc/cni/net.d,etc/sysctl.d,usr/local/bin,usr/local/sbin,usr/bin}
echo "$E2E_K8S_VERSION" >"$files/kind/version"
install -m 0755 "$here/node/entrypoint" "$files/usr/local/bin/entrypoint"
install -m 0644 "$here/node/kubelet.service" "$files/etc/systemd/system/kubelet.service"
install -m 0644 "$here/node/10-kubeadm.conf" "$files/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"
install -m 0644 "$here/node/dns-forward.service" "$files/etc/systemd/system/dns-forward.service"
for u in kubelet dns-forward; do
  ln -s "/etc/systemd/system/$u.service" "$files/etc/systemd/system/multi-user.target.wants/$u.service"
done
sed "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|" "$here/node/containerd-config.toml" >"$files/etc/containerd/config.toml"
install -m 0644 "$here/node/10-bridge.conflist" "$files/etc/cni/net.d/10-bridge.conflist"
install -m 0644 "$here/node/99-kind.conf" "$files/etc/sysctl.d/99-kind.conf"
install -m 0644 "$here/node/default-cni.yaml" "$files/kind/manifests/default-cni.yaml"
sed -e "s|@PROVISIONER_IMAGE@|$PROVISIONER_IMAGE|" -e "s|@HELPER_IMAGE@|$HELPER_IMAGE|" \
  "$here/node/local-path-storage.yaml" >"$files/kind/manifests/default-storage.yaml"
for b in kubelet kubeadm kubectl; do install -m 0755 "$bins/$b" "$files/usr/bin/$b"; done
# The runc wrapper ships in every image but is used only where cluster.sh detects the host quirk.
install -m 0755 "$(go_local runc-nocap runc-wrapper "-X main.realRunc=/usr/sbin/runc")" "$files/usr/local/sbin/runc-nocap"
printf '%s\n' "${wanted[@]}" "$PROVISIONER_IMAGE" "$HELPER_IMAGE" >"$files/kind/images"

pre=stateful-migration/kind-node-pre:$key
derive "$BASE" "$pre" -- "$files/.:/"

# Preload the images into the node's containerd: run it in a container of the image being
# built, import (without unpacking: the root is overlayfs), stop it, commit.
e2e_log "preloading images into the node's containerd"
builder=$(docker run -d --privileged --entrypoint /bin/sleep "$pre" infinity)
docker exec "$builder" sh -c 'nohup containerd >/var/log/containerd-build.log 2>&1 &'
for i in $(seq 1 30); do docker exec "$builder" ctr version >/dev/null 2>&1 && break; sleep 1; done
docker save "${wanted[@]}" "$PROVISIONER_IMAGE" "$HELPER_IMAGE" |
  docker exec -i "$builder" ctr --namespace=k8s.io images import \
    --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - >&2
docker exec "$builder" ctr --namespace=k8s.io images list -q >"$work/imported"
for w in "${wanted[@]}"; do grep -qx "$w" "$work/imported" || e2e_die "image $w missing after import"; done
# (sleep is PID 1 and reaps nothing: wait for containerd to be a zombie, not gone.)
docker exec "$builder" sh -c 'pkill -x containerd
  while ps -C containerd -o stat= | grep -qv "^Z"; do sleep 0.2; done
  rm -f /var/log/containerd-build.log'
old=$(image_id "$IMAGE")
docker commit \
  -c 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' -c 'CMD []' \
  -c 'ENV container=docker' \
  -c "LABEL $LABEL=$key" "$builder" "$IMAGE" >/dev/null
docker rm -f "$builder" >/dev/null
builder=
drop_old "$IMAGE" "$old"
docker rmi "$pre" >/dev/null
e2e_timing node-image:assemble $((SECONDS - t))

t=$SECONDS
rm -f "$E2E_CACHE"/node/kind-node-"$E2E_K8S_VERSION"-*.tar
docker save "$IMAGE" -o "$archive.tmp" && mv "$archive.tmp" "$archive"
e2e_timing node-image:save-cache $((SECONDS - t))
e2e_timing "node-image(build $IMAGE)" $((SECONDS - total))
echo "$IMAGE"
