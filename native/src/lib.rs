//! VVM native addon: application extensions as sandboxed WebAssembly, run by
//! wasmtime. JS API and the guest ABI: native/README.md.
//!
//! Layout: `engine` (engine, options, compile), `cache` (compiled modules on
//! disk), `module` (ABI check, link), `instance` (stores, invoke, host calls),
//! `limiter` (a store's memory and table limits), `abi` (the wire format of pointers and results), `errors` (codes),
//! `epoch` (the deadline clock), `process` (the launcher's restart in place). Depends on nothing in the TS tree.

#![deny(clippy::undocumented_unsafe_blocks)]

mod abi;
mod cache;
mod engine;
mod epoch;
mod errors;
mod instance;
mod limiter;
mod module;
mod process;

/// Set by build.rs from Cargo.lock; part of the compiled-module cache key.
pub(crate) const WASMTIME_VERSION: &str = env!("VVM_WASMTIME_VERSION");
