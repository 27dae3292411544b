// A single-producer/single-consumer byte ring on a SharedArrayBuffer, the Disruptor way:
// power-of-two capacity with a mask, preallocated, one writer per counter. Frames are a u32
// little-endian length and the payload; a frame may wrap around the end of the data region.
//
// The consumer drains everything available, then publishes its read index once and notifies
// once. Either side sleeps only after announcing it in a flag word, so the other side calls
// `Atomics.notify` only when someone actually waits (a notify costs a syscall).

import assert from 'node:assert/strict'

// Header words (Int32), each on its own 64-byte cache line to avoid false sharing.
const WRITE_INDEX = 0
const READ_INDEX = 16
const CONSUMER_WAITING = 32
const PRODUCER_WAITING = 48
const HEADER_WORDS = 64
const HEADER_BYTES = HEADER_WORDS * 4
const FRAME_HEADER_BYTES = 4

export const RING_BYTES_MIN = 1024
/** Why 2^30: indices are u32 counters that wrap; distances must stay below 2^31. */
export const RING_BYTES_MAX = 1 << 30

export interface RingShape {
  readonly sab: SharedArrayBuffer
  readonly capacityBytes: number
}

export function createRing(capacityBytes: number): RingShape {
  assert.ok(Number.isInteger(capacityBytes) && capacityBytes >= RING_BYTES_MIN && capacityBytes <= RING_BYTES_MAX, `ring capacity ${capacityBytes} out of range`)
  assert.equal(capacityBytes & (capacityBytes - 1), 0, `ring capacity ${capacityBytes} must be a power of two`)
  return { sab: new SharedArrayBuffer(HEADER_BYTES + capacityBytes), capacityBytes }
}

class RingBase {
  protected readonly header: Int32Array
  protected readonly data: Uint8Array
  protected readonly view: DataView
  protected readonly mask: number
  readonly capacityBytes: number
  /** The largest payload a frame may carry; larger ones are refused by the producer. */
  readonly frameBytesMax: number

  constructor(shape: RingShape) {
    this.header = new Int32Array(shape.sab, 0, HEADER_WORDS)
    this.data = new Uint8Array(shape.sab, HEADER_BYTES, shape.capacityBytes)
    this.view = new DataView(shape.sab, HEADER_BYTES, shape.capacityBytes)
    this.mask = shape.capacityBytes - 1
    this.capacityBytes = shape.capacityBytes
    // A quarter of the ring: one large frame never starves the others for long.
    this.frameBytesMax = (shape.capacityBytes >>> 2) - FRAME_HEADER_BYTES
  }

  /** Bytes written and not yet consumed. */
  usedBytes(): number {
    return (Atomics.load(this.header, WRITE_INDEX) - Atomics.load(this.header, READ_INDEX)) >>> 0
  }
}

export class RingProducer extends RingBase {
  private writeIndex: number

  constructor(shape: RingShape) {
    super(shape)
    this.writeIndex = Atomics.load(this.header, WRITE_INDEX) >>> 0
  }

  /**
   * Appends one frame without publishing it (call `publish()` after a burst). Returns false,
   * writing nothing, when the frame does not fit now. Throws for a frame over `frameBytesMax`.
   */
  tryWrite(payload: Uint8Array): boolean {
    const len = payload.byteLength
    assert.ok(len <= this.frameBytesMax, `frame of ${len} bytes exceeds ${this.frameBytesMax}`)
    const readIndex = Atomics.load(this.header, READ_INDEX) >>> 0
    const used = (this.writeIndex - readIndex) >>> 0
    if (used + FRAME_HEADER_BYTES + len > this.capacityBytes) return false
    this.writeU32(this.writeIndex, len)
    this.copyIn((this.writeIndex + FRAME_HEADER_BYTES) >>> 0, payload)
    this.writeIndex = (this.writeIndex + FRAME_HEADER_BYTES + len) >>> 0
    return true
  }

  /** Makes every written frame visible and wakes the consumer if it sleeps. */
  publish(): void {
    if ((Atomics.load(this.header, WRITE_INDEX) >>> 0) === this.writeIndex) return
    Atomics.store(this.header, WRITE_INDEX, this.writeIndex | 0)
    if (Atomics.load(this.header, CONSUMER_WAITING) !== 0) Atomics.notify(this.header, WRITE_INDEX)
  }

  /** Wakes a sleeping consumer even without new data (shutdown). */
  wakeConsumer(): void {
    Atomics.notify(this.header, WRITE_INDEX)
  }

  /** Resolves when the consumer has freed space (or after `timeoutMs`). */
  async waitForSpace(timeoutMs: number): Promise<void> {
    const seen = Atomics.load(this.header, READ_INDEX)
    Atomics.store(this.header, PRODUCER_WAITING, 1)
    try {
      if (Atomics.load(this.header, READ_INDEX) !== seen) return
      await waitAsyncHeld(this.header, READ_INDEX, seen, timeoutMs)
    } finally {
      Atomics.store(this.header, PRODUCER_WAITING, 0)
    }
  }

  private writeU32(at: number, v: number): void {
    const i = at & this.mask
    if (i + 4 <= this.capacityBytes) { this.view.setUint32(i, v, true); return }
    for (let k = 0; k < 4; k++) this.data[(at + k) & this.mask] = (v >>> (8 * k)) & 0xff
  }

  private copyIn(at: number, src: Uint8Array): void {
    const i = at & this.mask
    const first = Math.min(src.byteLength, this.capacityBytes - i)
    this.data.set(first === src.byteLength ? src : src.subarray(0, first), i)
    if (first < src.byteLength) this.data.set(src.subarray(first), 0)
  }
}

export class RingConsumer extends RingBase {
  private readIndex: number

  constructor(shape: RingShape) {
    super(shape)
    this.readIndex = Atomics.load(this.header, READ_INDEX) >>> 0
  }

  /**
   * Calls `onFrame` for up to `framesMax` available frames (stopping once `bytesMax` payload
   * bytes were taken, after at least one frame), then publishes the read index once.
   * The bytes passed to `onFrame` are valid only during the call (they may view the ring).
   */
  drain(onFrame: (payload: Uint8Array) => void, framesMax: number, bytesMax = Infinity): number {
    const writeIndex = Atomics.load(this.header, WRITE_INDEX) >>> 0
    let count = 0
    let bytes = 0
    while (count < framesMax && bytes < bytesMax && this.readIndex !== writeIndex) {
      const len = this.readU32(this.readIndex)
      assert.ok(len <= this.frameBytesMax, `corrupt ring: frame length ${len}`)
      const start = (this.readIndex + FRAME_HEADER_BYTES) >>> 0
      this.readIndex = (start + len) >>> 0
      count++
      bytes += len
      onFrame(this.copyOut(start, len))
    }
    if (count > 0) {
      Atomics.store(this.header, READ_INDEX, this.readIndex | 0)
      if (Atomics.load(this.header, PRODUCER_WAITING) !== 0) Atomics.notify(this.header, READ_INDEX)
    }
    return count
  }

  /** Ends a pending `waitForData` early (the consumer's own shutdown). */
  interruptWait(): void {
    Atomics.notify(this.header, WRITE_INDEX)
  }

  hasData(): boolean {
    return (Atomics.load(this.header, WRITE_INDEX) >>> 0) !== this.readIndex
  }

  /** Resolves when data is published, on a wake-up, or after `timeoutMs`. */
  async waitForData(timeoutMs: number): Promise<void> {
    const seen = this.readIndex | 0
    Atomics.store(this.header, CONSUMER_WAITING, 1)
    try {
      if (Atomics.load(this.header, WRITE_INDEX) !== seen) return
      await waitAsyncHeld(this.header, WRITE_INDEX, seen, timeoutMs)
    } finally {
      Atomics.store(this.header, CONSUMER_WAITING, 0)
    }
  }

  /**
   * Blocks this thread (`Atomics.wait`: not on a main thread) until data is published, a
   * wake-up, or `timeoutMs`; true when there is data. Cheaper to wake than `waitForData` (a
   * futex instead of the event loop's eventfd, its poll and a task), but nothing else of this
   * thread runs meanwhile: for short waits only.
   */
  waitForDataBlocking(timeoutMs: number): boolean {
    const seen = this.readIndex | 0
    Atomics.store(this.header, CONSUMER_WAITING, 1)
    try {
      if (Atomics.load(this.header, WRITE_INDEX) === seen) Atomics.wait(this.header, WRITE_INDEX, seen, timeoutMs)
    } finally {
      Atomics.store(this.header, CONSUMER_WAITING, 0)
    }
    return this.hasData()
  }

  private readU32(at: number): number {
    const i = at & this.mask
    if (i + 4 <= this.capacityBytes) return this.view.getUint32(i, true)
    let v = 0
    for (let k = 0; k < 4; k++) v |= this.data[(at + k) & this.mask]! << (8 * k)
    return v >>> 0
  }

  private copyOut(at: number, len: number): Uint8Array {
    const i = at & this.mask
    if (i + len <= this.capacityBytes) return this.data.subarray(i, i + len)
    const out = new Uint8Array(len)
    const first = this.capacityBytes - i
    out.set(this.data.subarray(i), 0)
    out.set(this.data.subarray(0, len - first), first)
    return out
  }
}

/**
 * `Atomics.waitAsync` does not keep the event loop alive (a worker would exit while waiting),
 * so a timer is held for as long as the wait lasts; it also ends the wait at `timeoutMs`. The
 * timeout is not given to V8: a timed `waitAsync` posts a delayed task to its thread's platform
 * queue, which wakes that thread's own event loop once per wait (an eventfd write, a read and
 * a loop turn), with every command that puts a partition to sleep. Ending a wait by notifying
 * the word may wake another waiter of it too; every caller checks its condition again.
 */
export async function waitAsyncHeld(arr: Int32Array, index: number, value: number, timeoutMs: number): Promise<void> {
  const w = Atomics.waitAsync(arr, index, value)
  if (!w.async) return
  const hold = setTimeout(() => Atomics.notify(arr, index), timeoutMs)
  try {
    await w.value
  } finally {
    clearTimeout(hold)
  }
}
