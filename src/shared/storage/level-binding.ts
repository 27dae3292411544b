// What the classic-level binding built by scripts/build-level.sh offers beyond the stock one
// (native/level/*.patch): a batch write on the calling thread and a whole batch's puts in one
// call, and the chained batch's native handle they take. Shared by the LevelDB backend's app
// storage and its provider (the commit log's replay).

import { createRequire } from 'node:module'
import type { ClassicLevel } from 'classic-level'

export type Db = ClassicLevel<Uint8Array, Uint8Array>
export const SYNC = { sync: true } as const
// LevelDB appends to one log in order: a later synced write (a commit log's checkpoint too) flushes this one.
export const NO_SYNC = { sync: false } as const

/**
 * classic-level's batch write on the calling thread, where scripts/build-level.sh installed
 * the binding that has it (`batch_write_now`); undefined with the stock binding, whose writes
 * all go through libuv's thread pool. A write there costs two thread hand-offs (the pool
 * thread's wake-up, the completion's), tens of µs of CPU each on a small VM
 * (docs/benchmarks.md, fifth session): a caller with nothing else to do saves them.
 */
type WriteNow = (batchContext: unknown, options: { sync: boolean }) => void
/**
 * A whole batch's puts in one call (`batch_put_packed`, scripts/build-level.sh): records of
 * [u32 LE key length][key][u32 LE value length][value] in the first `byteLength` bytes. A put
 * per item through abstract-level costs its option handling, two views, a native call and two
 * native copies (~1.5k instructions an item, bench/instructions.ts); this costs the bytes.
 */
type PutPacked = (batchContext: unknown, packed: Uint8Array, byteLength: number) => void
type BatchWrite = (batchContext: unknown, options: { sync: boolean }) => Promise<void>
const binding = createRequire(import.meta.url)('classic-level/binding.js') as { batch_write_now?: WriteNow; batch_put_packed?: PutPacked; batch_write: BatchWrite }
export const writeNow: WriteNow | undefined = typeof binding.batch_write_now === 'function' ? binding.batch_write_now : undefined
export const putPacked: PutPacked | undefined = typeof binding.batch_put_packed === 'function' ? binding.batch_put_packed : undefined
/** classic-level's own batch write through libuv's thread pool, by the batch's native handle. */
export const batchWrite: BatchWrite = binding.batch_write
/** The private symbol under which classic-level's ChainedBatch keeps its native batch. */
let batchContextKey: symbol | undefined

export function batchContextOf(batch: object): unknown {
  batchContextKey ??= Object.getOwnPropertySymbols(batch).find((k) => k.description === 'context')
  return batchContextKey === undefined ? undefined : (batch as Record<symbol, unknown>)[batchContextKey]
}

/** Whether this process's classic-level can write on the calling thread (`PutBatchOptions.inline`). */
export const levelWritesInline = writeNow !== undefined
/** Whether this process's classic-level takes a batch's puts packed in one call. */
export const levelPutsPacked = putPacked !== undefined

/** Writes packed puts (`batch_put_packed`'s format) as one LevelDB batch, on this thread where it can. */
export async function applyPacked(db: Db, packed: Uint8Array, length: number, sync: { sync: boolean }): Promise<void> {
  const batch = db.batch()
  try {
    const context = batchContextOf(batch)
    putPacked!(context, packed, length)
    if (writeNow !== undefined) writeNow(context, sync)
    else await batchWrite(context, sync)
  } finally {
    await batch.close()
  }
}
