// A striped lock over a SharedArrayBuffer, for the level backend's compare-and-set operations.
// LevelDB has no conditional write, so "read, compare, write" must not interleave with another
// one on the same key. Threads of one process that pass the same buffer (via `workerData`)
// exclude each other; a thread that gets no buffer makes a private one and only excludes its
// own concurrent calls.
//
// Each key hashes to one of `CAS_LOCK_STRIPES_COUNT` Int32 slots (0 free, 1 held). Unrelated
// keys sharing a stripe only wait for each other briefly. Waiting uses `Atomics.waitAsync`, so
// no thread's event loop blocks.

import { BusyError } from '../errors.js'

/** 4 KiB of shared memory; collisions at this size are rare for a handful of hot keys. */
export const CAS_LOCK_STRIPES_COUNT = 1024
/** A holder does one read and one synced write; far longer means a holder died (see below). */
export const CAS_LOCK_WAIT_MS_MAX = 5_000
// Re-check at least this often, so a notify missed by a waiter that was just timing out costs
// at most one slice.
const WAIT_SLICE_MS = 50

const FREE = 0
const HELD = 1

// `Atomics.waitAsync` exists at run time (Node >= 16) but lib ES2023 does not type it.
type WaitAsync = (typedArray: Int32Array, index: number, value: number, timeoutMs?: number) =>
  { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> }
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync

export function createCasLockBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(CAS_LOCK_STRIPES_COUNT * Int32Array.BYTES_PER_ELEMENT)
}

export class StripedCasLock {
  private readonly slots: Int32Array

  constructor(buffer: SharedArrayBuffer = createCasLockBuffer(), private readonly waitMsMax = CAS_LOCK_WAIT_MS_MAX) {
    if (buffer.byteLength !== CAS_LOCK_STRIPES_COUNT * Int32Array.BYTES_PER_ELEMENT) {
      throw new TypeError(`StripedCasLock: buffer must have ${CAS_LOCK_STRIPES_COUNT * 4} bytes (createCasLockBuffer), got ${buffer.byteLength}`)
    }
    this.slots = new Int32Array(buffer)
  }

  /**
   * Runs `fn` holding the stripe of `key`. A thread that dies while holding a stripe (worker
   * terminated mid-call) leaves it held: later callers fail with BusyError after
   * `waitMsMax` instead of hanging forever.
   */
  async withLock<T>(key: Uint8Array, fn: () => Promise<T>): Promise<T> {
    const stripe = stripeOf(key)
    await this.acquire(stripe)
    try {
      return await fn()
    } finally {
      Atomics.store(this.slots, stripe, FREE)
      Atomics.notify(this.slots, stripe, 1)
    }
  }

  private async acquire(stripe: number): Promise<void> {
    const deadlineMs = Date.now() + this.waitMsMax
    while (Atomics.compareExchange(this.slots, stripe, FREE, HELD) !== FREE) {
      const leftMs = deadlineMs - Date.now()
      if (leftMs <= 0) throw new BusyError(`storage: compare-and-set lock stripe ${stripe} held for over ${this.waitMsMax} ms`)
      const sliceMs = Math.min(leftMs, WAIT_SLICE_MS)
      const result = waitAsync(this.slots, stripe, HELD, sliceMs)
      if (result.async) await withKeepAlive(result.value, sliceMs)
    }
  }
}

/**
 * A pending `Atomics.waitAsync` does not keep Node's event loop alive: a thread with nothing
 * else to do would exit in the middle of the wait. A ref'd timer of the same length holds it.
 */
async function withKeepAlive(wait: Promise<unknown>, sliceMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([wait, new Promise<void>((resolve) => { timer = setTimeout(resolve, sliceMs) })])
  } finally {
    clearTimeout(timer)
  }
}

/** FNV-1a, 32 bit: cheap and spreads short keys well enough for striping. */
function stripeOf(key: Uint8Array): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    hash ^= key[i]!
    hash = Math.imul(hash, 0x01000193)
  }
  return (hash >>> 0) % CAS_LOCK_STRIPES_COUNT
}
