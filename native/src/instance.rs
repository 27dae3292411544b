//! Instances: one wasmtime `Store` each, with its own limits, made quickly
//! from an `InstancePre`; `invoke` runs an entry point on the JS thread and
//! serves the guest's `vvm.host` calls with a JS callback.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ptr;
use std::sync::Arc;

use napi::bindgen_prelude::{BufferSlice, Env, FromNapiValue, JsValue, Unknown};
use napi::sys;
use napi_derive::napi;
use wasmtime::{
  Caller, Instance, InstancePre, Linker, Memory, Store, TypedFunc,
};

use crate::abi::{
  checked_range, pack, unpack, Outcome, ALLOC_EXPORT, GUEST_ERROR_BYTES_MAX, HOST_ABSENT, HOST_FUNC,
  HOST_MODULE, MEMORY_EXPORT,
};
use crate::engine::Shared;
use crate::limiter::Limiter;
use crate::errors::{classify, guard, Code, Fault, VvmError, VvmResult};
use crate::module::is_entry_point;

/// Per-store state, reachable from host functions through `Caller`.
pub struct StoreData {
  limiter: Limiter,
  /// Set once instantiation is done; `vvm.host` needs both.
  guest: Option<GuestExports>,
  /// The JS callback of the `invoke` in progress; `None` outside of it.
  call: Option<HostCall>,
  /// Reused for host replies, so a host call allocates nothing in Rust.
  scratch: Vec<u8>,
}

#[derive(Clone)]
struct GuestExports {
  memory: Memory,
  alloc: TypedFunc<i32, i32>,
}

/// Raw handles of the current `invoke`'s env and callback.
#[derive(Clone, Copy)]
struct HostCall {
  env: sys::napi_env,
  callback: sys::napi_value,
}

// SAFETY: a store (and so its `StoreData`) never leaves the JS thread that
// created it: it lives inside a napi class instance, and napi objects are
// bound to their isolate's thread. wasmtime asks `Send` of store data only so
// that a store *could* move; ours never does. `HostCall` is only read while
// the `invoke` that set it is on the stack of that same thread.
unsafe impl Send for HostCall {}

/// Defines `vvm.host` in `linker`.
pub fn link_host(linker: &mut Linker<StoreData>) -> VvmResult<()> {
  linker
    .func_wrap(HOST_MODULE, HOST_FUNC, |mut caller: Caller<'_, StoreData>, op: i32, ptr: i32, len: i32| {
      host_call(&mut caller, op, ptr as u32, len as u32).map_err(wasmtime::Error::new)
    })
    .map_err(|err| VvmError::new(Code::Link, format!("{err:#}")))?;
  Ok(())
}

#[napi]
pub struct WasmInstancePre {
  shared: Arc<Shared>,
  pre: InstancePre<StoreData>,
}

impl WasmInstancePre {
  pub fn new(shared: Arc<Shared>, pre: InstancePre<StoreData>) -> Self {
    WasmInstancePre { shared, pre }
  }
}

#[napi]
impl WasmInstancePre {
  /// A new instance with its own store and limits (a pooling-allocator slot).
  #[napi]
  pub fn instantiate(&self, env: &Env) -> napi::Result<WasmInstance> {
    guard(|| self.instantiate_live()).map_err(|err| err.into_js(env))
  }
}

impl WasmInstancePre {
  fn instantiate_live(&self) -> VvmResult<WasmInstance> {
    let limits = &self.shared.limits;
    let data = StoreData {
      limiter: Limiter { memory_bytes_max: limits.memory_bytes_max, table_elements_max: limits.table_elements_max },
      guest: None,
      call: None,
      scratch: Vec::new(),
    };
    let mut store = Store::new(&self.shared.engine, data);
    store.limiter(|data| &mut data.limiter);
    store.epoch_deadline_trap();
    // The start function, if any, runs under the same deadline as a call.
    let _running = crate::epoch::Running::start();
    store.set_epoch_deadline(limits.deadline_ticks);
    let instance = self.pre.instantiate(&mut store).map_err(classify)?;
    let memory = instance
      .get_memory(&mut store, MEMORY_EXPORT)
      .ok_or_else(|| VvmError::new(Code::Link, "module must export `memory`"))?;
    let alloc = instance
      .get_typed_func::<i32, i32>(&mut store, ALLOC_EXPORT)
      .map_err(|err| VvmError::new(Code::Link, format!("`vvm_alloc`: {err:#}")))?;
    store.data_mut().guest = Some(GuestExports { memory, alloc: alloc.clone() });
    Ok(WasmInstance {
      live: RefCell::new(Some(Live { store, instance, memory, alloc, entries: HashMap::new() })),
      poisoned: Cell::new(false),
      deadline_ticks: limits.deadline_ticks,
    })
  }
}

struct Live {
  store: Store<StoreData>,
  instance: Instance,
  memory: Memory,
  alloc: TypedFunc<i32, i32>,
  /// Entry points looked up so far (name lookup + type check once per name).
  entries: HashMap<String, TypedFunc<(i32, i32), i64>>,
}

#[napi]
pub struct WasmInstance {
  /// `None` after `dispose()`. A `RefCell` because a host callback may call
  /// back into this very instance: that is refused (WASM_REENTRANT) instead
  /// of aliasing the store.
  live: RefCell<Option<Live>>,
  poisoned: Cell<bool>,
  deadline_ticks: u64,
}

#[napi]
impl WasmInstance {
  /// True once a call on this instance failed with a trap-like error; every
  /// later `invoke` throws WASM_POISONED. Make a new instance.
  #[napi(getter)]
  pub fn poisoned(&self) -> bool {
    self.poisoned.get()
  }

  /// Current size of the guest's linear memory, bytes: 0 after dispose, NaN
  /// when read from a host callback of this instance's own invoke.
  #[napi(getter)]
  pub fn memory_bytes(&self) -> f64 {
    match self.live.try_borrow() {
      Ok(live) => live.as_ref().map_or(0.0, |live| live.memory.data_size(&live.store) as f64),
      // Inside this instance's own invoke (from a host callback).
      Err(_) => f64::NAN,
    }
  }

  /// Frees the store and its pool slot now instead of at garbage collection.
  #[napi]
  pub fn dispose(&self, env: &Env) -> napi::Result<()> {
    let mut live = self.live.try_borrow_mut().map_err(|_| {
      VvmError::new(Code::Reentrant, "dispose() called from inside this instance's invoke").into_js(env)
    })?;
    *live = None;
    Ok(())
  }

  /// Runs entry point `exportName` with `input` and returns its output.
  /// `host(op, payload)` answers the guest's `vvm.host` calls synchronously.
  #[napi(
    ts_args_type = "exportName: string, input: Uint8Array, host: (op: number, payload: Buffer) => Uint8Array | null | undefined"
  )]
  pub fn invoke<'env>(
    &self,
    env: &'env Env,
    export_name: String,
    input: BufferSlice<'env>,
    host: Unknown<'env>,
  ) -> napi::Result<BufferSlice<'env>> {
    self.invoke_coded(env, &export_name, &input, host).map_err(|err| err.into_js(env))
  }
}

impl WasmInstance {
  fn invoke_coded<'env>(
    &self,
    env: &'env Env,
    export_name: &str,
    input: &[u8],
    host: Unknown<'env>,
  ) -> VvmResult<BufferSlice<'env>> {
    if host.get_type().map_err(napi_failure)? != napi::ValueType::Function {
      return Err(VvmError::new(Code::HostError, "host must be a function"));
    }
    let mut guard_live = self
      .live
      .try_borrow_mut()
      .map_err(|_| VvmError::new(Code::Reentrant, "invoke() called from inside this instance's invoke"))?;
    let live = guard_live.as_mut().ok_or_else(|| VvmError::new(Code::Disposed, "instance was disposed"))?;
    if self.poisoned.get() {
      return Err(VvmError::new(Code::Poisoned, "instance trapped before; make a new one"));
    }

    let call = HostCall { env: env.raw(), callback: host.raw() };
    let result = guard(|| run_entry(live, self.deadline_ticks, export_name, input, call));
    live.store.data_mut().call = None;

    let outcome = match result {
      Ok(outcome) => outcome,
      Err(err) => {
        if err.code.poisons_instance() {
          self.poisoned.set(true);
        }
        return Err(err);
      }
    };
    let data = live.memory.data(&live.store);
    match outcome {
      Outcome::Ok { ptr, len } => {
        let range = checked_range(data.len(), ptr, len, "entry point result").map_err(|fault| {
          self.poisoned.set(true);
          VvmError::from(fault)
        })?;
        BufferSlice::copy_from(env, &data[range]).map_err(napi_failure)
      }
      Outcome::Err { ptr, len } => {
        let range = checked_range(data.len(), ptr, len, "entry point error message").map_err(|fault| {
          self.poisoned.set(true);
          VvmError::from(fault)
        })?;
        let bytes = &data[range];
        let cut = &bytes[..bytes.len().min(GUEST_ERROR_BYTES_MAX)];
        Err(VvmError::new(Code::GuestError, String::from_utf8_lossy(cut).into_owned()))
      }
    }
  }
}

/// Copies `input` into guest memory and calls the entry point.
fn run_entry(
  live: &mut Live,
  deadline_ticks: u64,
  export_name: &str,
  input: &[u8],
  call: HostCall,
) -> VvmResult<Outcome> {
  let entry = match live.entries.get(export_name) {
    Some(entry) => entry.clone(),
    None => {
      let entry = lookup_entry(live, export_name)?;
      live.entries.insert(export_name.to_owned(), entry.clone());
      entry
    }
  };
  let len = abi_len(input.len(), "input")?;
  let _running = crate::epoch::Running::start();
  live.store.set_epoch_deadline(deadline_ticks);

  let ptr = live.alloc.call(&mut live.store, len as i32).map_err(classify)? as u32;
  let memory = live.memory.data_mut(&mut live.store);
  let range = checked_range(memory.len(), ptr, len, "vvm_alloc result for the input")?;
  memory[range].copy_from_slice(input);

  // Host calls are served from here on, not earlier: `input` borrows a JS
  // buffer, and JS code run from a host call inside that first `vvm_alloc`
  // could detach it while we still read it.
  live.store.data_mut().call = Some(call);
  let result = entry.call(&mut live.store, (ptr as i32, len as i32)).map_err(classify)?;
  Ok(unpack(result))
}

fn lookup_entry(live: &mut Live, export_name: &str) -> VvmResult<TypedFunc<(i32, i32), i64>> {
  let func = live
    .instance
    .get_func(&mut live.store, export_name)
    .ok_or_else(|| VvmError::new(Code::Link, format!("no exported function `{export_name}`")))?;
  if !is_entry_point(&func.ty(&live.store)) {
    return Err(VvmError::new(Code::Link, format!("export `{export_name}` must be (i32, i32) -> i64")));
  }
  func.typed(&live.store).map_err(|err| VvmError::new(Code::Link, format!("{err:#}")))
}

/// A byte count the ABI can carry: below 2^31, like every guest pointer.
fn abi_len(len: usize, what: &str) -> Result<u32, Fault> {
  if len >= 1 << 31 {
    return Err(Fault::HostResult(format!("{what} of {len} bytes is over the ABI's 2 GiB")));
  }
  Ok(len as u32)
}

fn napi_failure(err: napi::Error) -> VvmError {
  VvmError::new(Code::HostError, format!("napi: {}", err.reason))
}

/// `vvm.host(op, ptr, len)`: hands the payload to the JS callback and writes
/// its reply into guest memory (via the guest's `vvm_alloc`).
fn host_call(caller: &mut Caller<'_, StoreData>, op: i32, ptr: u32, len: u32) -> Result<i64, Fault> {
  let (call, guest) = match (caller.data().call, caller.data().guest.clone()) {
    (Some(call), Some(guest)) => (call, guest),
    _ => {
      return Err(Fault::Abi(
        "vvm.host called outside of an entry point (from a start function or from vvm_alloc for the input)".into(),
      ))
    }
  };
  let mut reply = std::mem::take(&mut caller.data_mut().scratch);
  reply.clear();
  let answered = call_js(caller, call, guest.memory, op, ptr, len, &mut reply);
  let result = match answered {
    Ok(true) => write_reply(caller, guest, &reply),
    Ok(false) => Ok(HOST_ABSENT),
    Err(fault) => Err(fault),
  };
  caller.data_mut().scratch = reply;
  result
}

/// Calls the JS callback with a copy of the payload; `Ok(true)` with the
/// reply in `reply`, `Ok(false)` for null/undefined.
fn call_js(
  caller: &mut Caller<'_, StoreData>,
  call: HostCall,
  memory: Memory,
  op: i32,
  ptr: u32,
  len: u32,
  reply: &mut Vec<u8>,
) -> Result<bool, Fault> {
  let env = Env::from_raw(call.env);
  // One handle scope per host call: a guest may call the host millions of
  // times in one invoke, and without it every payload Buffer would stay
  // reachable until the invoke returns.
  let _scope = HandleScope::open(call.env)?;

  let payload = {
    let data = memory.data(&*caller);
    let range = checked_range(data.len(), ptr, len, "vvm.host payload")?;
    BufferSlice::copy_from(&env, &data[range]).map_err(|err| Fault::HostResult(format!("napi: {}", err.reason)))?
  };
  let mut op_value = ptr::null_mut();
  let mut undefined = ptr::null_mut();
  let mut returned = ptr::null_mut();
  // SAFETY: `call.env` is the env of the `invoke` on this thread's stack
  // (HostCall is set for exactly its duration), so it is valid here. The
  // out-pointers are live locals.
  let status = unsafe {
    sys::napi_create_int32(call.env, op, &mut op_value);
    sys::napi_get_undefined(call.env, &mut undefined);
    let argv = [op_value, payload.raw()];
    // SAFETY: `call.callback` is the function passed to that `invoke`, kept
    // alive by the invoke's own handle scope (an outer scope of this one).
    sys::napi_call_function(call.env, undefined, call.callback, argv.len(), argv.as_ptr(), &mut returned)
  };
  match status {
    sys::Status::napi_ok => {}
    sys::Status::napi_pending_exception => {
      let mut exception = ptr::null_mut();
      // SAFETY: an exception is pending on this env; taking it clears it, so
      // it can be rethrown later as the `cause` of our coded error.
      unsafe { sys::napi_get_and_clear_last_exception(call.env, &mut exception) };
      // SAFETY: `exception` was just returned by napi for this env.
      let thrown = unsafe { Unknown::from_raw_unchecked(call.env, exception) };
      let message = describe_thrown(call.env, thrown);
      // Without coercion: keeps any thrown value (primitives too) as the
      // `cause`, and walks a cyclic `cause` chain safely.
      return Err(Fault::HostThrew { message, cause: napi::Error::from_unknown_without_coercion(thrown) });
    }
    // Typically napi_cannot_run_js: the worker is being terminated.
    other => return Err(Fault::HostResult(format!("calling the host callback failed: napi status {other}"))),
  }

  // SAFETY: `returned` is the callback's return value, valid in this scope.
  let returned = unsafe { Unknown::from_raw_unchecked(call.env, returned) };
  match returned.get_type() {
    Ok(napi::ValueType::Null | napi::ValueType::Undefined) => return Ok(false),
    Ok(napi::ValueType::Object) => {}
    _ => return Err(Fault::HostResult("host callback must return a Uint8Array, null or undefined".into())),
  }
  // SAFETY: `returned.raw()` is a live value of this env; napi checks that it
  // is an ArrayBufferView and fails otherwise.
  let bytes = unsafe { BufferSlice::from_napi_value(call.env, returned.raw()) }
    .map_err(|_| Fault::HostResult("host callback must return a Uint8Array, null or undefined".into()))?;
  reply.extend_from_slice(&bytes);
  Ok(true)
}

/// A one-line description of a thrown value for the error message: an
/// Error's `message`, a string as is, other primitives as `String(v)`. Runs no
/// user code except a `message` getter; anything that throws on the way is
/// cleared and described generically.
fn describe_thrown(env: sys::napi_env, thrown: Unknown<'_>) -> String {
  let described = match thrown.get_type() {
    Ok(napi::ValueType::Object | napi::ValueType::Function) => {
      let mut message = ptr::null_mut();
      // SAFETY: `thrown` is a live object of `env`; `message` is a local.
      let status = unsafe { sys::napi_get_named_property(env, thrown.raw(), c"message".as_ptr(), &mut message) };
      if status == sys::Status::napi_ok {
        // SAFETY: returned by napi for this env just above.
        let message = unsafe { Unknown::from_raw_unchecked(env, message) };
        match message.get_type() {
          Ok(napi::ValueType::String) => js_string(message),
          _ => None,
        }
      } else {
        None
      }
    }
    Ok(napi::ValueType::Symbol) | Err(_) => None,
    // Strings, numbers, booleans, bigints, null, undefined: String(v) runs no
    // user code.
    Ok(_) => js_string(thrown),
  };
  let mut pending = false;
  // SAFETY: `env` is live (see `call_js`); `pending` is a local.
  unsafe { sys::napi_is_exception_pending(env, &mut pending) };
  if pending {
    let mut ignored = ptr::null_mut();
    // SAFETY: as above. The exception came from a `message` getter; the
    // original thrown value is what gets reported.
    unsafe { sys::napi_get_and_clear_last_exception(env, &mut ignored) };
  }
  described.unwrap_or_else(|| "(a value without a string message)".to_owned())
}

fn js_string(value: Unknown<'_>) -> Option<String> {
  value.coerce_to_string().and_then(|s| s.into_utf8()).and_then(|s| s.into_owned()).ok()
}

/// Asks the guest for room (`vvm_alloc`) and copies the reply there.
fn write_reply(caller: &mut Caller<'_, StoreData>, guest: GuestExports, reply: &[u8]) -> Result<i64, Fault> {
  let len = abi_len(reply.len(), "host reply")?;
  let ptr = match guest.alloc.call(&mut *caller, len as i32) {
    Ok(ptr) => ptr as u32,
    // A trap inside vvm_alloc (deadline, memory limit) ends the host call
    // with the same error, carried as a fault so it keeps its code.
    Err(err) => return Err(Fault::Nested(err)),
  };
  let data = guest.memory.data_mut(&mut *caller);
  let range = checked_range(data.len(), ptr, len, "vvm_alloc result for the host reply")?;
  data[range].copy_from_slice(reply);
  Ok(pack(ptr, len))
}

/// A napi handle scope closed on drop.
struct HandleScope {
  env: sys::napi_env,
  scope: sys::napi_handle_scope,
}

impl HandleScope {
  fn open(env: sys::napi_env) -> Result<Self, Fault> {
    let mut scope = ptr::null_mut();
    // SAFETY: `env` is the live env of the current invoke (see `call_js`).
    let status = unsafe { sys::napi_open_handle_scope(env, &mut scope) };
    if status != sys::Status::napi_ok {
      return Err(Fault::HostResult(format!("napi_open_handle_scope failed: status {status}")));
    }
    Ok(HandleScope { env, scope })
  }
}

impl Drop for HandleScope {
  fn drop(&mut self) {
    // SAFETY: `scope` was opened on `env` by `open` and scopes close in LIFO
    // order: this guard is dropped before any outer scope is closed.
    unsafe { sys::napi_close_handle_scope(self.env, self.scope) };
  }
}
