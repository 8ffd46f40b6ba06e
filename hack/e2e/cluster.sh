#!/usr/bin/env bash
# kind clusters for the e2e suite, online (kindest/node pulled) or offline (node image built
# here by node-image.sh), same commands:
#   hack/e2e/cluster.sh up NAME      create (or reuse) cluster NAME, wait for its node Ready
#   hack/e2e/cluster.sh smoke NAME   run a pod that writes and reads back a PVC (emptyDir if
#                                    the cluster has no default StorageClass)
#   hack/e2e/cluster.sh down NAME    delete it
#   hack/e2e/cluster.sh kubeconfig NAME   print its kubeconfig path
# Host quirks are detected, never assumed: the runc wrapper goes into the node's containerd
# only when docker.sh installed it for dockerd; failCgroupV1: false only on cgroup v1 hosts.
set -euo pipefail
E2E_SCRIPT=cluster
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

cmd=${1:?usage: cluster.sh up|smoke|down|kubeconfig NAME}
name=${2:?cluster name}
state=$E2E_CACHE/clusters
kubeconfig=$state/$name.kubeconfig
export PATH=$E2E_BIN:$PATH

# The node container is the truth (kind get clusters can come back empty while Docker is busy).
exists() { docker container inspect "$name-control-plane" >/dev/null 2>&1; }
running() { [[ $(docker container inspect -f '{{.State.Running}}' "$name-control-plane" 2>/dev/null) == true ]]; }

up() {
  local start=$SECONDS t
  t=$SECONDS; "$here/docker.sh"; e2e_timing "cluster-up:docker" $((SECONDS - t))
  t=$SECONDS; "$here/tools.sh" kind kubectl >/dev/null; e2e_timing "cluster-up:tools" $((SECONDS - t))
  t=$SECONDS; image=$("$here/node-image.sh"); e2e_timing "cluster-up:node-image" $((SECONDS - t))
  mkdir -p "$state"
  if exists && ! running; then
    # A stopped node (Docker restarted, machine rebooted) does not come back reliably: start over.
    e2e_log "cluster $name exists but its node is not running; recreating it"
    kind delete cluster --name "$name" >&2
  fi
  if exists; then
    e2e_log "cluster $name exists; reusing it"
    kind get kubeconfig --name "$name" >"$kubeconfig"
  else
    local cfg=$state/$name.kind.yaml patches=() containerd_patches=()
    if [[ ! -f /sys/fs/cgroup/cgroup.controllers ]]; then
      e2e_log "host on cgroup v1: kubelet gets failCgroupV1: false (required from 1.35)"
      patches+=("kind: KubeletConfiguration
      failCgroupV1: false")
    fi
    if [[ $(docker info --format '{{.DefaultRuntime}}') == runc-nocap ]]; then
      e2e_log "host quirk (no CAP_SYS_RESOURCE): node containerd runs pods through the runc wrapper"
      docker run --rm --entrypoint /bin/sh "$image" -c 'test -x /usr/local/sbin/runc-nocap' 2>/dev/null ||
        e2e_die "$image has no /usr/local/sbin/runc-nocap; on this host only node images built by node-image.sh work (set E2E_OFFLINE=1)"
      containerd_patches+=('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/local/sbin/runc-nocap"')
    fi
    {
      echo "kind: Cluster"
      echo "apiVersion: kind.x-k8s.io/v1alpha4"
      echo "name: $name"
      echo "nodes:"
      echo "  - role: control-plane"
      echo "    image: $image"
      if ((${#patches[@]})); then
        echo "kubeadmConfigPatches:"
        for p in "${patches[@]}"; do printf '  - |\n      %s\n' "$p"; done
      fi
      if ((${#containerd_patches[@]})); then
        echo "containerdConfigPatches:"
        for p in "${containerd_patches[@]}"; do printf '  - |-\n      %s\n' "$p"; done
      fi
    } >"$cfg"
    e2e_log "creating kind cluster $name ($image)"
    t=$SECONDS
    local retain=()
    [[ ${E2E_RETAIN:-0} != 1 ]] || retain=(--retain)
    kind create cluster --config "$cfg" --kubeconfig "$kubeconfig" "${retain[@]}" >&2
    e2e_timing "cluster-up:kind-create($name)" $((SECONDS - t))
  fi
  t=$SECONDS
  kubectl --kubeconfig "$kubeconfig" wait --for=condition=Ready node --all --timeout=300s >&2
  e2e_timing "cluster-up:node-ready($name)" $((SECONDS - t))
  e2e_timing "cluster-up($name)" $((SECONDS - start))
  e2e_log "kubeconfig: $kubeconfig"
}

smoke() {
  local k=(kubectl --kubeconfig "$kubeconfig") start=$SECONDS img ns=e2e-smoke vol
  [[ -s $kubeconfig ]] || e2e_die "no cluster $name (run: cluster.sh up $name)"
  img=$("$here/busybox-image.sh")
  kind load docker-image "$img" --name "$name" >&2
  "${k[@]}" delete namespace "$ns" --ignore-not-found --wait >&2
  "${k[@]}" create namespace "$ns" >&2
  if "${k[@]}" get storageclass -o jsonpath='{range .items[*]}{.metadata.annotations.storageclass\.kubernetes\.io/is-default-class}{"\n"}{end}' | grep -qx true; then
    vol="persistentVolumeClaim: {claimName: data}"
    "${k[@]}" -n "$ns" apply -f - >&2 <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
YAML
  else
    e2e_log "no default StorageClass: the smoke pod uses an emptyDir"
    vol="emptyDir: {}"
  fi
  "${k[@]}" -n "$ns" apply -f - >&2 <<YAML
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  restartPolicy: Never
  containers:
    - name: writer
      image: $img
      imagePullPolicy: IfNotPresent
      # Records on the volume, then DNS: a Service name (CoreDNS) and the node's Docker name
      # (CoreDNS forwarding to Docker's DNS, what cross-cluster names will need).
      command: [sh, -c, 'seq 1 1000 > /data/records && sync && wc -l < /data/records && md5sum /data/records && nslookup kubernetes.default.svc.cluster.local && nslookup $name-control-plane.']
      volumeMounts: [{name: data, mountPath: /data}]
  volumes:
    - name: data
      $vol
YAML
  local phase=
  for _ in $(seq 1 120); do
    phase=$("${k[@]}" -n "$ns" get pod writer -o jsonpath='{.status.phase}')
    [[ $phase == Succeeded || $phase == Failed ]] && break
    sleep 2
  done
  "${k[@]}" -n "$ns" get pod,pvc -o wide >&2 || true
  local out
  out=$("${k[@]}" -n "$ns" logs writer 2>&1 || true)
  echo "$out" >&2
  if [[ $phase != Succeeded || $(head -1 <<<"$out") != 1000 ]]; then
    "${k[@]}" -n "$ns" describe pod writer >&2 || true
    e2e_die "smoke pod did not write its records (phase ${phase:-unknown})"
  fi
  "${k[@]}" delete namespace "$ns" --wait >&2
  e2e_timing "cluster-smoke($name,${vol%%:*})" $((SECONDS - start))
}

down() {
  if exists; then
    kind delete cluster --name "$name" >&2
  fi
  rm -f "$kubeconfig" "$state/$name.kind.yaml"
}

case $cmd in
up) up ;;
smoke) smoke ;;
down) down ;;
kubeconfig) echo "$kubeconfig" ;;
*) e2e_die "unknown command $cmd" ;;
esac
