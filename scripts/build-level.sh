#!/usr/bin/env bash
# Builds classic-level's native binding from the sources its npm package ships (binding.cc,
# LevelDB and snappy in deps/) with one addition, native/level/write-now.patch: batch_write_now,
# a batch write on the calling thread instead of libuv's thread pool. vvm's partition workers
# use it to commit inline when they have nothing else to do (docs/architecture.md, "Storage");
# without it they write through the pool as stock classic-level does.
#
#   scripts/build-level.sh           build (or reuse the cached build) and install it as
#                                    node_modules/classic-level/build/Release/classic_level.node,
#                                    which classic-level loads before its prebuilt binaries
#
# The build is cached outside the clone ($HOME/.cache/vvm/classic-level/<key>, the key hashing
# the package version, the patch and the Node ABI), so fresh clones reuse it. It needs a C++
# compiler, node-gyp (npm ships one) and Node's headers next to the node binary (no download).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pkg="$root/node_modules/classic-level"
patch_file="$root/native/level/write-now.patch"

if [[ ! -f "$pkg/binding.cc" ]]; then
  echo "build-level: $pkg/binding.cc is missing; run npm install first" >&2
  exit 1
fi

node_prefix="$(cd "$(dirname "$(command -v node)")/.." && pwd)"
if [[ ! -f "$node_prefix/include/node/node_api.h" ]]; then
  echo "build-level: Node's headers are not in $node_prefix/include/node (a Node install without them cannot build addons offline)" >&2
  exit 1
fi
npm_dir="$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)"
gyp="$npm_dir/node_modules/node-gyp/bin/node-gyp.js"
if [[ ! -f "$gyp" ]]; then
  echo "build-level: npm's node-gyp is not at $gyp" >&2
  exit 1
fi

version="$(node -p "require('$pkg/package.json').version")"
abi="$(node -p 'process.versions.modules + "-" + process.arch + "-" + process.platform')"
key="$(cat "$patch_file" <(echo "$version $abi") | sha256sum | cut -c1-16)"
cache="${VVM_CACHE_DIR:-$HOME/.cache/vvm}/classic-level/$key"
built="$cache/classic_level.node"

if [[ ! -f "$built" ]]; then
  echo "build-level: building classic-level $version with batch_write_now into $cache"
  rm -rf "$cache/src"
  mkdir -p "$cache/src"
  cp -r "$pkg/binding.cc" "$pkg/binding.gyp" "$pkg/deps" "$cache/src/"
  (cd "$cache/src" && patch -p1 --quiet < "$patch_file")
  # binding.gyp asks node for napi-macros' include dir; it resolves from the project's modules.
  (cd "$cache/src" && NODE_PATH="$root/node_modules" node "$gyp" rebuild --nodedir="$node_prefix" -j 2 --loglevel=warn)
  cp "$cache/src/build/Release/classic_level.node" "$built.tmp"
  mv "$built.tmp" "$built"
  rm -rf "$cache/src"
fi

mkdir -p "$pkg/build/Release"
if ! cmp -s "$built" "$pkg/build/Release/classic_level.node"; then
  cp "$built" "$pkg/build/Release/classic_level.node.tmp"
  mv "$pkg/build/Release/classic_level.node.tmp" "$pkg/build/Release/classic_level.node"
fi
node -e "
const b = require('$pkg/binding.js')
if (typeof b.batch_write_now !== 'function') { console.error('build-level: the installed binding has no batch_write_now'); process.exit(1) }
console.log('build-level: classic-level $version with batch_write_now installed')
"
