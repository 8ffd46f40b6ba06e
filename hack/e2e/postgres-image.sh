#!/usr/bin/env bash
# Prints the tag of a local PostgreSQL image built from Debian's packages (the server and
# psql with the libraries they load, on the busybox rootfs of busybox-image.sh), building it
# if missing. Nothing is installed on this machine: the packages are downloaded and unpacked.
set -euo pipefail
E2E_SCRIPT=postgres-image
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

major=$(apt-cache depends postgresql 2>/dev/null | awk '/Depends: postgresql-[0-9]+$/{sub("postgresql-", "", $2); print $2; exit}')
[[ -n $major ]] || { apt-get update -qq >&2; major=$(apt-cache depends postgresql | awk '/Depends: postgresql-[0-9]+$/{sub("postgresql-", "", $2); print $2; exit}'); }
[[ -n $major ]] || e2e_die "no postgresql-NN package in apt's sources"
tag=stateful-migration/postgres:$major
if docker image inspect "$tag" >/dev/null 2>&1; then echo "$tag"; exit 0; fi

e2e_lock postgres-image
tarball=$E2E_CACHE/postgres-$major-rootfs.tar
if [[ ! -s $tarball ]]; then
  "$here/busybox-image.sh" >/dev/null # caches the busybox rootfs this image starts from
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  chmod 755 "$work" # apt downloads as its own user
  # The server, psql and every library in their dependency closure; not the JIT's LLVM
  # (jit=off), nor the maintainer scripts' perl and debconf (nothing is configured by dpkg).
  pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances \
    "postgresql-$major" "postgresql-client-$major" tzdata | grep -E '^[a-z0-9]' | sort -u |
    grep -E "^(lib|zlib1g\$|gcc-[0-9]+-base\$|postgresql-(client-)?$major\$|tzdata\$)" | grep -vE '^(libllvm|libz3-)')
  # shellcheck disable=SC2086
  (cd "$work" && apt-get download -qq $pkgs >&2)
  root=$work/root
  mkdir -p "$root"
  tar -C "$root" -xf "$E2E_CACHE/busybox-rootfs.tar"
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$root"; done
  rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale"
  printf 'root:x:0:0:root:/:/bin/sh\npostgres:x:999:999:postgres:/data:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\npostgres:x:999:\nnobody:x:65534:\n' >"$root/etc/group"
  mkdir -p "$root/run/postgresql" && chmod 1777 "$root/run/postgresql"
  # The server must start here, or the image is broken: initdb and one query.
  bin=$root/usr/lib/postgresql/$major/bin
  missing=$(for f in "$bin"/*; do LD_LIBRARY_PATH=$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu ldd "$f" 2>/dev/null; done | grep 'not found' | sort -u || true)
  [[ -z $missing ]] || e2e_die "libraries missing from the image: $missing"
  tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
docker import -c "ENV PATH=/usr/lib/postgresql/$major/bin:/bin LANG=C TZ=UTC" -c 'USER 999' -c 'CMD ["/bin/sh"]' "$tarball" "$tag" >/dev/null
e2e_log "imported $tag"
echo "$tag"
