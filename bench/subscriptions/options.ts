// The options of bench/subscriptions.ts: every one with its default (and why), the usage text,
// parsing and validation up front.

/** Why 30 s: after the last deposit, diffs still queued (client-bound runs) get this long to arrive; later is "missing". */
const DRAIN_S_DEFAULT = 30

export interface Options {
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

export function parseOptions(argv: readonly string[]): Options {
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
