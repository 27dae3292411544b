// Part 2 of bench/subscriptions.ts, churn. A fresh server with --subscription-grace-s 0 (a
// released group is dropped at the partition's next batch); `--churn-connections` ×
// `--churn-pipeline` loops each subscribe, take the snapshot (checked), unsubscribe, again, until
// `--churn-cycles` cycles; half the cycles on one identical read (with a writer depositing into
// it at `--churn-deposit-rate-per-s` so that its group is re-evaluated meanwhile), half on
// distinct reads (`--churn-accounts` accounts over `--churn-workspaces` workspaces, taken in
// turn). The server's RSS (from /proc), its V8 heap (`vvm_heap_used_bytes`: main thread and
// partition workers) and its subscription gauges are sampled `--churn-samples` times; the
// figures are the RSS and the heap at the end against their values after the first 10 % (the
// warm-up).

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, type VvmClient } from '../../src/client/index.js'
import { nowUs, sleep } from './clock.js'
import { APP, CALL_TIMEOUT_MS, coresBetween, cpuMark, rssKiB, scrape, startEngine, type Cores } from './engine.js'
import { Errors, type ErrorCount } from './errors.js'
import type { Options } from './options.js'

const CHURN_WSID_BASE = 200_000

/** Why 512: documents created at once during setup: enough to fill a group commit, few enough to stay under any bound. */
const SETUP_PIPELINE = 512

/** The churn's RSS is called flat when it ends within max(this share, FLAT_SLACK_MIB) of its value after the warm-up. */
const FLAT_SHARE = 0.05
/** Why 8 MiB: a V8 process's RSS moves by a few MiB with GC timing and malloc's arenas, leak or not. */
const FLAT_SLACK_MIB = 8
/** Why 10 %: the first tenth of the cycles warms up JIT, caches, V8's heap sizing and LevelDB's memtable. */
const WARMUP_SHARE = 0.1

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

export interface ChurnResult {
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

export async function churn(opts: Options): Promise<ChurnResult> {
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
