#!/usr/bin/env bash
# Fetch ONNX Runtime's C/C++ headers (Debian trixie's libonnxruntime-dev) into
# a local directory, without touching the system's apt configuration.
# The mirror URI and keyring are read from this machine's own apt sources.
#
# usage: scripts/fetch_ort_headers.sh [DEST]   (default: build/ort-headers)
# prints the include directory on success.
set -euo pipefail

dest=${1:-"$(cd "$(dirname "$0")/.." && pwd)/build/ort-headers"}
if [ -f "$dest/include/onnxruntime/onnxruntime_cxx_api.h" ]; then
  echo "$dest/include/onnxruntime"
  exit 0
fi

uri=""
keyring=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  u=$(awk '/^URIs:/ {print $2; exit}' "$f")
  s=$(awk '/^Suites:/ {print $2; exit}' "$f")
  case "$s" in *security*) continue ;; esac
  if [ -n "$u" ]; then
    uri=$u
    keyring=$(awk '/^Signed-By:/ {print $2; exit}' "$f")
    break
  fi
done
if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
  uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
fi
if [ -z "$uri" ]; then
  echo "fetch_ort_headers: no Debian mirror found in /etc/apt/sources.list(.d)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
{
  echo "Types: deb"
  echo "URIs: $uri"
  echo "Suites: trixie"
  echo "Components: main"
  [ -n "$keyring" ] && echo "Signed-By: $keyring"
} >"$work/trixie.sources"

apt_opts=(-o "Dir::Etc::SourceList=$work/trixie.sources" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1
  -o APT::Sandbox::User=root)
echo "fetch_ort_headers: downloading libonnxruntime-dev (Debian trixie)..." >&2
apt-get "${apt_opts[@]}" -qq update >&2
(cd "$work/debs" && apt-get "${apt_opts[@]}" -qq download libonnxruntime-dev >&2)
deb=$(ls "$work"/debs/libonnxruntime-dev_*.deb | head -n 1)
mkdir -p "$work/x"
dpkg -x "$deb" "$work/x"
mkdir -p "$dest/include"
rm -rf "$dest/include/onnxruntime"
cp -r "$work/x/usr/include/onnxruntime" "$dest/include/onnxruntime"
echo "$dest/include/onnxruntime"
