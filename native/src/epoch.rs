//! One process-wide thread that advances the epoch of every live engine every
//! `EPOCH_TICK` while some guest code runs. Deadlines are counted in these
//! ticks (`deadlineMs` = ticks), from the moment a call sets its deadline.
//!
//! One thread for all engines, not one per engine: each worker thread has its
//! own engine, and a dozen threads waking 1000 times a second is waste. The
//! thread holds only weak references, so it never keeps an engine alive, and
//! it exits when the last engine is gone (the next engine starts it again).
//!
//! After `IDLE_TICKS_BEFORE_PARK` ticks without guest code (no `Running`
//! guard alive, none started) the thread parks: an idle server does not wake
//! 1000 times a second. A call that finds it parked wakes it (one futex wake);
//! calls while it ticks cost two atomic operations, so a busy server pays no
//! wake-up per call. A frozen epoch changes no deadline, as each call sets its
//! own relative to the epoch at its start.

use napi_derive::napi;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use wasmtime::{Engine, EngineWeak};

/// Why 1 ms: the default deadline is 50 ms, so a tick adds at most 2% to it,
/// and sleeping 1 ms costs well under 1% of one core.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// While parked, how often the thread looks whether its engines still live.
const PARKED_CHECK: Duration = Duration::from_secs(1);
/// Why 100 (0.1 s): calls a few ms apart keep the clock ticking instead of
/// waking it each time; an idle server parks it within a tenth of a second.
const IDLE_TICKS_BEFORE_PARK: u32 = 100;

struct Ticker {
  engines: Vec<EngineWeak>,
  running: bool,
}

static TICKER: Mutex<Ticker> = Mutex::new(Ticker { engines: Vec::new(), running: false });
/// Guest calls (and instantiations) under way, on every thread of the process.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Guest calls started since the ticker last looked.
static STARTED: AtomicBool = AtomicBool::new(false);
/// The ticker waits on `WAKE`; set and cleared under the `TICKER` lock.
static PARKED: AtomicBool = AtomicBool::new(false);
static WAKE: Condvar = Condvar::new();
/// Ticks since the process started (for tests and diagnostics).
static TICKS: AtomicU64 = AtomicU64::new(0);

/// How many times the epoch clock has ticked in this process; it does not
/// move while no guest code runs.
#[napi]
pub fn epoch_ticks() -> f64 {
  TICKS.load(Ordering::Relaxed) as f64
}

fn lock() -> MutexGuard<'static, Ticker> {
  TICKER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts ticking `engine`'s epoch (while guest code runs) until the engine is dropped.
pub fn register(engine: &Engine) {
  let mut ticker = lock();
  ticker.engines.push(engine.weak());
  if !ticker.running {
    ticker.running = true;
    thread::Builder::new()
      .name("vvm-wasm-epoch".into())
      .spawn(run)
      .expect("spawn the epoch ticker thread");
  }
}

/// Held while guest code may run: the epoch advances as long as one is alive.
pub struct Running(());

impl Running {
  pub fn start() -> Running {
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    STARTED.store(true, Ordering::Relaxed);
    if PARKED.load(Ordering::SeqCst) {
      // Under the lock: the ticker checks ACTIVE and waits under it too, so
      // this wake-up cannot fall between its check and its wait.
      let _ticker = lock();
      PARKED.store(false, Ordering::SeqCst);
      WAKE.notify_all();
    }
    Running(())
  }
}

impl Drop for Running {
  fn drop(&mut self) {
    ACTIVE.fetch_sub(1, Ordering::AcqRel);
  }
}

fn run() {
  let mut idle_ticks = 0;
  loop {
    if ACTIVE.load(Ordering::SeqCst) == 0 && !STARTED.swap(false, Ordering::Relaxed) {
      idle_ticks += 1;
    } else {
      idle_ticks = 0;
    }
    if idle_ticks >= IDLE_TICKS_BEFORE_PARK {
      idle_ticks = 0;
      let mut ticker = lock();
      PARKED.store(true, Ordering::SeqCst);
      while PARKED.load(Ordering::SeqCst) && ACTIVE.load(Ordering::SeqCst) == 0 {
        let (guard, timeout) = WAKE.wait_timeout(ticker, PARKED_CHECK).unwrap_or_else(|poisoned| poisoned.into_inner());
        ticker = guard;
        if timeout.timed_out() && !retain_live(&mut ticker, false) {
          PARKED.store(false, Ordering::SeqCst);
          return;
        }
      }
      PARKED.store(false, Ordering::SeqCst);
    }
    thread::sleep(EPOCH_TICK);
    let mut ticker = lock();
    TICKS.fetch_add(1, Ordering::Relaxed);
    if !retain_live(&mut ticker, true) {
      return;
    }
  }
}

/// Drops dead engines (advancing the live ones' epochs when `tick`); false,
/// with the thread marked stopped, when none is left.
fn retain_live(ticker: &mut Ticker, tick: bool) -> bool {
  ticker.engines.retain(|weak| match weak.upgrade() {
    Some(engine) => {
      if tick {
        engine.increment_epoch();
      }
      true
    }
    None => false,
  });
  if ticker.engines.is_empty() {
    ticker.running = false;
    return false;
  }
  true
}
