// What the main thread and a partition worker share besides the rings: the start-up data, the
// control words, the stats slots and the rare events posted by the worker.

import type { RingShape } from './ring/spsc-ring.js'
import type { StorageConfig } from './storage/types.js'

export const Control = {
  /** Non-zero: finish what is in the ring, flush, close storage and exit. */
  SHUTDOWN: 0,
  WORDS: 4,
} as const

/** Float64 slots the worker updates after each batch; the main thread reads them for metrics. */
export const Stat = {
  BATCHES: 0,
  COMMANDS: 1,
  COMMITTED: 2,
  COMMIT_MS_TOTAL: 3,
  LAST_BATCH_SIZE: 4,
  PLOG_OFFSET: 5,
  SLOTS: 8,
} as const

export interface PartitionOptions {
  idempotencyTtlSeconds: number
  batchCommandsMax: number
  wsHeadsCachedMax: number
  recordsCachedMax: number
}

export interface PartitionWorkerData {
  appUrl: string
  appQName: string
  partition: number
  requestRing: RingShape
  replyRing: RingShape
  control: SharedArrayBuffer
  stats: SharedArrayBuffer
  storage: StorageConfig
  options: PartitionOptions
}

export type WorkerEvent =
  | { type: 'ready'; plogOffset: number }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; msg: string }
  | { type: 'fatal'; msg: string }
  | { type: 'exited' }
