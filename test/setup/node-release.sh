#!/usr/bin/env bash
# Prints the bin folder of the newest Node release of a major line (`bash test/setup/node-release.sh 24`), from npm's
# node-linux-<arch> package (Node's own binary, repackaged), fetched once into a cache folder: .ci/run's test:unit on
# each LTS line, and test/deploy-run.test.ts's run of the image's app on the Node its Dockerfile names.
# TOLLGATE_NODE_CACHE moves the cache (default: $TMPDIR/tollgate-node, one folder per major).
set -euo pipefail

major="${1:?usage: node-release.sh MAJOR (e.g. 24)}"
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "node-release.sh: no node-linux package for $(uname -m)" >&2 && exit 1 ;;
esac
cache="${TOLLGATE_NODE_CACHE:-${TMPDIR:-/tmp}/tollgate-node}"
dir="$cache/$major"

if [ ! -x "$dir/bin/node" ]; then
  mkdir -p "$cache"
  fetch="$(mktemp -d "$cache/.fetch-$major-XXXXXX")"
  trap 'rm -rf "$fetch"' EXIT
  tarball="$(cd "$fetch" && npm pack --silent --loglevel=error "node-linux-$arch@$major")"
  tar -xzf "$fetch/$tarball" -C "$fetch"
  "$fetch/package/bin/node" --version >/dev/null
  # Readable by every user (the deploy test runs it as the image's uid); moved into place whole.
  chmod 755 "$fetch/package"
  rm -rf "$dir"
  mv "$fetch/package" "$dir"
fi
echo "$dir/bin"
