#!/usr/bin/env bash
# Prints the path of a Debian root filesystem tarball for the kind node image (and for images
# that need iptables, like kube-proxy), built with debootstrap and cached by suite + package list.
# The mirror is the one this machine's apt is configured with (read at run time).
set -euo pipefail
E2E_SCRIPT=rootfs
source "$(dirname "$0")/lib.sh"

PACKAGES=systemd,systemd-sysv,dbus,containerd,runc,containernetworking-plugins,iptables,nftables,conntrack,iproute2,mount,util-linux,procps,kmod,ca-certificates,socat,ethtool,ebtables,bash,libseccomp2
suite=${E2E_DEBIAN_SUITE:-$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")}
suite=${suite:-bookworm}
key=$(echo "$suite $PACKAGES" | sha256sum | cut -c1-12)
tarball=$E2E_CACHE/rootfs/debian-$suite-$key.tar
if [[ -s $tarball ]]; then echo "$tarball"; exit 0; fi
e2e_lock rootfs
if [[ -s $tarball ]]; then echo "$tarball"; exit 0; fi

# The first Debian archive URI in apt's sources that serves $suite (not the security archive).
apt_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk -v s="$suite" '
      /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
      END { if (uri != "" && ok) print uri }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    awk -v s="$suite" '$1 == "deb" { u = ($2 ~ /^\[/) ? $3 : $2; d = ($2 ~ /^\[/) ? $4 : $3; if (d == s) print u }' "$f"
  done
}
mirror=${E2E_DEBIAN_MIRROR:-$(apt_mirror | head -1)}
[[ -n $mirror ]] || e2e_die "no apt source serving Debian $suite found; set E2E_DEBIAN_MIRROR"

sudo=
[[ $(id -u) == 0 ]] || sudo=sudo
if ! command -v debootstrap >/dev/null; then
  e2e_log "installing debootstrap"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq debootstrap >&2
fi

start=$SECONDS
mkdir -p "$E2E_CACHE/rootfs"
rm -rf "$E2E_CACHE"/rootfs/.build.*
work=$(mktemp -d "$E2E_CACHE/rootfs/.build.XXXXXX")
trap '$sudo rm -rf "$work"' EXIT
e2e_log "debootstrap $suite (minbase + $PACKAGES) from apt's configured mirror"
$sudo "${NICE[@]}" debootstrap --variant=minbase --include="$PACKAGES" "$suite" "$work/root" "$mirror" \
  >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; e2e_die "debootstrap failed"; }
# Smaller image: no package lists, caches or docs.
$sudo rm -rf "$work"/root/var/lib/apt/lists/* "$work"/root/var/cache/apt/*.bin \
  "$work"/root/var/cache/apt/archives/*.deb "$work"/root/usr/share/doc/* "$work"/root/usr/share/man/*
$sudo tar -C "$work/root" --numeric-owner -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$tarball"
e2e_timing "rootfs($suite)" $((SECONDS - start))
echo "$tarball"
