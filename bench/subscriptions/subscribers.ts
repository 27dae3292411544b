// The subscriber threads of the fan-out (bench/subscriptions/fanout.ts), both sides: in each
// worker, SDK subscribers of the engine (or raw `ws` subscribers of the ceiling server) that
// check every diff and record, per (subscriber, deposit), the latency from the deposit's send;
// in the main thread, `withSubscribers`, which starts the workers, waits until every subscriber
// has joined and adds up their reports.

import { Worker, parentPort, workerData } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import { WebSocket as RawWebSocket } from 'ws'
import type { Histogram } from 'hdr-histogram-js'
import { connect, type Subscription, type VvmClient } from '../../src/client/index.js'
import { decodeHistogram, encodeHistogram, newHistogram } from '../load/histogram.js'
import { nowUs, toUs } from './clock.js'
import { APP, CALL_TIMEOUT_MS } from './engine.js'
import { Errors, type ErrorCount } from './errors.js'
import { schedule, type SharedTimes } from './open-loop.js'
import type { Options } from './options.js'

/**
 * The entry, bench/subscriptions.ts: it runs `subscriberThread` when started as a worker (and
 * the ceiling server with --fanout-ceiling-server).
 */
export const ENTRY_FILE = fileURLToPath(new URL('../subscriptions.js', import.meta.url))

/** The fan-out account's workspace; any id works, a round one is easy to find in logs. */
export const FANOUT_WSID = 100_000

/** Why 64: SDK subscribes in flight per connection while the subscribers join (the server answers them between batches). */
const JOIN_PIPELINE = 64

/**
 * What a subscriber thread records: for every (subscriber, deposit) pair of the measured
 * window, the latency to the diff covering it; the toOffset each deposit's diff carried.
 */
class FanoutRecorder {
  readonly corrected = newHistogram()
  readonly uncorrected = newHistogram()
  readonly errors = new Errors()
  diffs = 0
  /** Diffs that covered more than one deposit (deposits in one group commit, or held-back diffs composed for a congested connection). */
  coalesced = 0
  /** (subscriber, deposit) pairs delivered. */
  pairs = 0
  complete = 0
  firstDiffUs = 0
  lastDiffUs = 0
  /** toOffset of the diff that ended at balance k (0: not seen). */
  readonly offsets: Float64Array

  constructor(private readonly t: SharedTimes, private readonly measureFrom: number, private readonly measureTo: number, readonly total: number) {
    this.offsets = new Float64Array(total + 1)
  }

  /** A diff took one subscriber from balance `prev` to `b` at time `at`, ending at `toOffset` (0: not known). */
  onDiff(prev: number, b: number, toOffset: number, at: number): void {
    this.diffs++
    if (this.firstDiffUs === 0) this.firstDiffUs = at
    this.lastDiffUs = at
    if (b - prev > 1) this.coalesced++
    if (b > this.total) return this.errors.add('content: balance above the deposits sent', `balance ${b}, ${this.total} deposits`)
    if (Atomics.load(this.t.published, 0) < b) return this.errors.add('order: diff before its deposit was sent', `balance ${b}`)
    for (let k = prev + 1; k <= b; k++) {
      this.pairs++
      if (k < this.measureFrom || k > this.measureTo) continue
      this.corrected.recordValue(toUs(at - this.t.times[2 * k]!))
      this.uncorrected.recordValue(toUs(at - this.t.times[2 * k + 1]!))
    }
    if (toOffset > 0) {
      const seen = this.offsets[b]!
      if (seen === 0) this.offsets[b] = toOffset
      else if (seen !== toOffset) this.errors.add('content: one deposit, different toOffsets', `balance ${b}: ${seen} and ${toOffset}`)
    }
    if (b === this.total) this.complete++
  }

  report(subscribers: number, elu: number): FanoutReport {
    return {
      type: 'report', subscribers, corrected: encodeHistogram(this.corrected), uncorrected: encodeHistogram(this.uncorrected),
      errors: this.errors.toJSON(), diffs: this.diffs, coalesced: this.coalesced, pairs: this.pairs, complete: this.complete,
      firstDiffUs: this.firstDiffUs, lastDiffUs: this.lastDiffUs, offsets: Array.from(this.offsets), elu,
    }
  }
}

interface FanoutReport {
  type: 'report'
  subscribers: number
  corrected: string
  uncorrected: string
  errors: Record<string, ErrorCount>
  diffs: number
  coalesced: number
  pairs: number
  complete: number
  firstDiffUs: number
  lastDiffUs: number
  offsets: number[]
  elu: number
}

interface SubscriberJob {
  kind: 'sdk' | 'raw'
  url: string
  account: number
  connections: number
  perConnection: number
  times: SharedTimes
  measureFrom: number
  measureTo: number
  total: number
  drainS: number
}

type ToSubscribers = { type: 'start' } | { type: 'finish' } | { type: 'close' }
type FromSubscribers = { type: 'ready' } | { type: 'error'; message: string } | FanoutReport | { type: 'closed' }

/** SDK subscribers: each subscription iterated with `for await`, as an application does. */
async function sdkSubscribers(job: SubscriberJob, rec: FanoutRecorder, ready: () => void): Promise<() => Promise<void>> {
  const clients: VvmClient[] = []
  for (let i = 0; i < job.connections; i++) clients.push(await connect(job.url, { app: APP, wsid: FANOUT_WSID, timeoutMs: CALL_TIMEOUT_MS }))
  const subs: Subscription[] = []
  let snapshots = 0
  const wanted = job.connections * job.perConnection
  const consume = async (s: Subscription): Promise<void> => {
    let last = -1
    let lastTo = -1
    let afterSnapshot = false
    try {
      for await (const e of s) {
        const at = nowUs()
        if (e.type === 'snapshot') {
          const b = e.rows.length === 1 ? e.rows[0]!.balance : undefined
          if (last >= 0) rec.errors.add(`snapshot after the first (cause ${e.cause})`, `offset ${e.offset}, balance ${String(b)}`)
          else if (b !== 0) rec.errors.add('content: first snapshot is not balance 0', JSON.stringify(e.rows).slice(0, 200))
          if (typeof b === 'number') last = Math.max(last, b)
          lastTo = e.offset
          afterSnapshot = true
          if (++snapshots === wanted) ready()
          continue
        }
        const op = e.ops.length === 1 ? e.ops[0]! : undefined
        const b = op !== undefined && op.op === 'update' && op.key === 0 ? op.row?.balance : undefined
        if (typeof b !== 'number') {
          rec.errors.add('content: diff is not one update of row 0 with a balance', JSON.stringify(e).slice(0, 200))
          continue
        }
        if (afterSnapshot ? e.fromOffset > lastTo : e.fromOffset !== lastTo) {
          rec.errors.add(afterSnapshot ? 'order: first diff starts after the snapshot offset' : 'order: fromOffset is not the previous toOffset', `from ${e.fromOffset}, previous ${lastTo}`)
        }
        afterSnapshot = false
        if (b <= last) {
          rec.errors.add('order: balance did not grow', `balance ${b} after ${last}`)
          continue
        }
        rec.onDiff(last, b, e.toOffset, at)
        last = b
        lastTo = e.toOffset
      }
    } catch (err) {
      rec.errors.add('transport: subscription failed', (err as Error).message)
    }
  }
  // Each connection joins its subscribers JOIN_PIPELINE at a time.
  await Promise.all(clients.map(async (c) => {
    let next = 0
    await Promise.all(Array.from({ length: Math.min(JOIN_PIPELINE, job.perConnection) }, async () => {
      while (next < job.perConnection) {
        next++
        const s = await c.subscribe({ query: 'bank.Balance', args: { account: job.account } })
        subs.push(s)
        void consume(s)
      }
    }))
  }))
  return async () => {
    await Promise.all(subs.map((s) => s.unsubscribe()))
    for (const c of clients) await c.close()
  }
}

/** Raw `ws` subscribers of the ceiling server: one 8-byte frame [subscriber, k] per virtual subscriber. */
async function rawSubscribers(job: SubscriberJob, rec: FanoutRecorder, ready: () => void): Promise<() => Promise<void>> {
  const sockets: RawWebSocket[] = []
  let registered = 0
  let closing = false
  await Promise.all(Array.from({ length: job.connections }, () => new Promise<void>((resolve, reject) => {
    const ws = new RawWebSocket(job.url, { perMessageDeflate: false })
    const last = new Int32Array(job.perConnection)
    ws.once('error', (e) => reject(e))
    ws.on('error', (e) => rec.errors.add('transport: ceiling connection error', e.message))
    ws.on('close', (code) => { if (!closing) rec.errors.add('transport: ceiling connection closed', String(code)) })
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const at = nowUs()
      if (!isBinary) {
        if (++registered === job.connections) ready()
        return
      }
      const i = data.readUInt32LE(0)
      const k = data.readUInt32LE(4)
      const prev = last[i]!
      if (k <= prev) return rec.errors.add('order: k did not grow', `${k} after ${prev}`)
      rec.onDiff(prev, k, 0, at)
      last[i] = k
    })
    ws.once('open', () => {
      ws.send(`sub:${job.perConnection}`)
      sockets.push(ws)
      resolve()
    })
  })))
  return async () => {
    closing = true
    await Promise.all(sockets.map((ws) => new Promise<void>((r) => { ws.once('close', () => r()); ws.close() })))
  }
}

export async function subscriberThread(): Promise<void> {
  const job = workerData as SubscriberJob
  const port = parentPort!
  const post = (m: FromSubscribers): void => port.postMessage(m)
  const rec = new FanoutRecorder(job.times, job.measureFrom, job.measureTo, job.total)
  let closeAll: (() => Promise<void>) | undefined
  let elu0 = performance.eventLoopUtilization()
  port.on('message', (m: ToSubscribers) => {
    if (m.type === 'start') elu0 = performance.eventLoopUtilization()
    else if (m.type === 'finish') {
      const elu = performance.eventLoopUtilization(elu0).utilization
      const subscribers = job.connections * job.perConnection
      // Every subscriber must reach the last balance; diffs still queued get --drain-s.
      const deadline = Date.now() + job.drainS * 1000
      const wait = (): void => {
        if (rec.complete >= subscribers || Date.now() > deadline) {
          if (rec.complete < subscribers) rec.errors.add('missing: subscriber did not reach the last balance', `${subscribers - rec.complete} of ${subscribers} after ${job.drainS} s`)
          post(rec.report(subscribers, elu))
          return
        }
        setTimeout(wait, 10)
      }
      wait()
    } else if (m.type === 'close') {
      void (closeAll ?? (async () => undefined))().then(() => post({ type: 'closed' }))
    }
  })
  try {
    closeAll = await (job.kind === 'sdk' ? sdkSubscribers : rawSubscribers)(job, rec, () => post({ type: 'ready' }))
  } catch (err) {
    post({ type: 'error', message: (err as Error).stack ?? String(err) })
  }
}

export interface Subscribers {
  reports: FanoutReport[]
  corrected: Histogram
  uncorrected: Histogram
  errors: Errors
  diffs: number
  coalesced: number
  pairs: number
  complete: number
  offsets: number[]
  firstDiffUs: number
  lastDiffUs: number
  elu: number[]
  close(): Promise<void>
}

/** Starts the subscriber threads, waits until all have joined; `run` drives the writer, then the threads report. */
export async function withSubscribers(
  opts: Options, kind: 'sdk' | 'raw', url: string, account: number, times: SharedTimes, run: (started: () => void) => Promise<void>,
): Promise<Subscribers> {
  const { total, measureFrom, measureTo } = schedule(opts)
  const perConnection = opts.subscribers / opts.connections
  const workers: Worker[] = []
  const messages: ((m: FromSubscribers) => void)[] = []
  const next = (i: number, type: FromSubscribers['type']): Promise<FromSubscribers> => new Promise((resolve, reject) => {
    messages[i] = (m) => {
      if (m.type === 'error') reject(new Error(`subscriber thread ${i}: ${m.message}`))
      else if (m.type === type) resolve(m)
      else reject(new Error(`subscriber thread ${i}: ${m.type} instead of ${type}`))
    }
  })
  const readies: Promise<FromSubscribers>[] = []
  for (let i = 0; i < opts.workers; i++) {
    const connections = Math.floor(opts.connections / opts.workers) + (i < opts.connections % opts.workers ? 1 : 0)
    const job: SubscriberJob = { kind, url, account, connections, perConnection, times, measureFrom, measureTo, total, drainS: opts.drainS }
    const w = new Worker(ENTRY_FILE, { workerData: job })
    w.on('message', (m: FromSubscribers) => messages[i]?.(m))
    w.on('error', (e) => messages[i]?.({ type: 'error', message: e.stack ?? e.message }))
    workers.push(w)
    readies.push(next(i, 'ready'))
  }
  const joinedAt = nowUs()
  await Promise.all(readies)
  console.error(`  ${opts.subscribers} ${kind} subscribers joined in ${((nowUs() - joinedAt) / 1e6).toFixed(1)} s`)
  await run(() => { for (const w of workers) w.postMessage({ type: 'start' } satisfies ToSubscribers) })
  const reportsP = workers.map((_, i) => next(i, 'report'))
  for (const w of workers) w.postMessage({ type: 'finish' } satisfies ToSubscribers)
  const reports = (await Promise.all(reportsP)) as FanoutReport[]
  const corrected = newHistogram()
  const uncorrected = newHistogram()
  const errors = new Errors()
  const offsets = new Array<number>(total + 1).fill(0)
  for (const r of reports) {
    corrected.add(decodeHistogram(r.corrected))
    uncorrected.add(decodeHistogram(r.uncorrected))
    errors.merge(r.errors)
    r.offsets.forEach((o, k) => {
      if (o === 0) return
      if (offsets[k] === 0) offsets[k] = o
      else if (offsets[k] !== o) errors.add('content: one deposit, different toOffsets', `balance ${k}: ${offsets[k]} and ${o}`)
    })
  }
  const sum = (f: (r: FanoutReport) => number): number => reports.reduce((n, r) => n + f(r), 0)
  return {
    reports, corrected, uncorrected, errors, offsets,
    diffs: sum((r) => r.diffs), coalesced: sum((r) => r.coalesced), pairs: sum((r) => r.pairs), complete: sum((r) => r.complete),
    firstDiffUs: Math.min(...reports.map((r) => r.firstDiffUs || Infinity)), lastDiffUs: Math.max(...reports.map((r) => r.lastDiffUs)),
    elu: reports.map((r) => r.elu),
    close: async () => {
      const closed = workers.map((_, i) => next(i, 'closed'))
      for (const w of workers) w.postMessage({ type: 'close' } satisfies ToSubscribers)
      await Promise.all(closed)
      await Promise.all(workers.map((w) => w.terminate()))
    },
  }
}
