//! A store's resource limits: memory and table growth past the configured
//! maximum trap with a coded fault (both answered WASM_MEMORY_LIMIT), and a
//! store holds one instance with one memory and one table.

use wasmtime::ResourceLimiter;

use crate::errors::Fault;

/// The limits of one store, checked by wasmtime whenever the guest grows its
/// memory or table.
pub struct Limiter {
  pub memory_bytes_max: usize,
  pub table_elements_max: usize,
}

impl ResourceLimiter for Limiter {
  // Growing past the limit traps (instead of memory.grow returning -1), so an
  // operator sees WASM_MEMORY_LIMIT rather than whatever a guest does with -1.
  fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
    if desired > self.memory_bytes_max {
      return Err(Fault::MemoryLimit { desired_bytes: desired, max_bytes: self.memory_bytes_max }.into());
    }
    Ok(true)
  }

  fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
    if desired > self.table_elements_max {
      return Err(Fault::TableLimit { desired_elements: desired, max_elements: self.table_elements_max }.into());
    }
    Ok(true)
  }

  // One module per store: no instance, table or memory beyond its own.
  fn instances(&self) -> usize {
    1
  }
  fn tables(&self) -> usize {
    1
  }
  fn memories(&self) -> usize {
    1
  }
}
