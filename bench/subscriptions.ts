// Reactive subscriptions under load (figures in docs/benchmarks.md, "Subscriptions"):
//
//   npx tsc -p . && node dist/bench/subscriptions.js [options]      (--help lists them)
//
// Part 1, fan-out latency. `vvm start` in a child process (LevelDB, a fresh data directory,
// --auth off); `--subscribers` SDK subscriptions to the same read (`bank.Balance` of one
// account) spread over `--connections` SDK connections in `--workers` worker threads; a writer
// connection in this thread deposits 1 into that account at `--rate-per-s`, open loop, for
// `--warmup-s` + `--duration-s`. Deposit k (from 1) takes the balance to k, so a diff's balance
// names the deposits it covers; for every subscriber and every deposit of the measured window
// the latency is the time from the deposit's intended send time (open loop: a stall counts
// against every deposit due during it, wrk2's coordinated-omission correction) to that
// subscriber's `for await` receiving the diff; the time from the actual send is kept beside it.
// Every diff is checked: the shape, the balance, the order (docs/subscriptions.md: the first
// diff after the snapshot starts at or before the snapshot's offset, each later one at the
// previous one's toOffset; the balance only grows), the same toOffset for a deposit at every
// subscriber and equal to the deposit's reply's currentWLogOffset; every subscriber must reach
// the last balance; the writer's own subscription must have a deposit's diff before the
// deposit's reply. The server's metrics give evaluations and diffs per deposit (one group: 1
// each, fewer when deposits share a group commit) and pushes per diff (one per subscriber,
// plus the writer's own).
// Ceilings measured in the same run, same rate and window, same layout of connections:
//   - raw fan-out: a uWebSockets.js program (this file, `--fanout-ceiling-server`) that, for
//     each writer message, sends one 8-byte frame per virtual subscriber to each subscriber
//     connection (corked per connection, before the writer's ack), read by raw `ws` clients;
//   - one deposit with no subscribers: the writer's reply latency on the engine, before the
//     subscribers join.
// Part 2, churn. A fresh server with --subscription-grace-s 0 (a released group is dropped at
// the partition's next batch); `--churn-connections` × `--churn-pipeline` loops each subscribe,
// take the snapshot (checked), unsubscribe, again, until `--churn-cycles` cycles; half the
// cycles on one identical read (with a writer depositing into it at `--churn-deposit-rate-per-s`
// so that its group is re-evaluated meanwhile), half on distinct reads (`--churn-accounts`
// accounts over `--churn-workspaces` workspaces, taken in turn). The server's RSS (from /proc),
// its V8 heap (`vvm_heap_used_bytes`: main thread and partition workers) and its subscription
// gauges are sampled `--churn-samples` times; the figures are the RSS and the heap at the end
// against their values after the first 10 % (the warm-up).
//
// Clock: every time is µs of process.hrtime() (CLOCK_MONOTONIC), the same clock in every
// thread of this process; performance.now() counts from each thread's own start.

import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { execFileSync } from 'node:child_process'
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem, release } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import { WebSocket as RawWebSocket } from 'ws'
import type { Histogram } from 'hdr-histogram-js'
import { connect, type Subscription, type VvmClient } from '../src/client/index.js'
import { startChildServer, type ChildServer } from './servers/child.js'
import { decodeHistogram, encodeHistogram, newHistogram, summarize, type LatencySummaryUs } from './load/histogram.js'
import { machineBusySeconds, selfCpuSeconds } from './load/cpu.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const THIS_FILE = fileURLToPath(import.meta.url)
const APP = 'demo/bank'
/** The fan-out account's workspace; any id works, a round one is easy to find in logs. */
const FANOUT_WSID = 100_000
const CHURN_WSID_BASE = 200_000
/** Why 120 s: a call waits behind up to --subscribers pushes on a loaded 2-core machine; only a lost reply should time out. */
const CALL_TIMEOUT_MS = 120_000
/** Why 256: open loop at tens per second never has more in flight unless the server stalls; the cap keeps a stall from queueing without bound. */
const WRITER_INFLIGHT_MAX = 256
/** Open loop wakes every millisecond to send what is due (timers have 1 ms resolution). */
const OPEN_TICK_MS = 1
/** Why 30 s: after the last deposit, diffs still queued (client-bound runs) get this long to arrive; later is "missing". */
const DRAIN_S_DEFAULT = 30
/** Distinct error kinds kept, with a few samples each: kinds are low-cardinality strings. */
const ERROR_KINDS_MAX = 64
const ERROR_SAMPLES_MAX = 3
/** Why 64: SDK subscribes in flight per connection while the subscribers join (the server answers them between batches). */
const JOIN_PIPELINE = 64
/** Why 512: documents created at once during setup: enough to fill a group commit, few enough to stay under any bound. */
const SETUP_PIPELINE = 512
/** Why 5 s: the server releases a closed connection's subscriptions at once; a few seconds covers a loaded machine. */
const SETTLE_TIMEOUT_MS = 5_000
/** The churn's RSS is called flat when it ends within max(this share, FLAT_SLACK_MIB) of its value after the warm-up. */
const FLAT_SHARE = 0.05
/** Why 8 MiB: a V8 process's RSS moves by a few MiB with GC timing and malloc's arenas, leak or not. */
const FLAT_SLACK_MIB = 8
/** Why 10 %: the first tenth of the cycles warms up JIT, caches, V8's heap sizing and LevelDB's memtable. */
const WARMUP_SHARE = 0.1

// ---- options ------------------------------------------------------------------------------

interface Options {
  part: string
  subscribers: number
  connections: number
  workers: number
  /** The rates of the fan-out runs (`--rate-per-s 10,50`: one run each, on a fresh server). */
  ratesPerS: number[]
  /** The rate of the run under way. */
  ratePerS: number
  durationS: number
  warmupS: number
  drainS: number
  ceiling: string
  churnCycles: number
  churnConnections: number
  churnPipeline: number
  churnAccounts: number
  churnWorkspaces: number
  churnDepositRatePerS: number
  /** Share of the cycles on the identical read (the rest on distinct reads). */
  churnIdenticalShare: number
  churnSamples: number
  partitions: number
  storage: string
  out: string
}

// Why 10 and 50 deposits/s: 10 × 10,000 = 100k deliveries/s, which this 2-core machine
// carries with both the server and the client threads under one core each (a latency figure);
// 50/s (500k deliveries/s) is beyond even the raw fan-out ceiling here and shows saturation.
// Why 20 × 500 connections: the default --subscriptions-per-connection-max is 1000; 500 each
// keeps every connection's burst of one diff (500 frames, ~20 KiB) far below the server's
// congestion threshold (half of --ws-buffered-bytes-max).
// Why 128 in flight per churn connection: enough to keep both partitions busy with
// subscribes and releases; the per-connection limit is set to exactly this.
const DEFAULTS: Options = {
  part: 'all', subscribers: 10_000, connections: 20, workers: 2, ratesPerS: [10, 50], ratePerS: 10, durationS: 20, warmupS: 2, drainS: DRAIN_S_DEFAULT, ceiling: 'on',
  churnCycles: 1_000_000, churnConnections: 4, churnPipeline: 128, churnAccounts: 10_000, churnWorkspaces: 100, churnDepositRatePerS: 20, churnIdenticalShare: 0.5, churnSamples: 100,
  partitions: 2, storage: 'level', out: '',
}
const STRING_OPTIONS = new Set<keyof Options>(['part', 'ceiling', 'storage', 'out'])

const USAGE = `node dist/bench/subscriptions.js [--option value ...]
  --part all|fanout|churn          which parts to run (default all)
  fan-out:  --subscribers 10000 --connections 20 --workers 2 --rate-per-s 10,50 (one run per rate) --duration-s 20 --warmup-s 2
            --drain-s 30 --ceiling on|off
  churn:    --churn-cycles 1000000 --churn-connections 4 --churn-pipeline 128 --churn-accounts 10000
            --churn-workspaces 100 --churn-deposit-rate-per-s 20 --churn-identical-share 0.5 --churn-samples 100
  server:   --partitions 2 --storage level|mem
  --out path/result.json           (default bench/reports/<date>-subscriptions/result.json)`

function parseOptions(argv: readonly string[]): Options {
  const o: Options = { ...DEFAULTS }
  for (let i = 0; i < argv.length; i += 2) {
    if (argv[i] === '--help' || argv[i] === '-h') {
      console.log(USAGE)
      process.exit(0)
    }
    const key = argv[i]!.replace(/^--/, '').replace(/-(\w)/g, (_, c: string) => c.toUpperCase()) as keyof Options
    const value = argv[i + 1]
    if (!(key in o) || key === 'ratesPerS' || value === undefined) throw new Error(`unknown option ${argv[i]}\n${USAGE}`)
    if (key === 'ratePerS') {
      o.ratesPerS = value.split(',').map(Number)
      if (o.ratesPerS.some((r) => !Number.isFinite(r) || r <= 0)) throw new Error(`--rate-per-s needs rates > 0, not ${value}`)
      o.ratePerS = o.ratesPerS[0]!
    } else if (STRING_OPTIONS.has(key)) (o as unknown as Record<string, unknown>)[key] = value
    else {
      const n = Number(value)
      if (!Number.isFinite(n) || n < 0) throw new Error(`${argv[i]} needs a number ≥ 0, not ${value}`)
      ;(o as unknown as Record<string, unknown>)[key] = n
    }
  }
  if (!['all', 'fanout', 'churn'].includes(o.part)) throw new Error(`--part all|fanout|churn, not ${o.part}`)
  if (o.connections < 1 || o.workers < 1 || o.workers > o.connections) throw new Error('need 1 ≤ --workers ≤ --connections')
  if (o.subscribers % o.connections !== 0) throw new Error('--subscribers must be a multiple of --connections')
  if (o.churnIdenticalShare > 1) throw new Error('--churn-identical-share is a share: 0…1')
  if (o.churnAccounts < 1 || o.churnWorkspaces < 1 || o.churnWorkspaces > o.churnAccounts) throw new Error('need 1 ≤ --churn-workspaces ≤ --churn-accounts')
  return o
}

// ---- shared helpers -----------------------------------------------------------------------

/** µs on CLOCK_MONOTONIC: one clock for all threads of this process. */
function nowUs(): number {
  const [s, ns] = process.hrtime()
  return s * 1e6 + ns / 1e3
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const toUs = (v: number): number => Math.max(1, Math.round(v))

interface ErrorCount {
  count: number
  samples: string[]
}

/** Errors by kind (a short, id-free string) with a few samples each. */
class Errors {
  readonly byKind = new Map<string, ErrorCount>()

  add(kind: string, sample: string): void {
    let e = this.byKind.get(kind)
    if (e === undefined) {
      if (this.byKind.size >= ERROR_KINDS_MAX) kind = 'other'
      e = this.byKind.get(kind) ?? { count: 0, samples: [] }
      this.byKind.set(kind, e)
    }
    e.count++
    if (e.samples.length < ERROR_SAMPLES_MAX) e.samples.push(sample.slice(0, 300))
  }

  merge(o: Record<string, ErrorCount>): void {
    for (const [k, v] of Object.entries(o)) {
      const e = this.byKind.get(k) ?? { count: 0, samples: [] }
      e.count += v.count
      for (const s of v.samples) if (e.samples.length < ERROR_SAMPLES_MAX) e.samples.push(s)
      this.byKind.set(k, e)
    }
  }

  get total(): number {
    let n = 0
    for (const e of this.byKind.values()) n += e.count
    return n
  }

  toJSON(): Record<string, ErrorCount> {
    return Object.fromEntries(this.byKind)
  }
}

/**
 * Send times of the writer's operations, shared with the subscriber threads: µs of `nowUs()`,
 * intended (open-loop schedule) at [2k], actual at [2k+1]; `published[0]` is the last k whose
 * times are written (stored after them, so a reader that sees k sees its times).
 */
interface SharedTimes {
  times: Float64Array
  published: Int32Array
}

function newSharedTimes(ops: number): SharedTimes {
  return {
    times: new Float64Array(new SharedArrayBuffer(8 * 2 * (ops + 1))),
    published: new Int32Array(new SharedArrayBuffer(4)),
  }
}

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

// ---- the subscriber threads ----------------------------------------------------------------

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

async function subscriberThread(): Promise<void> {
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

// ---- the raw fan-out ceiling server (child process) ----------------------------------------

async function fanoutCeilingServer(): Promise<void> {
  const uws = (await import('uWebSockets.js')).default
  interface Data { m: number }
  const subscribers = new Set<import('uWebSockets.js').WebSocket<Data>>()
  const app = uws.App()
  app.ws<Data>('/fan', {
    maxPayloadLength: 1024,
    /** Why 256 MiB: a client-bound run queues many frames per connection; the ceiling must not drop any. */
    maxBackpressure: 256 * 1024 * 1024,
    idleTimeout: 0,
    upgrade: (res, req, context) => {
      res.upgrade<Data>({ m: 0 }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context)
    },
    message: (ws, message, isBinary) => {
      if (!isBinary) {
        const t = Buffer.from(message).toString()
        if (t.startsWith('sub:')) {
          ws.getUserData().m = Number(t.slice(4))
          subscribers.add(ws)
          ws.send('ok', false)
        }
        return
      }
      // A writer's message: the frames of every subscriber first, then the writer's ack (as the
      // engine sends a command's diffs before its reply).
      const k = Buffer.from(message).readUInt32LE(0)
      for (const s of subscribers) {
        const m = s.getUserData().m
        s.cork(() => {
          for (let i = 0; i < m; i++) {
            const f = Buffer.allocUnsafe(8)
            f.writeUInt32LE(i, 0)
            f.writeUInt32LE(k, 4)
            s.send(f, true)
          }
        })
      }
      ws.send(message, true)
    },
    close: (ws) => { subscribers.delete(ws) },
  })
  app.listen('127.0.0.1', 0, (socket) => {
    if (!socket) {
      console.error('fan-out ceiling: cannot listen')
      process.exit(1)
    }
    console.log(`fan-out ceiling listening on http://127.0.0.1:${uws.us_socket_local_port(socket)}`)
  })
  const stop = (): void => { app.close(); process.exit(0) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

// ---- the main thread: servers, writer, metrics -----------------------------------------------

async function startEngine(opts: Options, dataDir: string, extra: string[]): Promise<ChildServer & { metricsUrl: string }> {
  const args = [join(ROOT, 'bin/vvm.js'), 'start', '--host', '127.0.0.1', '--port', '0', '--metrics-port', '0', '--log-level', 'warn',
    '--auth', 'off', '--data-dir', dataDir, '--storage', opts.storage, '--partitions', String(opts.partitions), ...extra]
  const s = await startChildServer(args, 'vvm')
  const m = /metrics on port (\d+)/.exec(s.output())
  if (m === null) throw new Error(`no metrics port in the server's output:\n${s.output()}`)
  return Object.assign(s, { metricsUrl: `http://127.0.0.1:${m[1]}/metrics` })
}

/** Sum of the series of a metric in Prometheus text whose labels contain `labels` (0 when absent). */
async function scrape(url: string): Promise<(name: string, labels?: string) => number> {
  const text = await (await fetch(url)).text()
  return (name: string, labels = '') => {
    let sum = 0
    for (const line of text.split('\n')) {
      if (!line.startsWith(name)) continue
      const rest = line.slice(name.length)
      if (rest[0] !== ' ' && rest[0] !== '{') continue
      if (labels !== '' && !rest.startsWith('{')) continue
      if (labels !== '' && !rest.slice(0, rest.indexOf('}')).includes(labels)) continue
      sum += Number(line.slice(line.lastIndexOf(' ') + 1))
    }
    return sum
  }
}

/** VmRSS and RssAnon of a process, KiB (Linux /proc). */
function rssKiB(pid: number): { rss: number; anon: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1')
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN)
  return { rss: field('VmRSS'), anon: field('RssAnon') }
}

/** CPU of the server, of this process and of the whole machine, to split a window's cores among them. */
function cpuMark(server: { cpuSeconds(): number | undefined }): { server: number; self: number; machine: number; atUs: number } {
  return { server: server.cpuSeconds() ?? NaN, self: selfCpuSeconds(), machine: machineBusySeconds() ?? NaN, atUs: nowUs() }
}

interface Cores {
  server: number
  client: number
  other: number
}

function coresBetween(a: ReturnType<typeof cpuMark>, b: ReturnType<typeof cpuMark>): Cores {
  const s = (b.atUs - a.atUs) / 1e6
  const server = (b.server - a.server) / s
  const client = (b.self - a.self) / s
  return { server, client, other: Math.max(0, (b.machine - a.machine) / s - server - client) }
}

interface OpenLoopResult {
  sent: number
  corrected: Histogram
  uncorrected: Histogram
  errors: Errors
  cores: Cores
  /** Start and end of the measured window, µs. */
  windowUs: [number, number]
}

interface Pace {
  ratePerS: number
  warmupS: number
  durationS: number
}

/**
 * Open loop: operation k (1…total) is due at t0 + (k-1)/rate; what is due is sent at once (up
 * to WRITER_INFLIGHT_MAX in flight). Latency of a reply from the intended and from the actual
 * send; operations due in [warm-up, warm-up + duration) are measured. `send` resolves with an
 * error kind or undefined for a right reply.
 */
async function openLoop(
  opts: Pace, times: SharedTimes, server: { cpuSeconds(): number | undefined },
  send: (k: number) => Promise<string | undefined>,
): Promise<OpenLoopResult> {
  const { total, measureFrom, measureTo } = schedule(opts)
  const periodUs = 1e6 / opts.ratePerS
  const corrected = newHistogram()
  const uncorrected = newHistogram()
  const errors = new Errors()
  const inflight = new Set<Promise<void>>()
  const t0 = nowUs() + 20_000 // a little ahead, so the first sends are on time
  const windowUs: [number, number] = [t0 + (measureFrom - 1) * periodUs, t0 + measureTo * periodUs]
  let mark0: ReturnType<typeof cpuMark> | undefined
  let k = 1
  while (k <= total) {
    const now = nowUs()
    if (mark0 === undefined && now >= windowUs[0]) mark0 = cpuMark(server)
    while (k <= total && t0 + (k - 1) * periodUs <= now && inflight.size < WRITER_INFLIGHT_MAX) {
      const kk = k++
      const intended = t0 + (kk - 1) * periodUs
      const actual = nowUs()
      times.times[2 * kk] = intended
      times.times[2 * kk + 1] = actual
      Atomics.store(times.published, 0, kk)
      const p = send(kk).then((e) => [e, `op ${kk}`], (err: unknown) => [`transport: ${(err as Error).message.split(':')[0]}`, `op ${kk}: ${(err as Error).message}`]).then(([e, sample]) => {
        const at = nowUs()
        inflight.delete(p)
        if (e !== undefined) return errors.add(e, sample!)
        if (kk < measureFrom || kk > measureTo) return
        corrected.recordValue(toUs(at - intended))
        uncorrected.recordValue(toUs(at - actual))
      })
      inflight.add(p)
    }
    if (k > total) break
    await sleep(OPEN_TICK_MS)
  }
  while (nowUs() < windowUs[1]) await sleep(OPEN_TICK_MS)
  const mark1 = cpuMark(server)
  await Promise.all(inflight)
  return { sent: total, corrected, uncorrected, errors, cores: coresBetween(mark0 ?? mark1, mark1), windowUs }
}

function schedule(opts: Pace): { total: number; measureFrom: number; measureTo: number } {
  const warm = Math.round(opts.ratePerS * opts.warmupS)
  const measured = Math.max(1, Math.round(opts.ratePerS * opts.durationS))
  return { total: warm + measured, measureFrom: warm + 1, measureTo: warm + measured }
}

interface Subscribers {
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
async function withSubscribers(
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
    const w = new Worker(THIS_FILE, { workerData: job })
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

// ---- part 1: fan-out ------------------------------------------------------------------------

interface FanoutRun {
  label: string
  latencyUs: LatencySummaryUs
  uncorrectedUs: LatencySummaryUs
  writerUs: LatencySummaryUs
  deposits: number
  subscribers: number
  diffs: number
  coalesced: number
  pairs: number
  pairsExpected: number
  complete: number
  deliveriesPerS: number
  cores: Cores
  clientElu: number[]
  errors: Record<string, ErrorCount>
}

function fanoutRun(label: string, opts: Options, w: OpenLoopResult, s: Subscribers): FanoutRun {
  const errors = new Errors()
  errors.merge(w.errors.toJSON())
  errors.merge(s.errors.toJSON())
  return {
    label, latencyUs: summarize(s.corrected), uncorrectedUs: summarize(s.uncorrected), writerUs: summarize(w.corrected),
    deposits: w.sent, subscribers: opts.subscribers, diffs: s.diffs, coalesced: s.coalesced, pairs: s.pairs, pairsExpected: w.sent * opts.subscribers,
    complete: s.complete,
    // Deliveries over the span from the first diff to the last one received (the whole phase, warm-up included).
    deliveriesPerS: s.diffs / Math.max(1e-9, (s.lastDiffUs - s.firstDiffUs) / 1e6),
    cores: w.cores, clientElu: s.elu, errors: errors.toJSON(),
  }
}

async function rawCeiling(opts: Options): Promise<FanoutRun> {
  const server = await startChildServer([THIS_FILE, '--fanout-ceiling-server'], 'fan-out ceiling')
  try {
    const url = server.url.replace(/^http/, 'ws') + '/fan'
    const times = newSharedTimes(schedule(opts).total)
    let result: OpenLoopResult | undefined
    const subs = await withSubscribers(opts, 'raw', url, 0, times, async (started) => {
      const writer = new RawWebSocket(url, { perMessageDeflate: false })
      await new Promise<void>((resolve, reject) => { writer.once('open', () => resolve()); writer.once('error', reject) })
      const acks = new Map<number, () => void>()
      writer.on('message', (data: Buffer) => { const k = data.readUInt32LE(0); acks.get(k)?.(); acks.delete(k) })
      started()
      result = await openLoop(opts, times, server, (k) => new Promise((resolve) => {
        acks.set(k, () => resolve(undefined))
        const f = Buffer.allocUnsafe(4)
        f.writeUInt32LE(k, 0)
        writer.send(f, { binary: true })
      }))
      writer.close()
    })
    await subs.close()
    return fanoutRun('ceiling: raw uWS fan-out, raw ws clients', opts, result!, subs)
  } finally {
    await server.stop()
  }
}

interface FanoutResult {
  ratePerS: number
  ceiling: FanoutRun | undefined
  noSubscribers: { latencyUs: LatencySummaryUs; uncorrectedUs: LatencySummaryUs; deposits: number; cores: Cores; errors: Record<string, ErrorCount> }
  engine: FanoutRun
  metrics: {
    /** Below 1 when several deposits shared a group commit: the group is evaluated once per commit that changed it. */
    evaluationsPerDeposit: number
    evaluationsPerDiff: number
    diffsPerDeposit: number
    /** Diffs the group produced, and diffs each subscriber received: more produced than received means the server coalesced for congested connections. */
    /** Pushes per diff: the subscribers plus the writer's own subscription. */
    groupDiffs: number
    diffsPerSubscriber: number
    pushesPerDiff: number
    groupsDuring: number
    subscriptionsDuring: number
    subscriptionsAfterClose: number
  }
  /** Server CPU of the deposit phase beyond the same deposits' CPU with no subscribers, per push delivered. */
  serverCpuUsPerPush: number
  serverRssKiB: { beforeSubscribers: number; withSubscribers: number; afterRun: number }
}

async function fanout(opts: Options): Promise<FanoutResult> {
  let ceiling: FanoutRun | undefined
  if (opts.ceiling === 'on') {
    console.error(`fan-out ceiling at ${opts.ratePerS}/s: raw uWS fan-out`)
    ceiling = await rawCeiling(opts)
  }
  console.error(`fan-out at ${opts.ratePerS}/s: engine`)
  const dataDir = await mkdtemp(join(tmpdir(), 'vvm-bench-subs-'))
  const server = await startEngine(opts, dataDir, [
    '--subscriptions-per-connection-max', String(opts.subscribers / opts.connections),
    '--subscriptions-max', String(Math.max(100_000, opts.subscribers)),
  ])
  try {
    const wsUrl = server.url.replace(/^http/, 'ws') + '/api/ws'
    const writer = await connect(wsUrl, { app: APP, wsid: FANOUT_WSID, timeoutMs: CALL_TIMEOUT_MS })
    const quiet = (await writer.docs.create('bank.Account', { name: 'no subscribers', balance: 0 })).newIDs['1']!
    const watched = (await writer.docs.create('bank.Account', { name: 'watched', balance: 0 })).newIDs['1']!
    // The writer subscribes too: its diff of deposit k must arrive before the reply of deposit k
    // (the SDK updates `offset` as each PUSH arrives, before the next frame is read).
    const own = await writer.subscribe({ query: 'bank.Balance', args: { account: watched } })
    // Taken as they come, so its queue stays empty (only its offset is looked at).
    void (async () => { for await (const _ of own) { /* nothing */ } })()
    const replyOffsets: number[] = []
    const deposit = (account: number) => async (k: number): Promise<string | undefined> => {
      // No idempotency key: a retried deposit could land out of order, and balance k must mean deposit k.
      const r = await writer.command<{ balance: number }>('bank.Deposit', { account, amount: 1 }, { idempotencyKey: false })
      if (r.result.balance !== k) return 'content: reply balance is not the deposit count'
      if (account !== watched) return undefined
      replyOffsets[k] = r.currentWLogOffset
      return own.offset >= r.currentWLogOffset ? undefined : 'order: reply before its diff on the same connection'
    }
    // The ceiling on this server: the same deposits with nobody subscribed.
    console.error('  deposits with no subscribers')
    const quietMark0 = cpuMark(server)
    const q = await openLoop(opts, newSharedTimes(schedule(opts).total), server, deposit(quiet))
    const quietCpuPerDeposit = (cpuMark(server).server - quietMark0.server) / q.sent
    const rssBefore = rssKiB(server.pid).rss
    const times = newSharedTimes(schedule(opts).total)
    let w: OpenLoopResult | undefined
    let m0: (n: string) => number = () => 0
    let mark0: ReturnType<typeof cpuMark> | undefined
    let during: { groups: number; subscriptions: number; rss: number } | undefined
    const subs = await withSubscribers(opts, 'sdk', wsUrl, watched, times, async (started) => {
      m0 = await scrape(server.metricsUrl)
      during = { groups: m0('vvm_subscription_groups'), subscriptions: m0('vvm_subscriptions'), rss: rssKiB(server.pid).rss }
      console.error(`  deposits to ${opts.subscribers} subscribers at ${opts.ratePerS}/s for ${opts.warmupS} + ${opts.durationS} s`)
      started()
      mark0 = cpuMark(server)
      w = await openLoop(opts, times, server, deposit(watched))
    })
    // After every subscriber has every diff (or the drain gave up).
    const mark1 = cpuMark(server)
    const m1 = await scrape(server.metricsUrl)
    const rssAfter = rssKiB(server.pid).rss
    // The diff that ends at balance k must end at deposit k's offset (its reply's currentWLogOffset).
    subs.offsets.forEach((o, k) => {
      if (o !== 0 && o !== replyOffsets[k]) subs.errors.add('content: diff toOffset is not its deposit\'s offset', `balance ${k}: diff to ${o}, reply ${String(replyOffsets[k])}`)
    })
    await own.unsubscribe()
    await subs.close()
    await writer.close()
    let after = await scrape(server.metricsUrl)
    for (const t0 = Date.now(); after('vvm_subscriptions') > 0 && Date.now() - t0 < SETTLE_TIMEOUT_MS; after = await scrape(server.metricsUrl)) await sleep(100)
    const deposits = w!.sent
    const d = (n: string): number => m1(n) - m0(n)
    const groupDiffs = d('vvm_subscription_diffs_total')
    const pushes = d('vvm_subscription_pushes_total')
    const evaluations = d('vvm_subscription_evaluations_total')
    // What sharing one group means, from the server's own counters: checked like any reply.
    const everyone = opts.subscribers + 1
    if (during!.groups !== 1) subs.errors.add('metrics: identical subscriptions not in one group', `${during!.groups} groups for ${during!.subscriptions} subscriptions`)
    if (evaluations !== groupDiffs || evaluations > deposits) subs.errors.add('metrics: evaluations are not one per diff', `${evaluations} evaluations, ${groupDiffs} diffs, ${deposits} deposits`)
    if (pushes !== groupDiffs * everyone) subs.errors.add('metrics: pushes are not one per subscriber per diff', `${pushes} pushes, ${groupDiffs} diffs, ${everyone} subscribers`)
    if (after('vvm_subscriptions') !== 0) subs.errors.add('metrics: subscriptions left after every connection closed', `${after('vvm_subscriptions')}`)
    const engine = fanoutRun('engine: SDK subscribers (for await)', opts, w!, subs)
    return {
      ratePerS: opts.ratePerS,
      ceiling,
      noSubscribers: { latencyUs: summarize(q.corrected), uncorrectedUs: summarize(q.uncorrected), deposits: q.sent, cores: q.cores, errors: q.errors.toJSON() },
      engine,
      metrics: {
        evaluationsPerDeposit: evaluations / deposits,
        evaluationsPerDiff: evaluations / Math.max(1, groupDiffs),
        diffsPerDeposit: groupDiffs / deposits,
        groupDiffs,
        diffsPerSubscriber: subs.diffs / opts.subscribers,
        pushesPerDiff: pushes / Math.max(1, groupDiffs),
        groupsDuring: during!.groups,
        subscriptionsDuring: during!.subscriptions,
        subscriptionsAfterClose: after('vvm_subscriptions'),
      },
      serverCpuUsPerPush: ((mark1.server - mark0!.server - quietCpuPerDeposit * deposits) * 1e6) / Math.max(1, pushes),
      serverRssKiB: { beforeSubscribers: rssBefore, withSubscribers: during!.rss, afterRun: rssAfter },
    }
  } finally {
    await server.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

// ---- part 2: churn --------------------------------------------------------------------------

interface ChurnSample {
  cycles: number
  atS: number
  rssKiB: number
  rssAnonKiB: number
  /** V8 heap in use of the server's main thread and partition workers (vvm_heap_used_bytes). */
  serverHeapKiB: number
  subscriptions: number
  groups: number
  clientHeapKiB: number
}

interface ChurnResult {
  cycles: number
  identical: number
  distinct: number
  seconds: number
  cyclesPerS: number
  samples: ChurnSample[]
  rss: { startKiB: number; afterWarmupKiB: number; peakKiB: number; endKiB: number; idleAfterKiB: number; endMinusWarmupKiB: number; slopeKiBPer100k: number; flat: boolean }
  rssAnon: { startKiB: number; afterWarmupKiB: number; peakKiB: number; endKiB: number; endMinusWarmupKiB: number }
  serverHeap: { startKiB: number; afterWarmupKiB: number; peakKiB: number; endKiB: number; endMinusWarmupKiB: number; slopeKiBPer100k: number }
  /** 2 s after the last cycle, the hot writer still committing in its partition. */
  idleAfter: { subscriptions: number; groupsByPartition: number[] }
  /** Then after one deposit in every churn workspace: every partition ran a batch (groups are dropped at a batch). */
  afterBatchEverywhere: { groupsByPartition: number[] }
  cores: Cores
  clientHeapKiB: { start: number; peak: number; end: number }
  errors: Record<string, ErrorCount>
}

async function churn(opts: Options): Promise<ChurnResult> {
  console.error(`churn: ${opts.churnCycles} subscribe/unsubscribe cycles, ${opts.churnConnections} × ${opts.churnPipeline} in flight`)
  const dataDir = await mkdtemp(join(tmpdir(), 'vvm-bench-churn-'))
  const server = await startEngine(opts, dataDir, [
    '--subscription-grace-s', '0',
    // Exactly the loops of a connection: a subscription the server failed to count down would show as 429s.
    '--subscriptions-per-connection-max', String(opts.churnPipeline),
  ])
  const clients: VvmClient[] = []
  const errors = new Errors()
  try {
    const wsUrl = server.url.replace(/^http/, 'ws') + '/api/ws'
    for (let i = 0; i < opts.churnConnections; i++) clients.push(await connect(wsUrl, { app: APP, wsid: CHURN_WSID_BASE, timeoutMs: CALL_TIMEOUT_MS }))
    const writer = await connect(wsUrl, { app: APP, wsid: CHURN_WSID_BASE, timeoutMs: CALL_TIMEOUT_MS })
    // Accounts of the distinct reads: account j in workspace base + 1 + j % W, balance j (checked in each snapshot).
    console.error(`  creating ${opts.churnAccounts} accounts`)
    const accounts = new Array<number>(opts.churnAccounts)
    const wsOf = (j: number): number => CHURN_WSID_BASE + 1 + (j % opts.churnWorkspaces)
    for (let j0 = 0; j0 < opts.churnAccounts; j0 += SETUP_PIPELINE) {
      await Promise.all(Array.from({ length: Math.min(SETUP_PIPELINE, opts.churnAccounts - j0) }, async (_, d) => {
        const j = j0 + d
        accounts[j] = (await writer.docs.create('bank.Account', { name: `c${j}`, balance: j }, { wsid: wsOf(j) })).newIDs['1']!
      }))
    }
    const hot = (await writer.docs.create('bank.Account', { name: 'hot', balance: 0 })).newIDs['1']!
    // Deposits into the identical read meanwhile, one at a time at a fixed rate: its group is
    // re-evaluated and its subscribers get diffs while others join and leave.
    let hotBalance = 0
    let depositing = true
    const depositLoop = (async () => {
      const periodMs = opts.churnDepositRatePerS > 0 ? 1000 / opts.churnDepositRatePerS : 0
      while (depositing && periodMs > 0) {
        const t = Date.now()
        try {
          const r = await writer.command<{ balance: number }>('bank.Deposit', { account: hot, amount: 1 }, { idempotencyKey: false })
          if (r.result.balance !== hotBalance + 1) errors.add('content: hot deposit balance', `${r.result.balance} after ${hotBalance}`)
          hotBalance = r.result.balance
        } catch (err) {
          errors.add('transport: hot deposit failed', (err as Error).message)
        }
        await sleep(Math.max(0, periodMs - (Date.now() - t)))
      }
    })()

    const samples: ChurnSample[] = []
    const t0 = nowUs()
    let done = 0
    let identical = 0
    let distinct = 0
    let nextCycle = 0
    let nextDistinct = 0
    const sampleEvery = Math.max(1, Math.floor(opts.churnCycles / opts.churnSamples))
    let sampling: Promise<void> = Promise.resolve()
    const sample = async (cycles: number): Promise<void> => {
      const m = await scrape(server.metricsUrl)
      const r = rssKiB(server.pid)
      samples.push({
        cycles, atS: (nowUs() - t0) / 1e6, rssKiB: r.rss, rssAnonKiB: r.anon, serverHeapKiB: Math.round(m('vvm_heap_used_bytes') / 1024),
        subscriptions: m('vvm_subscriptions'), groups: m('vvm_subscription_groups'), clientHeapKiB: Math.round(process.memoryUsage().heapUsed / 1024),
      })
    }
    await sample(0)
    const mark0 = cpuMark(server)
    let lastProgress = Date.now()
    const loop = async (c: VvmClient): Promise<void> => {
      while (nextCycle < opts.churnCycles) {
        const i = nextCycle++
        // Spread evenly: cycle i is on the identical read when i·share crosses an integer.
        const same = Math.floor((i + 1) * opts.churnIdenticalShare) > Math.floor(i * opts.churnIdenticalShare)
        const j = same ? -1 : nextDistinct++ % opts.churnAccounts
        try {
          const s = await c.subscribe({ query: 'bank.Balance', args: { account: same ? hot : accounts[j]! } }, { wsid: same ? CHURN_WSID_BASE : wsOf(j) })
          const first = await s[Symbol.asyncIterator]().next()
          const e = first.value
          const b = e !== undefined && e.type === 'snapshot' && e.rows.length === 1 ? e.rows[0]!.balance : undefined
          if (typeof b !== 'number') errors.add('content: first event is not a one-row snapshot', JSON.stringify(e).slice(0, 200))
          else if (same ? b < 0 || b > hotBalance + 1 : b !== j) errors.add('content: snapshot balance', `${same ? 'hot' : `account ${j}`}: ${b}`)
          await s.unsubscribe()
          if (same) identical++
          else distinct++
        } catch (err) {
          errors.add(`transport: ${(err as Error).message.slice(0, 60)}`, (err as Error).message)
        }
        done++
        if (done % sampleEvery === 0) {
          const n = done
          sampling = sampling.then(() => sample(n))
        }
        if (Date.now() - lastProgress > 5000) {
          lastProgress = Date.now()
          const last = samples[samples.length - 1]!
          console.error(`  ${done} cycles, ${Math.round(done / ((nowUs() - t0) / 1e6))}/s, server RSS ${(last.rssKiB / 1024).toFixed(1)} MiB, ${last.subscriptions} subscriptions, ${last.groups} groups, ${errors.total} errors`)
        }
      }
    }
    await Promise.all(clients.flatMap((c) => Array.from({ length: opts.churnPipeline }, () => loop(c))))
    const mark1 = cpuMark(server)
    const seconds = (nowUs() - t0) / 1e6
    await sampling
    if (samples[samples.length - 1]!.cycles !== done) await sample(done)
    // Idle, with the hot writer still committing (so the partitions run their batches and drop released groups).
    await sleep(2000)
    const mIdle = await scrape(server.metricsUrl)
    const idleRss = rssKiB(server.pid).rss
    depositing = false
    await depositLoop
    // A released group goes at its partition's next batch: one deposit in every churn workspace
    // (they cover every partition) makes that batch happen everywhere.
    await Promise.all(accounts.slice(0, opts.churnWorkspaces).map((id, j) =>
      writer.command('bank.Deposit', { account: id, amount: 1 }, { wsid: wsOf(j), idempotencyKey: false }).catch((err: unknown) => errors.add('transport: final deposit failed', (err as Error).message))))
    await sleep(500)
    const mBatch = await scrape(server.metricsUrl)
    const byPartition = (m: (n: string, l?: string) => number): number[] =>
      Array.from({ length: opts.partitions }, (_, p) => m('vvm_subscription_groups', `partition="${p}"`))
    if (mIdle('vvm_subscriptions') !== 0) errors.add('metrics: subscriptions left after the churn', String(mIdle('vvm_subscriptions')))
    if (mBatch('vvm_subscription_groups') !== 0) errors.add('metrics: groups left with grace 0 after a batch in every partition', byPartition(mBatch).join(' / '))
    await writer.close()

    const warmIdx = samples.findIndex((s) => s.cycles >= opts.churnCycles * WARMUP_SHARE)
    const afterWarm = samples[Math.max(0, warmIdx)]!
    const end = samples[samples.length - 1]!
    const peak = (f: (s: ChurnSample) => number): number => Math.max(...samples.map(f))
    const tail = samples.slice(Math.max(0, warmIdx))
    const slope = slopePer100k(tail.map((s) => [s.cycles, s.rssKiB]))
    const endMinusWarm = end.rssKiB - afterWarm.rssKiB
    return {
      cycles: done, identical, distinct, seconds, cyclesPerS: done / seconds, samples,
      rss: {
        startKiB: samples[0]!.rssKiB, afterWarmupKiB: afterWarm.rssKiB, peakKiB: peak((s) => s.rssKiB), endKiB: end.rssKiB, idleAfterKiB: idleRss,
        endMinusWarmupKiB: endMinusWarm, slopeKiBPer100k: slope,
        flat: endMinusWarm <= Math.max(FLAT_SHARE * afterWarm.rssKiB, FLAT_SLACK_MIB * 1024),
      },
      rssAnon: { startKiB: samples[0]!.rssAnonKiB, afterWarmupKiB: afterWarm.rssAnonKiB, peakKiB: peak((s) => s.rssAnonKiB), endKiB: end.rssAnonKiB, endMinusWarmupKiB: end.rssAnonKiB - afterWarm.rssAnonKiB },
      serverHeap: {
        startKiB: samples[0]!.serverHeapKiB, afterWarmupKiB: afterWarm.serverHeapKiB, peakKiB: peak((s) => s.serverHeapKiB), endKiB: end.serverHeapKiB,
        endMinusWarmupKiB: end.serverHeapKiB - afterWarm.serverHeapKiB, slopeKiBPer100k: slopePer100k(tail.map((s) => [s.cycles, s.serverHeapKiB])),
      },
      idleAfter: { subscriptions: mIdle('vvm_subscriptions'), groupsByPartition: byPartition(mIdle) },
      afterBatchEverywhere: { groupsByPartition: byPartition(mBatch) },
      cores: coresBetween(mark0, mark1),
      clientHeapKiB: { start: samples[0]!.clientHeapKiB, peak: peak((s) => s.clientHeapKiB), end: end.clientHeapKiB },
      errors: errors.toJSON(),
    }
  } finally {
    for (const c of clients) await c.close().catch(() => undefined)
    await server.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

/** Least-squares slope of y over x, per 100,000 of x. */
function slopePer100k(points: [number, number][]): number {
  const n = points.length
  if (n < 2) return 0
  const mx = points.reduce((s, p) => s + p[0], 0) / n
  const my = points.reduce((s, p) => s + p[1], 0) / n
  let num = 0
  let den = 0
  for (const [x, y] of points) { num += (x - mx) * (y - my); den += (x - mx) ** 2 }
  return den === 0 ? 0 : (num / den) * 100_000
}

// ---- report ---------------------------------------------------------------------------------

const ms = (us: number): string => { const v = us / 1000; return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0) }
const int = (n: number): string => Math.round(n).toLocaleString('en-US')
const mib = (kib: number): string => (kib / 1024).toFixed(1)
const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(1)}×` : '–')
const errorCount = (e: Record<string, ErrorCount>): number => Object.values(e).reduce((n, x) => n + x.count, 0)

function markdown(r: BenchResult): string {
  const out: string[] = []
  out.push(`- commit \`${r.commit}\`, ${r.date}`)
  out.push(`- machine: ${r.machine}`)
  out.push(`- command: \`${r.command}\``)
  out.push(`- result: ${r.passed ? 'passed (every diff and reply right)' : '**FAILED**'}`)
  const o = r.options
  if (r.fanout !== undefined && r.fanout.length > 0) {
    out.push('')
    out.push(`**Fan-out**: ${int(o.subscribers)} subscribers of one \`bank.Balance\` over ${o.connections} connections (${o.subscribers / o.connections} each) in ${o.workers} threads; deposits open loop, ${o.warmupS} s warm-up + ${o.durationS} s measured, on a fresh server (${o.storage}, ${o.partitions} partitions) per rate. Latency in ms, per (subscriber, deposit), from the deposit's intended send to the subscriber's \`for await\` getting the diff (corrected for coordinated omission; uncorrected in result.json). Ceiling: raw uWS fan-out to raw \`ws\` clients, same layout and rate.`)
    out.push('')
    out.push('| deposits/s | run | p50 | p90 | p99 | p99.9 | max | p50 ÷ ceiling | p99 ÷ ceiling | deliveries/s | pairs delivered | errors | server cores | client ELU | other cores |')
    out.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for (const f of r.fanout) {
      const c = f.ceiling
      const row = (x: FanoutRun, ceil: FanoutRun | undefined): string => `| ${int(f.ratePerS)} | ${x.label} | ${ms(x.latencyUs.p50)} | ${ms(x.latencyUs.p90)} | ${ms(x.latencyUs.p99)} | ${ms(x.latencyUs.p999)} | ${ms(x.latencyUs.max)} | ${ceil !== undefined ? ratio(x.latencyUs.p50, ceil.latencyUs.p50) : '–'} | ${ceil !== undefined ? ratio(x.latencyUs.p99, ceil.latencyUs.p99) : '–'} | ${int(x.deliveriesPerS)} | ${x.pairs === x.pairsExpected ? 'all' : `${int(x.pairs)} of ${int(x.pairsExpected)}`} | ${int(errorCount(x.errors))} | ${x.cores.server.toFixed(2)} | ${x.clientElu.map((e) => e.toFixed(2)).join(', ')} | ${x.cores.other.toFixed(2)} |`
      if (c !== undefined) out.push(row(c, undefined))
      out.push(row(f.engine, c))
    }
    out.push('')
    out.push('| deposits/s | writer\'s deposit reply p50 / p99 ms: no subscribers → with subscribers | fan-out p50 ÷ no-subscriber reply p50 | evaluations per deposit | evaluations per diff | diffs per deposit | diffs per subscriber ÷ group diffs | pushes per diff | groups / subscriptions | subscriptions after close | server CPU per push | server RSS MiB: before / subscribed / after |')
    out.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|')
    for (const f of r.fanout) {
      const m = f.metrics
      out.push(`| ${int(f.ratePerS)} | ${ms(f.noSubscribers.latencyUs.p50)} / ${ms(f.noSubscribers.latencyUs.p99)} → ${ms(f.engine.writerUs.p50)} / ${ms(f.engine.writerUs.p99)} | ${ratio(f.engine.latencyUs.p50, f.noSubscribers.latencyUs.p50)} | ${m.evaluationsPerDeposit.toFixed(3)} | ${m.evaluationsPerDiff.toFixed(3)} | ${m.diffsPerDeposit.toFixed(3)} | ${(m.diffsPerSubscriber / Math.max(1, m.groupDiffs)).toFixed(3)} | ${int(m.pushesPerDiff)} | ${m.groupsDuring} / ${int(m.subscriptionsDuring)} | ${m.subscriptionsAfterClose} | ${f.serverCpuUsPerPush > 0 ? `${f.serverCpuUsPerPush.toFixed(2)} µs` : '– (below noise)'} | ${mib(f.serverRssKiB.beforeSubscribers)} / ${mib(f.serverRssKiB.withSubscribers)} / ${mib(f.serverRssKiB.afterRun)} |`)
    }
  }
  const ch = r.churn
  if (ch !== undefined) {
    out.push('')
    out.push(`**Churn**: ${int(ch.cycles)} subscribe → snapshot → unsubscribe cycles (${int(ch.identical)} on one identical read with ${o.churnDepositRatePerS} deposits/s into it, ${int(ch.distinct)} on ${int(o.churnAccounts)} distinct reads in ${o.churnWorkspaces} workspaces), ${o.churnConnections} connections × ${o.churnPipeline} in flight, \`--subscription-grace-s 0\`; server RSS from /proc, server V8 heap (main thread + partition workers) from \`vvm_heap_used_bytes\`; sampled every ${int(Math.floor(ch.cycles / Math.max(1, ch.samples.length - 1)))} cycles.`)
    out.push('')
    out.push('| figure | start | after 10 % | peak | end | end − after 10 % | slope per 100k cycles | flat |')
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|')
    out.push(`| server RSS, MiB | ${mib(ch.rss.startKiB)} | ${mib(ch.rss.afterWarmupKiB)} | ${mib(ch.rss.peakKiB)} | ${mib(ch.rss.endKiB)} | ${mib(ch.rss.endMinusWarmupKiB)} | ${mib(ch.rss.slopeKiBPer100k)} | ${ch.rss.flat ? 'yes' : '**no**'} |`)
    out.push(`| server RssAnon, MiB | ${mib(ch.rssAnon.startKiB)} | ${mib(ch.rssAnon.afterWarmupKiB)} | ${mib(ch.rssAnon.peakKiB)} | ${mib(ch.rssAnon.endKiB)} | ${mib(ch.rssAnon.endMinusWarmupKiB)} | | |`)
    out.push(`| server V8 heap used (main + partitions), MiB | ${mib(ch.serverHeap.startKiB)} | ${mib(ch.serverHeap.afterWarmupKiB)} | ${mib(ch.serverHeap.peakKiB)} | ${mib(ch.serverHeap.endKiB)} | ${mib(ch.serverHeap.endMinusWarmupKiB)} | ${mib(ch.serverHeap.slopeKiBPer100k)} | |`)
    out.push(`| client heap used, MiB | ${mib(ch.clientHeapKiB.start)} | | ${mib(ch.clientHeapKiB.peak)} | ${mib(ch.clientHeapKiB.end)} | | | |`)
    out.push('')
    out.push(`${int(ch.cyclesPerS)} cycles/s (closed loop, ${ch.seconds.toFixed(0)} s); server ${ch.cores.server.toFixed(2)} cores, client ${ch.cores.client.toFixed(2)}, other ${ch.cores.other.toFixed(2)}. 2 s after the last cycle: ${ch.idleAfter.subscriptions} subscriptions, groups by partition ${ch.idleAfter.groupsByPartition.join(' / ')}, RSS ${mib(ch.rss.idleAfterKiB)} MiB; after a batch in every partition: groups ${ch.afterBatchEverywhere.groupsByPartition.join(' / ')}. Errors: ${int(errorCount(ch.errors))}.`)
  }
  const errs = new Errors()
  for (const f of r.fanout ?? []) for (const e of [f.engine.errors, f.noSubscribers.errors, f.ceiling?.errors ?? {}]) errs.merge(e)
  if (r.churn !== undefined) errs.merge(r.churn.errors)
  if (errs.total > 0) {
    out.push('')
    out.push('Errors (kind: count — samples):')
    for (const [k, v] of errs.byKind) out.push(`- ${k}: ${v.count} — ${v.samples.join(' / ')}`)
  }
  return out.join('\n')
}

interface BenchResult {
  commit: string
  date: string
  machine: string
  command: string
  options: Options
  passed: boolean
  fanout?: FanoutResult[]
  churn?: ChurnResult
}

function commitName(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'demo', 'bin'], { cwd: ROOT, encoding: 'utf8' }).trim() !== ''
    return dirty ? `${head}-dirty` : head
  } catch {
    return 'unknown'
  }
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2))
  const date = new Date().toISOString()
  const out = resolve(opts.out !== '' ? opts.out : join(ROOT, 'bench/reports', `${date.slice(0, 10)}-subscriptions`, 'result.json'))
  const result: BenchResult = {
    commit: commitName(), date,
    machine: `${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, Linux ${release()}`,
    command: `node dist/bench/subscriptions.js ${process.argv.slice(2).join(' ')}`.trim(),
    options: opts, passed: true,
  }
  if (opts.part !== 'churn') {
    result.fanout = []
    for (const rate of opts.ratesPerS) result.fanout.push(await fanout({ ...opts, ratePerS: rate }))
  }
  if (opts.part !== 'fanout') result.churn = await churn(opts)
  const failures = [
    ...(result.fanout ?? []).flatMap((f) => [errorCount(f.engine.errors), errorCount(f.noSubscribers.errors), errorCount(f.ceiling?.errors ?? {})]),
    ...(result.churn === undefined ? [] : [errorCount(result.churn.errors)]),
  ].reduce((a, b) => a + b, 0)
  result.passed = failures === 0
  await mkdir(dirname(out), { recursive: true })
  await writeFile(out, JSON.stringify(result, null, 1) + '\n')
  console.log(markdown(result))
  console.log(`\nresult: ${out}`)
  if (!result.passed) process.exitCode = 1
}

if (!isMainThread) await subscriberThread()
else if (process.argv[2] === '--fanout-ceiling-server') await fanoutCeilingServer()
else await main()
