#!/usr/bin/env bash
# Builds classic-level's native binding from the sources its npm package ships (binding.cc,
# LevelDB and snappy in deps/) with two additions, the patches in native/level/ applied in
# order: write-now.patch (batch_write_now, a batch write on the calling thread instead of
# libuv's thread pool: vvm's partition workers commit inline when they have nothing else to do)
# and put-packed.patch (batch_put_packed, a whole commit's puts in one call from one buffer,
# without the copies and the JS of a put per item); docs/architecture.md, "Storage". Without
# them vvm writes through the pool, a put per item, as with stock classic-level.
#
#   scripts/build-level.sh           build (or reuse the cached build) and install it as
#                                    node_modules/classic-level/build/Release/classic_level.node,
#                                    which classic-level loads before its prebuilt binaries
#
# The build is cached outside the clone ($HOME/.cache/vvm/classic-level/<key>, the key hashing
# the package version, the patches and the Node ABI), so fresh clones reuse it. It needs a C++
# compiler, node-gyp (npm ships one) and Node's headers next to the node binary (no download).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pkg="$root/node_modules/classic-level"
patches=("$root/native/level/write-now.patch" "$root/native/level/put-packed.patch")

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
key="$(cat "${patches[@]}" <(echo "$version $abi") | sha256sum | cut -c1-16)"
cache="${VVM_CACHE_DIR:-$HOME/.cache/vvm}/classic-level/$key"
built="$cache/classic_level.node"

if [[ ! -f "$built" ]]; then
  echo "build-level: building classic-level $version with batch_write_now and batch_put_packed into $cache"
  rm -rf "$cache/src"
  mkdir -p "$cache/src"
  cp -r "$pkg/binding.cc" "$pkg/binding.gyp" "$pkg/deps" "$cache/src/"
  for p in "${patches[@]}"; do (cd "$cache/src" && patch -p1 --quiet < "$p"); done
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
for (const f of ['batch_write_now', 'batch_put_packed']) {
  if (typeof b[f] !== 'function') { console.error('build-level: the installed binding has no ' + f); process.exit(1) }
}
console.log('build-level: classic-level $version with batch_write_now and batch_put_packed installed')
"
