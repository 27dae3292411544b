// What the main thread and a partition worker share besides the rings: the start-up data, the
// control words, the stats slots and the rare events posted by the worker.

import type { RingShape } from './ring/spsc-ring.js'
import type { StorageConfig } from './storage/types.js'
import { STAGE_SLOTS } from './stage-histogram.js'

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
  /** Events behind the PLog for each async projector of the app, in definition order. */
  /** WASM engine pools of the worker: instances, borrows and trapped instances replaced. */
  ENGINE_INSTANCES: 6,
  ENGINE_BORROWS: 7,
  ACTUALIZER_LAG_BASE: 8,
  ACTUALIZERS_MAX: 64,
  ENGINE_REPLACED: 72,
  /** Subscription groups this partition keeps, evaluations run, diffs produced. */
  SUB_GROUPS: 73,
  SUB_EVALUATIONS: 74,
  SUB_DIFFS: 75,
  /** The worker's V8 heap in use, bytes (published with the lags). */
  HEAP_USED: 76,
  /** Time executing batches (the stages before the commit), ms. */
  EXECUTE_MS_TOTAL: 77,
  /** Time the worker had nothing to do but wait for the commit under way, ms. */
  COMMIT_WAIT_MS_TOTAL: 78,
  /** Commands that arrived during a commit and joined the next batch before its commit. */
  JOINED: 79,
  /** Idle spins (option spinUs) that caught a request, and those that ended without one. */
  SPINS_CAUGHT: 80,
  SPINS_MISSED: 81,
  /** Blocking waits after a batch (option blockMs) that caught a request, and those that timed out. */
  BLOCKS_CAUGHT: 82,
  BLOCKS_MISSED: 83,
  /** The stage histograms of the worker's commands (src/shared/stage-histogram.ts), STAGE_SLOTS slots. */
  STAGES_BASE: 84,
  /** Group-commit waits (option gatherUs) after which more requests were there, and those that caught none. */
  GATHERS_CAUGHT: 84 + STAGE_SLOTS,
  GATHERS_MISSED: 85 + STAGE_SLOTS,
  SLOTS: 86 + STAGE_SLOTS,
} as const

/** WASM extensions (docs/extensions.md): the engine pools each worker makes at start. */
export interface WasmOptions {
  /** Wall-clock budget of one extension call, ms. */
  deadlineMs: number
  /** Linear memory of one extension instance, bytes. */
  memoryBytesMax: number
  /** Instances made at start per WASM module and processor kind (command, query, projector). */
  poolSize: number
  /** Where compiled modules are kept (private to the server). */
  cacheDir: string
}

export interface PartitionOptions {
  wasm: WasmOptions
  actualizerBatchEventsMax: number
  actualizerFlushIntervalMs: number
  actualizerRetryMaxMs: number
  idempotencyTtlSeconds: number
  batchCommandsMax: number
  /** After a batch, how long the worker polls its request ring before it sleeps (0: never). */
  spinUs: number
  /** After a batch, the next request is awaited this long blocking the thread (0: off). */
  blockMs: number
  /** A small batch executed while requests come often waits up to this long for more before its commit (0: off). */
  gatherUs: number
  wsHeadsCachedMax: number
  recordsCachedMax: number
  subscriptions: {
    groupsMax: number
    rowsMax: number
    historyDiffsMax: number
    historyBytesMax: number
    graceMs: number
  }
}

export interface PartitionWorkerData {
  appUrl: string
  appQName: string
  partition: number
  /** How many partitions the app has (for its app workspace id). */
  partitionsCount: number
  requestRing: RingShape
  replyRing: RingShape
  control: SharedArrayBuffer
  stats: SharedArrayBuffer
  storage: StorageConfig
  options: PartitionOptions
}

/** Main → worker, over postMessage (rare, coarse). */
export type WorkerCommand =
  | { type: 'deploy'; appUrl: string; seq: number }
  | { type: 'undeploy'; seq: number }

export type WorkerEvent =
  | { type: 'ready'; plogOffset: number }
  | { type: 'deployed'; seq: number; error?: string }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; msg: string }
  | { type: 'fatal'; msg: string }
  | { type: 'exited' }
