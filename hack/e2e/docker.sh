#!/usr/bin/env bash
# Ensures a working Docker engine for kind:
#  - uses the running engine if `docker info` works;
#  - otherwise installs Debian's docker.io (apt's configured sources) and starts dockerd
#    (systemd if it runs, else by hand with a log under $E2E_CACHE);
#  - probes a privileged container. Only if it fails with the capability error seen on VMs
#    whose bounding set lacks CAP_SYS_RESOURCE, installs hack/e2e/runc-wrapper as dockerd's
#    default runtime and probes again. A normal machine is left untouched.
# Prints nothing on stdout; writes the detected quirks to $E2E_CACHE/host-quirks.
set -euo pipefail
E2E_SCRIPT=docker
source "$(dirname "$0")/lib.sh"
mkdir -p "$E2E_CACHE"

WRAPPER=/usr/local/sbin/runc-nocap
sudo=
[[ $(id -u) == 0 ]] || sudo=sudo
has_systemd() { [[ -d /run/systemd/system ]]; }

wait_docker() {
  local i
  for i in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

start_dockerd() {
  if has_systemd; then
    $sudo systemctl start docker
  else
    # No init system to manage it: start it in its own session, log to a file.
    e2e_log "starting dockerd (log: $E2E_CACHE/dockerd.log)"
    $sudo setsid nohup dockerd >>"$E2E_CACHE/dockerd.log" 2>&1 </dev/null &
    echo $! >"$E2E_CACHE/dockerd.pid"
  fi
  wait_docker || e2e_die "dockerd did not become ready; see $E2E_CACHE/dockerd.log"
}

restart_dockerd() {
  if has_systemd; then
    $sudo systemctl restart docker
  else
    local pid
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    [[ -n $pid ]] || e2e_die "dockerd runs without systemd and without /var/run/docker.pid; restart it by hand"
    $sudo kill "$pid"
    for _ in $(seq 1 30); do $sudo kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    start_dockerd
  fi
  wait_docker || e2e_die "dockerd did not come back"
}

start=$SECONDS
if ! docker info >/dev/null 2>&1; then
  if ! command -v dockerd >/dev/null; then
    e2e_log "no Docker engine: installing Debian's docker.io"
    $sudo apt-get update -qq
    # Without systemd the package's service start fails harmlessly; we start dockerd below.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker.io >&2 ||
      command -v dockerd >/dev/null || e2e_die "apt-get install docker.io failed"
  fi
  start_dockerd
fi
e2e_log "docker engine: $(docker version --format '{{.Server.Version}}'), cgroup driver $(docker info --format '{{.CgroupDriver}}') v$(docker info --format '{{.CgroupVersion}}')"

probe=$("$(dirname "$0")/busybox-image.sh")
probe_privileged() { docker run --rm --privileged "$probe" true 2>&1; }

if [[ $(docker info --format '{{.DefaultRuntime}}') == runc-nocap ]]; then
  # Installed by an earlier run: the quirk was detected then.
  out=$(probe_privileged) || e2e_die "privileged container fails with the wrapper: $out"
  e2e_log "privileged containers work through $WRAPPER (installed earlier)"
  echo "no-cap-sys-resource" >"$E2E_CACHE/host-quirks"
elif out=$(probe_privileged); then
  e2e_log "privileged containers work"
  echo "privileged-ok" >"$E2E_CACHE/host-quirks"
elif grep -q 'apply caps' <<<"$out"; then
  e2e_log "privileged container fails ($out)"
  e2e_log "quirk: capability bounding set lacks CAP_SYS_RESOURCE; installing $WRAPPER as dockerd's default runtime"
  real=$(command -v runc || echo /usr/sbin/runc)
  [[ $real != "$WRAPPER" ]] || e2e_die "runc resolves to the wrapper itself"
  (cd "$(dirname "$0")/runc-wrapper" && e2e_go_env &&
    go build -trimpath -ldflags "-s -w -X main.realRunc=$real" -o "$E2E_CACHE/runc-nocap" .)
  $sudo install -m 0755 "$E2E_CACHE/runc-nocap" "$WRAPPER"
  conf=/etc/docker/daemon.json
  $sudo mkdir -p /etc/docker
  if [[ -s $conf ]] && ! grep -q runc-nocap "$conf"; then
    $sudo cp "$conf" "$conf.before-runc-nocap"
    e2e_die "$conf already has settings (kept as is); add runtimes.runc-nocap.path=$WRAPPER and default-runtime=runc-nocap by hand"
  fi
  echo "{\"runtimes\": {\"runc-nocap\": {\"path\": \"$WRAPPER\"}}, \"default-runtime\": \"runc-nocap\"}" | $sudo tee "$conf" >/dev/null
  restart_dockerd
  out=$(probe_privileged) || e2e_die "privileged container still fails with the wrapper: $out"
  e2e_log "privileged containers work through $WRAPPER"
  echo "no-cap-sys-resource" >"$E2E_CACHE/host-quirks"
else
  e2e_die "privileged container fails for another reason: $out"
fi
e2e_timing docker $((SECONDS - start))
