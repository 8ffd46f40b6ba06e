#!/usr/bin/env bash
# Builds the image without pulling a base image, for machines that cannot
# reach a registry: a root filesystem with the static binary, CA certificates
# and a nonroot user, imported with `docker import`.
# The binary keeps its name (/NAME) and is the entrypoint.
# Usage: hack/image-offline.sh IMAGE BINARY [--tar OUT.tar]
set -euo pipefail

image=${1:?image name}
binary=${2:?path to a static stateful-migration binary}
tar_out=""
[[ "${3:-}" == "--tar" ]] && tar_out=${4:?output tar}

if ldd "$binary" >/dev/null 2>&1; then
  echo "error: $binary is dynamically linked; build it with CGO_ENABLED=0 (make build)" >&2
  exit 1
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
name=$(basename "$binary")
install -m 0755 "$binary" "$root/$name"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"

if [[ -n "$tar_out" ]]; then
  tar -C "$root" --numeric-owner -cf "$tar_out" .
  echo "wrote $tar_out" >&2
  exit 0
fi
tar -C "$root" --numeric-owner -c . | docker import \
  --change "ENTRYPOINT [\"/$name\"]" \
  --change 'USER 65532:65532' - "$image"
echo "built $image" >&2
