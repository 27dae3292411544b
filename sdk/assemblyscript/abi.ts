// The byte-level ABI (native/README.md, "The ABI"; docs/extensions.md): the one import
// `vvm.host(op, ptr, len) -> i64`, the allocator export the host writes into, packed results.
//
// Memory is an arena per call: the module is built with `--runtime stub` (a bump allocator, no
// GC) and the bump pointer goes back to where it stood after the module's start at the first
// `vvm_alloc` of each call (the host's copy of the input). Everything a call allocates is
// garbage once it returns (the host copies the output first), so nothing is freed one by one
// and a call costs no collector. Objects made by the module's start function are kept.

import { BLOCK_OVERHEAD } from '~lib/rt/common'
import { Runtime } from '~lib/shared/runtime'
import { Reader, Writer } from './msgpack'
import { Value } from './value'

// @ts-ignore: compile-time check
if (ASC_RUNTIME != Runtime.Stub) ERROR('the vvm SDK needs asc --runtime stub (see docs/extensions.md)')

// @ts-ignore: decorator
@external('vvm', 'host')
declare function vvm_host(op: i32, ptr: usize, len: u32): i64

/** Host operations (docs/extensions.md, "Host operations"). */
export namespace Op {
  export const RECORD_GET: i32 = 1
  export const VIEW_GET: i32 = 2
  export const VIEW_READ: i32 = 3
  export const RECORD_CREATE: i32 = 4
  export const RECORD_UPDATE: i32 = 5
  export const VIEW_PUT: i32 = 6
  export const PRINCIPAL: i32 = 7
  export const ABORT: i32 = 8
  export const WRITES: i32 = 9
}

const ERROR_BIT: u64 = 0x8000000000000000

/** A zero-size block allocated right after the module's start: the arena's floor. */
let floor: usize = 0
/** True from a call's first allocation (its input) until it returns through `finish`. */
let inCall = false

/** Resets the bump allocator to `floor` (the stub runtime rewinds when its last block is freed). */
function rewind(): void {
  if (floor == 0) {
    floor = heap.alloc(0)
    return
  }
  // Make the floor block span everything allocated since, so that it is the last block.
  const probe = heap.alloc(0)
  const end = probe + load<usize>(probe - BLOCK_OVERHEAD)
  store<usize>(floor - BLOCK_OVERHEAD, end - floor)
  heap.free(floor)
  const again = heap.alloc(0)
  if (again != floor) unreachable() // the stub runtime's block layout changed: do not run on
}

/** Exported by every extension module (`export { vvm_alloc } from '.../sdk/assemblyscript'`). */
export function vvm_alloc(size: u32): usize {
  if (!inCall) {
    rewind()
    inCall = true
  }
  return heap.alloc(size)
}

/** Writes deferred until the call returns (or the next read): `[op, payload]` pairs. */
let pending: Writer | null = null
let pendingCount: u32 = 0

export function beginCall(): void {
  // The arena was rewound: whatever the globals pointed to is gone.
  pending = null
  pendingCount = 0
}

/** Defers a write (RECORD_UPDATE, VIEW_PUT); returns the writer its payload goes to. */
export function deferWrite(op: i32): Writer {
  if (pending == null) pending = new Writer(256)
  const w = pending!
  w.arrayHeader(2)
  w.int(op)
  pendingCount++
  return w
}

/** Sends the deferred writes so that reads see them (the host applies them only if the call succeeds). */
export function flushWrites(): void {
  if (pendingCount == 0) return
  const w = new Writer(pending!.len + 8)
  w.arrayHeader(pendingCount)
  memory.copy(w.reserve(pending!.len), pending!.ptr, pending!.len)
  pending = null
  pendingCount = 0
  hostCall(Op.WRITES, w)
}

/** Decodes the call's input (written by the host through vvm_alloc). */
export function decodeInput(ptr: usize, len: u32): Value {
  return len == 0 ? Value.nil() : new Reader(ptr, ptr + len).value()
}

/** Ends a call successfully: output `[value, writes]`, the value already in `w` (one element). */
export function finishOk(value: Writer): i64 {
  const w = new Writer(value.len + (pending == null ? 0 : pending!.len) + 16)
  w.arrayHeader(2)
  memory.copy(w.reserve(value.len), value.ptr, value.len)
  w.arrayHeader(pendingCount)
  if (pendingCount > 0) memory.copy(w.reserve(pending!.len), pending!.ptr, pending!.len)
  return finish(w, false)
}

/** Ends a call with an error message (UTF-8 JSON); deferred writes are dropped. */
export function finishError(w: Writer): i64 {
  return finish(w, true)
}

function finish(w: Writer, error: bool): i64 {
  pending = null
  pendingCount = 0
  inCall = false
  const packed = (<u64>w.ptr << 32) | <u64>w.len
  return <i64>(error ? packed | ERROR_BIT : packed)
}

/**
 * Calls the host with the writer's bytes (or none); returns the decoded reply, or null when
 * the host answered "absent". Deferred writes go first, except for WRITES itself.
 */
export function hostCall(op: i32, payload: Writer | null): Value | null {
  if (op != Op.WRITES) flushWrites()
  const r = payload == null ? vvm_host(op, 0, 0) : vvm_host(op, payload.ptr, payload.len)
  if (r == -1) return null
  const ptr = <usize>(<u64>r >> 32)
  const len = <u32>(r & 0xffffffff)
  return len == 0 ? Value.nil() : new Reader(ptr, ptr + len).value()
}

/**
 * The `abort` of this module (asc `--use abort=...`): the message goes to the host, which puts
 * it in the error the client gets, then the call traps.
 */
export function vvmAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const text = (message != null ? message : 'abort') + ' at ' + (fileName != null ? fileName : '?') + ':' + line.toString() + ':' + column.toString()
  const buf = String.UTF8.encode(text)
  vvm_host(Op.ABORT, changetype<usize>(buf), <u32>buf.byteLength)
  unreachable()
}

/** The raw import, for tests of the host's pointer checks only. */
export function rawHostCall(op: i32, ptr: usize, len: u32): i64 {
  return vvm_host(op, ptr, len)
}
