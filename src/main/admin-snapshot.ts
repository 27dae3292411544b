// Samples what the admin dashboard shows: partition stats slots, actualizer lags, the query
// pool, the HTTP metrics and the VVM's state. Rates are deltas between consecutive samples;
// the sampler keeps only the previous sample and one minute of error totals (bounded).

import type { AppDef } from '../shared/appdef/types.js'
import type { AdminSnapshot, EnginePoolRow, LeadershipState, PartitionRow } from './admin-wire.js'
import type { ServerMetrics } from './metrics.js'
import type { PartitionSet } from './partitions.js'
import type { QueryPool } from './query-pool.js'

/** Why 60: "recent errors" means the last minute at one sample per second. */
const ERROR_WINDOW_SAMPLES = 60
/** A previous sample older than this gives no rate (the dashboard was idle in between). */
const RATE_GAP_MAX_MS = 5000

/** What only the VVM knows; attached after the server starts (vvm.ts). */
export interface VvmSources {
  leader?: () => boolean
  cluster?: boolean
  problem: () => Error | undefined
}

export interface SamplerSources {
  nodeId: string
  storage: string
  ringBytes: number
  queryQueueMax: number
  apps: ReadonlyMap<string, AppDef>
  appPartitions: ReadonlyMap<string, number>
  partitions: PartitionSet
  queries: QueryPool | undefined
  metrics: ServerMetrics
  serving: () => boolean
  /** Cluster mode: the node serving a partition this node does not. */
  ownerOf?: (app: string, partition: number) => { nodeId: string } | undefined
  /** WASM engine pools, once the engine exposes them; absent: the page shows a placeholder. */
  enginePools?: () => readonly EnginePoolRow[]
}

interface Counters {
  timeMs: number
  committed: Map<string, number>
  commands: number
  batches: number
  commitMs: number
  queriesCompleted: number
  requests: number
  /** Cumulative request-time bucket counts over all routes, `le` ascending. */
  latencyBuckets: number[]
}

export class AdminSampler {
  private readonly startedAtMs = Date.now()
  private prev: Counters | undefined
  private vvm: VvmSources | undefined
  /** Error totals by code, one entry per sample, oldest first (at most ERROR_WINDOW_SAMPLES). */
  private readonly errorWindow: Map<string, number>[] = []

  constructor(private readonly s: SamplerSources) {}

  attach(vvm: VvmSources): void {
    this.vvm = vvm
  }

  sample(): AdminSnapshot {
    const s = this.s
    const now = Date.now()
    const stats = s.partitions.stats()
    const latency = parseHistogram(s.metrics.latency.render())
    const cur: Counters = {
      timeMs: now, committed: new Map(), commands: 0, batches: 0, commitMs: 0,
      queriesCompleted: s.queries?.stats.completed ?? 0, requests: latency.count, latencyBuckets: latency.buckets,
    }
    for (const p of stats) {
      cur.committed.set(`${p.app}#${p.partition}`, p.committed)
      cur.commands += p.commands
      cur.batches += p.batches
      cur.commitMs += p.commitMsTotal
    }
    const prev = this.prev !== undefined && now - this.prev.timeMs <= RATE_GAP_MAX_MS && now > this.prev.timeMs ? this.prev : undefined
    this.prev = cur
    const dtS = prev === undefined ? 0 : (now - prev.timeMs) / 1000
    const rate = (a: number, b: number | undefined): number | null => (prev === undefined || b === undefined ? null : Math.max(0, a - b) / dtS)
    const perBatch = (a: number, b: number | undefined): number | null => {
      const db = prev === undefined ? 0 : cur.batches - prev.batches
      return prev === undefined || b === undefined || db <= 0 ? null : (a - b) / db
    }

    const byKey = new Map(stats.map((p) => [`${p.app}#${p.partition}`, p]))
    const partitions: PartitionRow[] = []
    for (const [app, count] of s.appPartitions) {
      for (let i = 0; i < count; i++) {
        const key = `${app}#${i}`
        const p = byKey.get(key)
        if (p === undefined) {
          const owner = s.ownerOf?.(app, i)?.nodeId ?? null
          partitions.push({ app, partition: i, owner, here: false, inflight: 0, ringBytesUsed: 0, committed: 0, commandsPerS: null, lastBatchSize: 0, plogOffset: 0 })
          continue
        }
        partitions.push({
          app, partition: i, owner: s.nodeId, here: true, inflight: p.pending, ringBytesUsed: p.ringBytesUsed, committed: p.committed,
          commandsPerS: rate(p.committed, prev?.committed.get(key)), lastBatchSize: p.lastBatchSize, plogOffset: p.plogOffset,
        })
      }
    }

    const actualizers = [...s.apps.values()].flatMap((a) => s.partitions.actualizerLags(a.qname, a.asyncProjectors.map((p) => p.qname))
      .map((l) => ({ app: a.qname, partition: l.partition, projector: l.projector, lagEvents: l.lag })))
    const windowBuckets = prev === undefined ? undefined : cur.latencyBuckets.map((c, i) => c - (prev.latencyBuckets[i] ?? 0))
    const q = s.queries?.stats
    return {
      timeMs: now,
      intervalS: dtS,
      node: {
        id: s.nodeId, pid: process.pid, startedAtMs: this.startedAtMs, storage: s.storage, serving: s.serving(),
        leadership: this.leadership(), problem: this.vvm?.problem()?.message ?? null,
      },
      apps: [...s.apps.values()].map((a) => ({
        qname: a.qname, version: a.version, partitions: s.appPartitions.get(a.qname) ?? 0, asyncProjectors: a.asyncProjectors.map((p) => p.qname),
      })),
      partitions,
      totals: {
        commandsPerS: prev === undefined ? null : sum(partitions.map((p) => p.commandsPerS ?? 0)),
        requestsPerS: rate(cur.requests, prev?.requests),
        latencyMsP99: windowBuckets === undefined ? null : quantileMs(latency.bounds, windowBuckets, 0.99, cur.requests - prev!.requests),
        latencyMsP50: windowBuckets === undefined ? null : quantileMs(latency.bounds, windowBuckets, 0.5, cur.requests - prev!.requests),
        batchSizeMean: perBatch(cur.commands, prev?.commands),
        commitMsMean: perBatch(cur.commitMs, prev?.commitMs),
        inflight: sum(stats.map((p) => p.pending)),
        ringBytesUsed: sum(stats.map((p) => p.ringBytesUsed)),
        ringBytesCapacity: stats.length * s.ringBytes,
        actualizerLagEvents: sum(actualizers.map((a) => a.lagEvents)),
      },
      queries: q === undefined ? null : {
        threads: q.threads, queueSize: q.queueSize, queueMax: s.queryQueueMax,
        completedPerS: rate(cur.queriesCompleted, prev?.queriesCompleted), runTimeMsP99: q.runTimeP99Ms,
      },
      enginePools: s.enginePools === undefined ? null : [...s.enginePools()],
      actualizers,
      errors: this.errors(),
    }
  }

  private leadership(): LeadershipState {
    const v = this.vvm
    if (v === undefined) return 'unmanaged'
    if (v.cluster === true) return 'cluster'
    if (v.leader === undefined) return 'unmanaged'
    return v.leader() ? 'held' : 'lost'
  }

  private errors(): AdminSnapshot['errors'] {
    const totals = parseCounter(this.s.metrics.errors.render(), 'code')
    this.errorWindow.push(totals)
    if (this.errorWindow.length > ERROR_WINDOW_SAMPLES) this.errorWindow.shift()
    const oldest = this.errorWindow[0]!
    return [...totals].map(([code, total]) => ({ code, total, lastMinute: total - (oldest.get(code) ?? 0) }))
      .sort((a, b) => b.lastMinute - a.lastMinute || b.total - a.total)
  }
}

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0)

// The metrics classes keep their series private and expose the Prometheus text exposition
// format; reading that format (a stable one) keeps this view out of metrics.ts.
const SAMPLE_RE = /^([a-z_:][a-z0-9_:]*)(?:\{(.*)\})? (\S+)$/i
const LABEL_RE = /([a-z_][a-z0-9_]*)="((?:[^"\\]|\\.)*)"/gi

function parseSample(line: string): { name: string; labels: Map<string, string>; value: number } | undefined {
  const m = SAMPLE_RE.exec(line)
  if (m === null) return undefined
  const labels = new Map<string, string>()
  for (const l of (m[2] ?? '').matchAll(LABEL_RE)) labels.set(l[1]!, l[2]!.replace(/\\n/g, '\n').replace(/\\(.)/g, '$1'))
  return { name: m[1]!, labels, value: Number(m[3]) }
}

/** A counter's values summed by one label. */
export function parseCounter(text: string, label: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const s = parseSample(line)
    if (s === undefined) continue
    const key = s.labels.get(label) ?? ''
    out.set(key, (out.get(key) ?? 0) + s.value)
  }
  return out
}

/** A histogram's cumulative bucket counts summed over all its series (finite `le` only). */
export function parseHistogram(text: string): { bounds: number[]; buckets: number[]; count: number } {
  const byLe = new Map<number, number>()
  let count = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const s = parseSample(line)
    if (s === undefined) continue
    if (s.name.endsWith('_count')) count += s.value
    else if (s.name.endsWith('_bucket')) {
      const le = s.labels.get('le')
      if (le !== undefined && le !== '+Inf') byLe.set(Number(le), (byLe.get(Number(le)) ?? 0) + s.value)
    }
  }
  const bounds = [...byLe.keys()].sort((a, b) => a - b)
  return { bounds, buckets: bounds.map((b) => byLe.get(b)!), count }
}

/**
 * A quantile in ms from cumulative bucket counts (seconds bounds), interpolated linearly in
 * its bucket as Prometheus' histogram_quantile does. Past the last bound: the last bound.
 */
export function quantileMs(boundsS: readonly number[], cumulative: readonly number[], q: number, total = cumulative.at(-1) ?? 0): number | null {
  if (total <= 0 || boundsS.length === 0) return null
  const rank = q * total
  let lowerS = 0
  let below = 0
  for (let i = 0; i < boundsS.length; i++) {
    const c = cumulative[i]!
    if (c >= rank) {
      const inBucket = c - below
      const frac = inBucket <= 0 ? 1 : (rank - below) / inBucket
      return (lowerS + (boundsS[i]! - lowerS) * frac) * 1000
    }
    lowerS = boundsS[i]!
    below = c
  }
  return boundsS.at(-1)! * 1000
}
