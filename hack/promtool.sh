#!/usr/bin/env bash
# Prints the path of a promtool, taken from Debian's prometheus package and
# cached: the package is unpacked, not installed (installing it starts a
# Prometheus server). stdout carries only the path.
set -euo pipefail
dir=${PROMTOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stateful-migration/promtool}
if command -v promtool >/dev/null; then
  command -v promtool
  exit 0
fi
if [[ -x $dir/promtool ]]; then
  echo "$dir/promtool"
  exit 0
fi
mkdir -p "$dir"
work=$(mktemp -d)
chmod 755 "$work" # apt-get download runs as _apt where it can
trap 'rm -rf "$work"' EXIT
sudo=
[[ $(id -u) == 0 ]] || sudo=sudo
{
  $sudo apt-get update -qq
  cd "$work"
  apt-get download -qq prometheus
  dpkg-deb -x prometheus_*.deb root
} >&2
cp "$work/root/usr/bin/promtool" "$dir/promtool.tmp"
mv "$dir/promtool.tmp" "$dir/promtool"
echo "$dir/promtool"
