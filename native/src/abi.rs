//! The VVM guest ABI, byte by byte (native/README.md, "The ABI").
//!
//! Guest exports: `memory`, `vvm_alloc(size: i32) -> i32`, and entry points
//! `(ptr: i32, len: i32) -> i64`. Guest imports: `vvm.host(op: i32, ptr: i32,
//! len: i32) -> i64`. An i64 result packs a byte range of guest memory:
//!
//! ```text
//!  bit 63     bits 62..32        bits 31..0
//!  error?     ptr (31 bits)      len (32 bits)
//! ```
//!
//! `ptr` has 31 bits because linear memory is capped at 2 GiB
//! (`MEMORY_BYTES_LIMIT`), which keeps every success value non-negative.

use std::ops::Range;

use crate::errors::Fault;

/// Name of the module every host import lives in, and of the one import.
pub const HOST_MODULE: &str = "vvm";
pub const HOST_FUNC: &str = "host";
/// Required guest exports.
pub const MEMORY_EXPORT: &str = "memory";
pub const ALLOC_EXPORT: &str = "vvm_alloc";

/// `vvm.host` returns this when the JS callback answered `null`/`undefined`.
pub const HOST_ABSENT: i64 = -1;

/// The largest memory the ABI can address: ptr must fit in 31 bits.
pub const MEMORY_BYTES_LIMIT: u64 = 1 << 31;

/// A guest error message longer than this is cut: the message is for logs,
/// and a guest must not be able to make the host copy its whole memory.
pub const GUEST_ERROR_BYTES_MAX: usize = 4096;

const ERROR_FLAG: u64 = 1 << 63;

/// What an entry point returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
  Ok { ptr: u32, len: u32 },
  Err { ptr: u32, len: u32 },
}

/// `ptr << 32 | len`; `ptr` must be below 2^31 (guaranteed by the memory cap).
pub fn pack(ptr: u32, len: u32) -> i64 {
  debug_assert!(u64::from(ptr) < MEMORY_BYTES_LIMIT, "ptr {ptr} above the ABI's 31 bits");
  ((u64::from(ptr) << 32) | u64::from(len)) as i64
}

pub fn unpack(result: i64) -> Outcome {
  let bits = result as u64;
  let ptr = ((bits & !ERROR_FLAG) >> 32) as u32;
  let len = bits as u32;
  if bits & ERROR_FLAG == 0 {
    Outcome::Ok { ptr, len }
  } else {
    Outcome::Err { ptr, len }
  }
}

/// The byte range `ptr..ptr+len` if it lies inside a memory of `memory_len`
/// bytes; otherwise a `BadPointer` fault naming `what`. All arithmetic is in
/// u64, so no guest value can overflow it.
pub fn checked_range(memory_len: usize, ptr: u32, len: u32, what: &str) -> Result<Range<usize>, Fault> {
  let end = u64::from(ptr) + u64::from(len);
  if end > memory_len as u64 {
    return Err(Fault::BadPointer(format!(
      "{what}: ptr={ptr} len={len} is outside guest memory of {memory_len} bytes"
    )));
  }
  Ok(ptr as usize..end as usize)
}
