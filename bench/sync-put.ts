// The storage ceiling of a durable command answered one at a time: LevelDB (classic-level, as
// the server opens it) `put` with `sync: true`, awaited one by one, in a temp dir on the same
// filesystem as the server's data (PERFORMANCE.md lists it: 3.6k–5k ops/s on its machine). A
// command one at a time needs at least one such write, so this bounds "commands/s, one at a
// time, durable" on the machine the report ran on; and every durable reply waits for one, so
// its tail (p99) is a floor under the p99 of any durable command on this disk.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'

export interface SyncPutCeiling {
  putsPerS: number
  /** Mean time of one synced put, µs. */
  meanUs: number
  /** Percentiles of one synced put's time, µs. */
  p50Us: number
  p99Us: number
  durationMs: number
}

/** Key and value sizes of a deposit's account record, roughly. */
const KEY_BYTES = 40
const VALUE_BYTES = 100

export async function syncPutCeiling(durationMs: number): Promise<SyncPutCeiling> {
  const dir = await mkdtemp(join(tmpdir(), 'vvm-bench-sync-put-'))
  const db = new ClassicLevel<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view', multithreading: true })
  try {
    await db.open()
    const key = new Uint8Array(KEY_BYTES)
    const value = new Uint8Array(VALUE_BYTES)
    const timesUs: number[] = []
    const t0 = performance.now()
    let at = t0
    while (at - t0 < durationMs) {
      new DataView(key.buffer).setUint32(KEY_BYTES - 4, timesUs.length)
      await db.put(key, value, { sync: true })
      const now = performance.now()
      timesUs.push((now - at) * 1000)
      at = now
    }
    const ms = at - t0
    timesUs.sort((a, b) => a - b)
    const pct = (q: number): number => timesUs[Math.min(timesUs.length - 1, Math.floor(timesUs.length * q))]!
    return { putsPerS: timesUs.length / (ms / 1000), meanUs: (ms * 1000) / timesUs.length, p50Us: pct(0.5), p99Us: pct(0.99), durationMs: ms }
  } finally {
    await db.close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}
