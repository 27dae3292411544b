//! Compile once: compiled modules are kept in `cacheDir`, one file per
//! (module bytes, wasmtime version, engine settings).

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Module;

use crate::engine::Shared;
use crate::errors::{Code, VvmError, VvmResult};
use crate::WASMTIME_VERSION;

pub struct Compiled {
  pub module: Module,
  /// Hex sha256 of the module bytes.
  pub sha256: String,
  pub from_cache: bool,
  /// Why the compiled module could not be stored, if it could not. The
  /// module itself is fine; the next compile will just compile again.
  pub cache_error: Option<String>,
}

pub fn compile_cached(shared: &Shared, bytes: &[u8]) -> VvmResult<Compiled> {
  let sha256 = hex(&Sha256::digest(bytes));
  let Some(dir) = &shared.cache_dir else {
    let module = compile(shared, bytes)?;
    return Ok(Compiled { module, sha256, from_cache: false, cache_error: None });
  };

  let path = cache_path(dir, &sha256, shared);
  // Read, not `Module::deserialize_file`: that maps the file, and a mapped
  // file truncated by anyone (an operator, a test) kills the process with
  // SIGBUS the next time its code runs. A read copy cannot change under us.
  if let Ok(serialized) = fs::read(&path) {
    // SAFETY: `deserialize` loads these bytes as machine code, so they must
    // come from `Module::serialize` of a compatible wasmtime. They do: only
    // `store` below writes into cacheDir (which the server owns and must not
    // share), the file name carries the sha256 of the module bytes, the
    // wasmtime version and the engine's compatibility hash, and wasmtime
    // itself re-checks version and settings in the header.
    // On error (a stale or damaged entry) compile again and replace it below.
    if let Ok(module) = unsafe { Module::deserialize(&shared.engine, &serialized) } {
      return Ok(Compiled { module, sha256, from_cache: true, cache_error: None });
    }
  }

  let module = compile(shared, bytes)?;
  let cache_error = store(&module, &path).err();
  Ok(Compiled { module, sha256, from_cache: false, cache_error })
}

fn compile(shared: &Shared, bytes: &[u8]) -> VvmResult<Module> {
  Module::from_binary(&shared.engine, bytes).map_err(|err| {
    let message = format!("{err:#}");
    // The pooling allocator rejects, at compile time, a module whose declared
    // memory or table minimum is over the engine's limits. wasmtime has no
    // error type for it, only this wording (pinned by the test "module over
    // the memory limit"): a limit, not a malformed module.
    let code = if message.contains("pooling allocator") { Code::MemoryLimit } else { Code::Compile };
    VvmError::new(code, message)
  })
}

/// `<sha256>-wasmtime<version>-<engine settings hash>.cwasm`
fn cache_path(dir: &Path, sha256: &str, shared: &Shared) -> PathBuf {
  let mut hasher = DefaultHasher::new();
  shared.engine.precompile_compatibility_hash().hash(&mut hasher);
  dir.join(format!("{sha256}-wasmtime{WASMTIME_VERSION}-{:016x}.cwasm", hasher.finish()))
}

/// Write-then-rename: readers (other workers, other processes) see either no
/// file or a whole one.
fn store(module: &Module, path: &Path) -> Result<(), String> {
  let bytes = module.serialize().map_err(|err| format!("serialize: {err:#}"))?;
  // Unique per process and per write, so concurrent writers never share one.
  static WRITES: AtomicU64 = AtomicU64::new(0);
  let tmp = path.with_extension(format!(
    "tmp-{}-{}",
    std::process::id(),
    WRITES.fetch_add(1, Ordering::Relaxed)
  ));
  fs::write(&tmp, &bytes).map_err(|err| format!("write {}: {err}", tmp.display()))?;
  fs::rename(&tmp, path).map_err(|err| {
    let _ = fs::remove_file(&tmp);
    format!("rename to {}: {err}", path.display())
  })
}

fn hex(bytes: &[u8]) -> String {
  const DIGITS: &[u8; 16] = b"0123456789abcdef";
  let mut out = String::with_capacity(bytes.len() * 2);
  for byte in bytes {
    out.push(DIGITS[usize::from(byte >> 4)] as char);
    out.push(DIGITS[usize::from(byte & 0xf)] as char);
  }
  out
}
