// The storage ceiling of a durable command answered one at a time: LevelDB (classic-level, as
// the server opens it) `put` with `sync: true`, awaited one by one, in a temp dir on the same
// filesystem as the server's data (PERFORMANCE.md lists it: 3.6k–5k ops/s on its machine). A
// command one at a time needs at least one such write, so this bounds "commands/s, one at a
// time, durable" on the machine the report ran on.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'

export interface SyncPutCeiling {
  putsPerS: number
  /** Mean time of one synced put, µs. */
  meanUs: number
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
    const t0 = performance.now()
    let puts = 0
    while (performance.now() - t0 < durationMs) {
      new DataView(key.buffer).setUint32(KEY_BYTES - 4, puts)
      await db.put(key, value, { sync: true })
      puts++
    }
    const ms = performance.now() - t0
    return { putsPerS: puts / (ms / 1000), meanUs: (ms * 1000) / puts, durationMs: ms }
  } finally {
    await db.close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}
