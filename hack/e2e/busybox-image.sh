#!/usr/bin/env bash
# Prints the tag of a tiny local image (Debian's busybox-static, `docker import`ed), building it
# if missing. Used to probe the Docker engine and as the test pod's image: it needs no registry.
set -euo pipefail
E2E_SCRIPT=busybox-image
source "$(dirname "$0")/lib.sh"

tag=stateful-migration/busybox:local
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi

tarball=$E2E_CACHE/busybox-rootfs.tar
if [[ ! -s $tarball ]]; then
  mkdir -p "$E2E_CACHE"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # Download the package (from apt's configured sources) rather than install it.
  (cd "$work" && apt-get download -qq busybox-static >&2) ||
    { apt-get update -qq >&2 && (cd "$work" && apt-get download -qq busybox-static >&2); }
  dpkg-deb -x "$work"/busybox-static_*.deb "$work/deb"
  root=$work/root
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/data"
  chmod 1777 "$root/tmp"
  cp "$work/deb/bin/busybox" "$root/bin/busybox"
  for a in $("$root/bin/busybox" --list); do
    [[ $a == busybox ]] || ln -sf busybox "$root/bin/$a"
  done
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
  tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' "$tarball" "$tag" >/dev/null
e2e_log "imported $tag"
echo "$tag"
