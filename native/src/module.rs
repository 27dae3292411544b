//! `WasmModule`: a compiled module, and the check that it fits the VVM ABI
//! before any instance is made from it.

use std::sync::Arc;

use napi::Env;
use napi_derive::napi;
use wasmtime::{ExternType, FuncType, Linker, Module, ValType};

use crate::abi::{ALLOC_EXPORT, MEMORY_EXPORT};
use crate::cache::Compiled;
use crate::engine::Shared;
use crate::errors::{guard, Code, VvmError, VvmResult};
use crate::instance::{link_host, StoreData, WasmInstancePre};

#[napi]
pub struct WasmModule {
  shared: Arc<Shared>,
  module: Module,
  sha256: String,
  from_cache: bool,
  cache_error: Option<String>,
}

impl WasmModule {
  pub fn new(shared: Arc<Shared>, compiled: Compiled) -> Self {
    WasmModule {
      shared,
      module: compiled.module,
      sha256: compiled.sha256,
      from_cache: compiled.from_cache,
      cache_error: compiled.cache_error,
    }
  }
}

#[napi]
impl WasmModule {
  /// True when the compiled code came from `cacheDir` instead of compiling.
  #[napi(getter, js_name = "fromCache")]
  pub fn is_from_cache(&self) -> bool {
    self.from_cache
  }

  /// Hex sha256 of the module bytes (the cache key's first part).
  #[napi(getter)]
  pub fn sha256(&self) -> String {
    self.sha256.clone()
  }

  /// Why the compiled module could not be written to `cacheDir`; null when it
  /// was written or there is no cache.
  #[napi(getter)]
  pub fn cache_error(&self) -> Option<String> {
    self.cache_error.clone()
  }

  /// Exported functions with the entry-point signature `(i32, i32) -> i64`.
  #[napi(getter)]
  pub fn entry_points(&self) -> Vec<String> {
    self
      .module
      .exports()
      .filter(|export| match export.ty() {
        ExternType::Func(ty) => is_entry_point(&ty),
        _ => false,
      })
      .map(|export| export.name().to_owned())
      .collect()
  }

  /// Checks the module against the ABI and links the host import once.
  /// Instances are then made from the result quickly and repeatedly.
  #[napi]
  pub fn instantiate_pre(&self, env: &Env) -> napi::Result<WasmInstancePre> {
    guard(|| {
      check_abi(&self.module)?;
      let mut linker: Linker<StoreData> = Linker::new(&self.shared.engine);
      link_host(&mut linker)?;
      let pre = linker
        .instantiate_pre(&self.module)
        .map_err(|err| VvmError::new(Code::Link, format!("{err:#}")))?;
      Ok(WasmInstancePre::new(self.shared.clone(), pre))
    })
    .map_err(|err| err.into_js(env))
  }
}

pub fn is_entry_point(ty: &FuncType) -> bool {
  let params: Vec<ValType> = ty.params().collect();
  let results: Vec<ValType> = ty.results().collect();
  matches!(params.as_slice(), [ValType::I32, ValType::I32]) && matches!(results.as_slice(), [ValType::I64])
}

fn check_abi(module: &Module) -> VvmResult<()> {
  match module.get_export(MEMORY_EXPORT) {
    Some(ExternType::Memory(memory)) => {
      // (A minimum over memoryBytesMax never gets here: the pooling
      // allocator refuses such a module at compile time.)
      if memory.is_64() || memory.is_shared() {
        return Err(VvmError::new(Code::Link, "export `memory` must be a 32-bit, unshared memory"));
      }
    }
    _ => return Err(VvmError::new(Code::Link, "module must export `memory`")),
  }
  match module.get_export(ALLOC_EXPORT) {
    Some(ExternType::Func(ty)) => {
      let params: Vec<ValType> = ty.params().collect();
      let results: Vec<ValType> = ty.results().collect();
      if !(matches!(params.as_slice(), [ValType::I32]) && matches!(results.as_slice(), [ValType::I32])) {
        return Err(VvmError::new(Code::Link, "export `vvm_alloc` must be (i32) -> i32"));
      }
    }
    _ => return Err(VvmError::new(Code::Link, "module must export function `vvm_alloc`")),
  }
  Ok(())
}
