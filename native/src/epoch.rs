//! One process-wide thread that advances the epoch of every live engine every
//! `EPOCH_TICK`. Deadlines are counted in these ticks (`deadlineMs` = ticks).
//!
//! One thread for all engines, not one per engine: each worker thread has its
//! own engine, and a dozen threads waking 1000 times a second is waste. The
//! thread holds only weak references, so it never keeps an engine alive, and
//! it exits when the last engine is gone (the next engine starts it again).

use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use wasmtime::{Engine, EngineWeak};

/// Why 1 ms: the default deadline is 50 ms, so a tick adds at most 2% to it,
/// and sleeping 1 ms costs well under 1% of one core.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

struct Ticker {
  engines: Vec<EngineWeak>,
  running: bool,
}

static TICKER: Mutex<Ticker> = Mutex::new(Ticker { engines: Vec::new(), running: false });

/// Starts ticking `engine`'s epoch until the engine is dropped.
pub fn register(engine: &Engine) {
  let mut ticker = TICKER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
  ticker.engines.push(engine.weak());
  if !ticker.running {
    ticker.running = true;
    thread::Builder::new()
      .name("vvm-wasm-epoch".into())
      .spawn(run)
      .expect("spawn the epoch ticker thread");
  }
}

fn run() {
  loop {
    thread::sleep(EPOCH_TICK);
    let mut ticker = TICKER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    ticker.engines.retain(|weak| match weak.upgrade() {
      Some(engine) => {
        engine.increment_epoch();
        true
      }
      None => false,
    });
    if ticker.engines.is_empty() {
      ticker.running = false;
      return;
    }
  }
}
