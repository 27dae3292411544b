#!/usr/bin/env bash
# Builds the native addon in native/ (Rust, napi-rs, wasmtime) in release mode.
#
#   scripts/build-native.sh              build; install native/vvm-native.<platform>.node and
#                                        refresh native/index.js + native/index.d.ts if they changed
#   scripts/build-native.sh --check-dts  build; install the .node, then fail if the generated
#                                        index.d.ts / index.js differ from the committed ones (CI)
#
# Cargo's target dir lives outside the clone ($HOME/.cache/vvm/cargo-target, or
# $CARGO_TARGET_DIR) so fresh clones and CI runs on this machine reuse it: a cold
# wasmtime build is minutes, a no-op one is seconds. napi writes into a staging
# dir there; files are moved into native/ only when their bytes changed, and by
# rename, so a process that has the old .node mapped keeps a valid file.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vvm/cargo-target}"
stage="$CARGO_TARGET_DIR/napi-stage"
napi="$root/node_modules/.bin/napi"

mode=build
case "${1:-}" in
  "") ;;
  --check-dts) mode=check ;;
  *) echo "usage: $0 [--check-dts]" >&2; exit 2 ;;
esac

if [[ ! -x "$napi" ]]; then
  echo "build-native: $napi is missing; run npm ci first" >&2
  exit 1
fi

rm -rf "$stage"
mkdir -p "$stage"
"$napi" build --cwd "$root/native" --platform --release --esm \
  --target-dir "$CARGO_TARGET_DIR" --output-dir "$stage" \
  --js index.js --dts index.d.ts

# Moves $1 over $2 unless they are byte-identical.
install_if_changed() {
  if ! cmp -s "$1" "$2"; then
    cp "$1" "$2.tmp.$$"
    mv -f "$2.tmp.$$" "$2"
    echo "build-native: updated ${2#"$root/"}"
  fi
}

shopt -s nullglob
nodes=("$stage"/*.node)
if (( ${#nodes[@]} != 1 )); then
  echo "build-native: expected one .node in $stage, found ${#nodes[@]}" >&2
  exit 1
fi
install_if_changed "${nodes[0]}" "$root/native/$(basename "${nodes[0]}")"

if [[ $mode == check ]]; then
  status=0
  for file in index.d.ts index.js; do
    if ! diff -u "$root/native/$file" "$stage/$file"; then
      echo "build-native: native/$file is stale; run scripts/build-native.sh and commit it" >&2
      status=1
    fi
  done
  exit $status
fi

install_if_changed "$stage/index.d.ts" "$root/native/index.d.ts"
install_if_changed "$stage/index.js" "$root/native/index.js"
