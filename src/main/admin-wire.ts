// The admin dashboard's wire format: one JSON `AdminSnapshot` per second on /admin/stream.
// Types only, with no imports: the page (admin/src) imports this file too, so it must compile
// for the browser as well as for Node.

/** Who leads: `held`/`lost` for the VVM lease; `cluster` when partitions are leased one by one
 * (no VVM-wide leader); `unmanaged` when the server runs without a VVM (tests, embedding). */
export type LeadershipState = 'held' | 'lost' | 'cluster' | 'unmanaged'

export interface AdminSnapshot {
  /** Sample time, epoch ms. */
  timeMs: number
  /** Seconds since the previous sample; rates are per second over this interval. */
  intervalS: number
  node: {
    id: string
    pid: number
    startedAtMs: number
    storage: string
    serving: boolean
    leadership: LeadershipState
    /** The VVM's problem (seed 003), if any: once set, the node stops. */
    problem: string | null
  }
  apps: { qname: string; version: string; partitions: number; asyncProjectors: string[] }[]
  partitions: PartitionRow[]
  totals: {
    /** Δcommitted / Δt over all partitions this node serves; null on the first sample. */
    commandsPerS: number | null
    /** Δrequests / Δt of HTTP requests answered (every route). */
    requestsPerS: number | null
    /** p99 and p50 of HTTP request time over the last interval, interpolated in the histogram
     * buckets; null when no request was answered in it. */
    latencyMsP99: number | null
    latencyMsP50: number | null
    /** Commands per batch over the last interval (Δcommands / Δbatches). */
    batchSizeMean: number | null
    /** Time per group commit over the last interval (ΔcommitMs / Δbatches). */
    commitMsMean: number | null
    inflight: number
    ringBytesUsed: number
    ringBytesCapacity: number
    actualizerLagEvents: number
  }
  queries: QueryPoolRow | null
  /** null: this build reports no engine pools (no accessor yet); [] would mean none exist. */
  enginePools: EnginePoolRow[] | null
  actualizers: { app: string; partition: number; projector: string; lagEvents: number }[]
  errors: { code: string; total: number; lastMinute: number }[]
}

export interface PartitionRow {
  app: string
  partition: number
  /** The node that serves it: this node's id, another node's (cluster mode), or null (unowned). */
  owner: string | null
  here: boolean
  /** The figures below are 0 for partitions served elsewhere. */
  inflight: number
  ringBytesUsed: number
  committed: number
  commandsPerS: number | null
  lastBatchSize: number
  plogOffset: number
}

export interface QueryPoolRow {
  threads: number
  queueSize: number
  queueMax: number
  completedPerS: number | null
  runTimeMsP99: number
}

/** A pool of pre-instantiated WASM engines (seed 000), as reported by its accessor. */
export interface EnginePoolRow {
  app: string
  partition: number | null
  /** Pre-instantiated WASM engines in the worker's pools (all modules, all processor kinds). */
  instances: number
  /** Engines borrowed for a call since start. */
  borrows: number
  /** Engines discarded after a trap and replaced since start. */
  replaced: number
}
