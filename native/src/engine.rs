//! `WasmEngine`: one wasmtime `Engine` with the pooling allocator, epoch
//! deadlines and no signal handlers, plus the limits every store gets.

use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::{AsyncTask, BufferSlice, Env, Task};
use napi_derive::napi;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::abi::MEMORY_BYTES_LIMIT;
use crate::cache::{compile_cached, Compiled};
use crate::errors::{guard, Code, VvmError, VvmResult};
use crate::module::WasmModule;
use crate::{epoch, WASMTIME_VERSION};

const MIB: f64 = 1024.0 * 1024.0;

/// Defaults, in one place (native/README.md lists them).
const MEMORY_BYTES_MAX_DEFAULT: f64 = 16.0 * MIB;
const TABLE_ELEMENTS_MAX_DEFAULT: f64 = 10_000.0;
/// Pool slots for the whole engine: instances alive at once, across modules.
const INSTANCES_MAX_DEFAULT: f64 = 1000.0;
const DEADLINE_MS_DEFAULT: f64 = 50.0;
/// wasmtime's own default; wasm runs on the calling thread's stack, and a
/// Node worker's stack is 4 MiB, so 512 KiB leaves room for JS host calls.
const STACK_BYTES_MAX_DEFAULT: f64 = 512.0 * 1024.0;

/// Options of `new WasmEngine(options)`. All sizes are per instance except
/// `instancesMax`.
#[napi(object)]
pub struct WasmEngineOptions {
  /// Linear memory of one instance, bytes. Default 16 MiB, at most 2 GiB.
  pub memory_bytes_max: Option<f64>,
  /// Elements of one table. Default 10 000.
  pub table_elements_max: Option<f64>,
  /// Instances alive at once in this engine (pooling allocator slots).
  /// Default 1000.
  pub instances_max: Option<f64>,
  /// Wall-clock budget of one `invoke`, ms (epoch ticks of 1 ms; the deadline
  /// fires within one tick after it). Default 50.
  pub deadline_ms: Option<f64>,
  /// Native stack that wasm may use, bytes. Default 512 KiB.
  pub stack_bytes_max: Option<f64>,
  /// Directory for compiled modules (created if missing). No cache if absent.
  /// Must be private to the server: cached files are loaded as machine code.
  pub cache_dir: Option<String>,
}

/// Limits after validation, shared by the engine's modules and instances.
#[derive(Debug)]
pub struct Limits {
  pub memory_bytes_max: usize,
  pub table_elements_max: usize,
  pub instances_max: u32,
  pub deadline_ticks: u64,
  pub stack_bytes_max: usize,
}

/// What every object made by one engine shares.
pub struct Shared {
  pub engine: Engine,
  pub limits: Limits,
  pub cache_dir: Option<PathBuf>,
}

#[napi]
pub struct WasmEngine {
  shared: Arc<Shared>,
}

#[napi]
impl WasmEngine {
  #[napi(constructor)]
  pub fn new(env: &Env, options: Option<WasmEngineOptions>) -> napi::Result<Self> {
    guard(|| {
      let options = options.unwrap_or(WasmEngineOptions {
        memory_bytes_max: None,
        table_elements_max: None,
        instances_max: None,
        deadline_ms: None,
        stack_bytes_max: None,
        cache_dir: None,
      });
      let limits = validate(&options)?;
      let cache_dir = match options.cache_dir {
        Some(dir) => {
          let dir = PathBuf::from(dir);
          std::fs::create_dir_all(&dir).map_err(|err| {
            VvmError::new(
              Code::InvalidOption,
              format!("cacheDir = {:?}: cannot create it: {err}", dir.display().to_string()),
            )
          })?;
          Some(dir)
        }
        None => None,
      };
      let engine = build_engine(&limits)?;
      epoch::register(&engine);
      Ok(WasmEngine { shared: Arc::new(Shared { engine, limits, cache_dir }) })
    })
    .map_err(|err| err.into_js(env))
  }

  /// Compiles (or loads from `cacheDir`) a module on the calling thread.
  /// Compiling is long work: prefer `compileAsync` outside of start-up.
  #[napi]
  pub fn compile(&self, env: &Env, bytes: BufferSlice) -> napi::Result<WasmModule> {
    let compiled = guard(|| compile_cached(&self.shared, &bytes)).map_err(|err| err.into_js(env))?;
    Ok(WasmModule::new(self.shared.clone(), compiled))
  }

  /// Like `compile`, on the libuv thread pool.
  #[napi(ts_return_type = "Promise<WasmModule>")]
  pub fn compile_async(&self, bytes: BufferSlice) -> AsyncTask<CompileTask> {
    AsyncTask::new(CompileTask { shared: self.shared.clone(), bytes: bytes.to_vec() })
  }

  /// The wasmtime version compiled in (part of the cache key).
  #[napi(getter)]
  pub fn wasmtime_version(&self) -> String {
    WASMTIME_VERSION.to_owned()
  }
}

pub struct CompileTask {
  shared: Arc<Shared>,
  bytes: Vec<u8>,
}

impl Task for CompileTask {
  // The coded result travels through `compute` as a value, because a Task's
  // own error type carries a napi `Status`, not our code.
  type Output = VvmResult<Compiled>;
  type JsValue = WasmModule;

  fn compute(&mut self) -> napi::Result<Self::Output> {
    Ok(guard(|| compile_cached(&self.shared, &self.bytes)))
  }

  fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<WasmModule> {
    match output {
      Ok(compiled) => Ok(WasmModule::new(self.shared.clone(), compiled)),
      Err(err) => Err(err.into_js(&env)),
    }
  }
}

fn validate(options: &WasmEngineOptions) -> VvmResult<Limits> {
  let memory_bytes_max = int_option(
    "memoryBytesMax",
    options.memory_bytes_max,
    MEMORY_BYTES_MAX_DEFAULT,
    64.0 * 1024.0,
    MEMORY_BYTES_LIMIT as f64,
  )?;
  let table_elements_max =
    int_option("tableElementsMax", options.table_elements_max, TABLE_ELEMENTS_MAX_DEFAULT, 0.0, 10_000_000.0)?;
  let instances_max = int_option("instancesMax", options.instances_max, INSTANCES_MAX_DEFAULT, 1.0, 100_000.0)?;
  let deadline_ms = int_option("deadlineMs", options.deadline_ms, DEADLINE_MS_DEFAULT, 1.0, 3_600_000.0)?;
  let stack_bytes_max =
    int_option("stackBytesMax", options.stack_bytes_max, STACK_BYTES_MAX_DEFAULT, 64.0 * 1024.0, 2.0 * MIB)?;
  Ok(Limits {
    memory_bytes_max: memory_bytes_max as usize,
    table_elements_max: table_elements_max as usize,
    instances_max: instances_max as u32,
    deadline_ticks: deadline_ms as u64,
    stack_bytes_max: stack_bytes_max as usize,
  })
}

fn int_option(name: &str, value: Option<f64>, default: f64, min: f64, max: f64) -> VvmResult<f64> {
  let value = value.unwrap_or(default);
  if value.fract() != 0.0 || !(min..=max).contains(&value) {
    return Err(VvmError::new(
      Code::InvalidOption,
      format!("{name} = {value}: must be an integer in [{min}, {max}]"),
    ));
  }
  Ok(value)
}

fn build_engine(limits: &Limits) -> VvmResult<Engine> {
  let mut pool = PoolingAllocationConfig::new();
  pool
    .total_core_instances(limits.instances_max)
    .total_memories(limits.instances_max)
    .total_tables(limits.instances_max)
    .max_memories_per_module(1)
    .max_tables_per_module(1)
    .max_memory_size(limits.memory_bytes_max)
    .table_elements(limits.table_elements_max);

  let mut config = Config::new();
  config
    // Node owns the process's signal handlers (SIGSEGV, SIGILL, ...). With
    // signals-based traps off, wasmtime registers none and compiles explicit
    // bounds checks instead of relying on guard-page faults: slower memory
    // access (up to 2x on memory-heavy code), but no handler chaining with
    // V8 and identical behaviour on the main thread and in workers.
    .signals_based_traps(false)
    // Explicit bounds checks need no virtual reservation beyond the limit, so
    // a pool slot is exactly memoryBytesMax of address space.
    .memory_reservation(limits.memory_bytes_max as u64)
    .memory_guard_size(0)
    .memory_reservation_for_growth(0)
    .epoch_interruption(true)
    .max_wasm_stack(limits.stack_bytes_max)
    .cranelift_opt_level(OptLevel::Speed)
    .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
  Engine::new(&config).map_err(|err| VvmError::new(Code::InvalidOption, format!("wasmtime engine: {err:#}")))
}
