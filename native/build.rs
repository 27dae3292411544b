//! Build script: napi-rs link setup, plus the exact wasmtime version for the
//! compiled-module cache key (a serialized module is only valid for the
//! wasmtime that wrote it; Cargo.lock is the one source of that version).

use std::fs;

fn main() {
  napi_build::setup();

  println!("cargo:rerun-if-changed=Cargo.lock");
  let lock = fs::read_to_string("Cargo.lock").expect("native/Cargo.lock must exist (it is committed)");
  let version = wasmtime_version(&lock).expect("Cargo.lock has no `wasmtime` package");
  println!("cargo:rustc-env=VVM_WASMTIME_VERSION={version}");
}

/// The `version` line that follows `name = "wasmtime"` in Cargo.lock.
fn wasmtime_version(lock: &str) -> Option<String> {
  let mut lines = lock.lines();
  while let Some(line) = lines.next() {
    if line.trim() == "name = \"wasmtime\"" {
      let next = lines.next()?.trim();
      let version = next.strip_prefix("version = \"")?.strip_suffix('"')?;
      return Some(version.to_owned());
    }
  }
  None
}
