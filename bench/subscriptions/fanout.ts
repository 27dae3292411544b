// Part 1 of bench/subscriptions.ts, fan-out latency. `vvm start` in a child process (LevelDB, a
// fresh data directory, --auth off); `--subscribers` SDK subscriptions to the same read
// (`bank.Balance` of one account) spread over `--connections` SDK connections in `--workers`
// worker threads; a writer connection in this thread deposits 1 into that account at
// `--rate-per-s`, open loop, for `--warmup-s` + `--duration-s`. Deposit k (from 1) takes the
// balance to k, so a diff's balance names the deposits it covers; for every subscriber and every
// deposit of the measured window the latency is the time from the deposit's intended send time
// (open loop: a stall counts against every deposit due during it, wrk2's coordinated-omission
// correction) to that subscriber's `for await` receiving the diff; the time from the actual send
// is kept beside it. Every diff is checked: the shape, the balance, the order
// (docs/subscriptions.md: the first diff after the snapshot starts at or before the snapshot's
// offset, each later one at the previous one's toOffset; the balance only grows), the same
// toOffset for a deposit at every subscriber and equal to the deposit's reply's
// currentWLogOffset; every subscriber must reach the last balance; the writer's own subscription
// must have a deposit's diff before the deposit's reply. The server's metrics give evaluations
// and diffs per deposit (one group: 1 each, fewer when deposits share a group commit) and pushes
// per diff (one per subscriber, plus the writer's own).
// Ceilings measured in the same run, same rate and window, same layout of connections:
//   - raw fan-out: a uWebSockets.js program (ceiling-server.ts, `--fanout-ceiling-server`) that,
//     for each writer message, sends one 8-byte frame per virtual subscriber to each subscriber
//     connection (corked per connection, before the writer's ack), read by raw `ws` clients;
//   - one deposit with no subscribers: the writer's reply latency on the engine, before the
//     subscribers join.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WebSocket as RawWebSocket } from 'ws'
import { connect } from '../../src/client/index.js'
import { startChildServer } from '../servers/child.js'
import { summarize, type LatencySummaryUs } from '../load/histogram.js'
import { sleep } from './clock.js'
import { APP, CALL_TIMEOUT_MS, cpuMark, rssKiB, scrape, startEngine, type Cores } from './engine.js'
import { Errors, type ErrorCount } from './errors.js'
import { newSharedTimes, openLoop, schedule, type OpenLoopResult } from './open-loop.js'
import type { Options } from './options.js'
import { ENTRY_FILE, FANOUT_WSID, withSubscribers, type Subscribers } from './subscribers.js'

/** Why 5 s: the server releases a closed connection's subscriptions at once; a few seconds covers a loaded machine. */
const SETTLE_TIMEOUT_MS = 5_000

export interface FanoutRun {
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
  const server = await startChildServer([ENTRY_FILE, '--fanout-ceiling-server'], 'fan-out ceiling')
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

export interface FanoutResult {
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

export async function fanout(opts: Options): Promise<FanoutResult> {
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
