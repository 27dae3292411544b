//! Coded errors, mapped once. Every failure that reaches JS is an `Error` whose
//! `code` is one of [`Code`]; wasmtime errors are classified here and nowhere
//! else.

use std::fmt;

use wasmtime::{PoolConcurrencyLimitError, Trap};

/// The `code` property of every error the addon throws (see native/README.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
  /// The call ran past its epoch deadline.
  Deadline,
  /// Linear memory (or a table) would grow past the engine's limit.
  MemoryLimit,
  /// The pooling allocator has no free instance slot (`instancesMax`).
  InstanceLimit,
  /// A wasm trap: unreachable, out-of-bounds access, stack overflow, ...
  Trap,
  /// The guest handed the host a pointer/length outside its memory.
  BadPointer,
  /// The JS host callback threw or returned something that is not bytes.
  HostError,
  /// The guest returned an error result (sign bit set) with its message.
  GuestError,
  /// The bytes are not a valid wasm module.
  Compile,
  /// The module does not fit the VVM ABI (imports, exports, signatures).
  Link,
  /// A Rust panic was caught at the addon boundary.
  Panic,
  /// The instance trapped before; it must be discarded.
  Poisoned,
  /// The instance was disposed with `dispose()`.
  Disposed,
  /// `invoke` was called on an instance that is already inside `invoke`.
  Reentrant,
  /// An engine option is out of range.
  InvalidOption,
}

impl AsRef<str> for Code {
  fn as_ref(&self) -> &str {
    match self {
      Code::Deadline => "WASM_DEADLINE",
      Code::MemoryLimit => "WASM_MEMORY_LIMIT",
      Code::InstanceLimit => "WASM_INSTANCE_LIMIT",
      Code::Trap => "WASM_TRAP",
      Code::BadPointer => "WASM_BAD_POINTER",
      Code::HostError => "WASM_HOST_ERROR",
      Code::GuestError => "WASM_GUEST_ERROR",
      Code::Compile => "WASM_COMPILE",
      Code::Link => "WASM_LINK",
      Code::Panic => "WASM_PANIC",
      Code::Poisoned => "WASM_POISONED",
      Code::Disposed => "WASM_DISPOSED",
      Code::Reentrant => "WASM_REENTRANT",
      Code::InvalidOption => "WASM_INVALID_OPTION",
    }
  }
}

impl Code {
  /// Whether an error with this code leaves the instance in an unknown state.
  /// A trap can stop the guest between any two instructions (half-written
  /// heap, allocator mid-update), so the only safe answer is a new instance.
  pub fn poisons_instance(self) -> bool {
    !matches!(
      self,
      Code::GuestError | Code::Link | Code::Reentrant | Code::Poisoned | Code::Disposed
    )
  }
}

/// An error on its way to JS: a code, a message and, for `WASM_HOST_ERROR`,
/// the original JS exception as `cause`.
pub struct VvmError {
  pub code: Code,
  pub message: String,
  pub cause: Option<napi::Error>,
}

pub type VvmResult<T> = Result<T, VvmError>;


impl VvmError {
  pub fn new(code: Code, message: impl Into<String>) -> Self {
    VvmError { code, message: message.into(), cause: None }
  }
}

impl VvmError {
  /// The JS error to throw or reject with. napi-rs's own errors carry a
  /// fixed `Status` as code, so the coded JS `Error` is built here and
  /// wrapped: napi-rs then throws that very object.
  pub fn into_js(self, env: &napi::Env) -> napi::Error {
    let mut coded = napi::Error::new(self.code, self.message);
    coded.cause = self.cause.map(Box::new);
    let js = napi::JsError::from(coded).into_unknown(*env);
    // Not `From<Unknown>`: that one coerces `cause` to a string (throws for a
    // Symbol) and recurses through a cyclic `cause` chain until the stack
    // overflows.
    napi::Error::from_unknown_without_coercion(js)
  }
}

/// Faults raised by the host side while the guest runs. They travel through
/// wasmtime as the error of a host function (which unwinds the guest like a
/// trap) and are recovered by downcasting in [`classify`].
#[derive(Debug)]
pub enum Fault {
  BadPointer(String),
  HostThrew { message: String, cause: napi::Error },
  HostResult(String),
  MemoryLimit { desired_bytes: usize, max_bytes: usize },
  TableLimit { desired_elements: usize, max_elements: usize },
  Abi(String),
  /// Guest code that the host ran from inside a host call (`vvm_alloc` for a
  /// reply) failed; classified like any other guest error.
  Nested(wasmtime::Error),
}

impl fmt::Display for Fault {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match self {
      Fault::BadPointer(what) => write!(f, "{what}"),
      Fault::HostThrew { message, .. } => write!(f, "host callback threw: {message}"),
      Fault::HostResult(what) => write!(f, "{what}"),
      Fault::MemoryLimit { desired_bytes, max_bytes } => write!(
        f,
        "linear memory would grow to {desired_bytes} bytes, over memoryBytesMax = {max_bytes}"
      ),
      Fault::TableLimit { desired_elements, max_elements } => write!(
        f,
        "table would grow to {desired_elements} elements, over tableElementsMax = {max_elements}"
      ),
      Fault::Abi(what) => write!(f, "{what}"),
      Fault::Nested(err) => write!(f, "{err:#}"),
    }
  }
}

impl std::error::Error for Fault {}

impl From<Fault> for VvmError {
  fn from(fault: Fault) -> Self {
    let message = fault.to_string();
    match fault {
      Fault::BadPointer(_) => VvmError::new(Code::BadPointer, message),
      Fault::HostThrew { cause, .. } => VvmError { code: Code::HostError, message, cause: Some(cause) },
      Fault::HostResult(_) => VvmError::new(Code::HostError, message),
      Fault::MemoryLimit { .. } | Fault::TableLimit { .. } => VvmError::new(Code::MemoryLimit, message),
      // Raised while guest code runs, so it poisons like a trap.
      Fault::Abi(_) => VvmError::new(Code::Trap, format!("ABI violation: {message}")),
      Fault::Nested(err) => classify(err),
    }
  }
}

/// Maps an error from running guest code (instantiate, vvm_alloc, an entry
/// point) to its code. Our own faults come first: a host function's error is
/// what wasmtime hands back, so the downcast recovers it intact.
pub fn classify(err: wasmtime::Error) -> VvmError {
  let err = match err.downcast::<Fault>() {
    Ok(fault) => return fault.into(),
    Err(err) => err,
  };
  if let Some(trap) = err.downcast_ref::<Trap>() {
    let code = match trap {
      Trap::Interrupt | Trap::OutOfFuel => Code::Deadline,
      _ => Code::Trap,
    };
    let message = match code {
      Code::Deadline => format!("deadline exceeded ({trap})"),
      _ => trap.to_string(),
    };
    return VvmError::new(code, message);
  }
  if err.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
    return VvmError::new(Code::InstanceLimit, format!("{err:#}"));
  }
  VvmError::new(Code::Trap, format!("{err:#}"))
}

/// The message of a panic payload (`panic!("...")` carries `&str` or
/// `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
  if let Some(s) = payload.downcast_ref::<&str>() {
    (*s).to_owned()
  } else if let Some(s) = payload.downcast_ref::<String>() {
    s.clone()
  } else {
    "non-string panic payload".to_owned()
  }
}

/// Runs `f`, turning a Rust panic into `WASM_PANIC`: nothing in the addon may
/// unwind into Node (that aborts the process).
pub fn guard<T>(f: impl FnOnce() -> VvmResult<T>) -> VvmResult<T> {
  match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
    Ok(result) => result,
    Err(payload) => Err(VvmError::new(
      Code::Panic,
      format!("native panic: {}", panic_message(payload.as_ref())),
    )),
  }
}
