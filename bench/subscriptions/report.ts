// The report of bench/subscriptions.ts: the shape of result.json and the Markdown printed at the
// end (the tables quoted in docs/benchmarks.md, "Subscriptions").

import type { ChurnResult } from './churn.js'
import { Errors, type ErrorCount } from './errors.js'
import type { FanoutResult, FanoutRun } from './fanout.js'
import type { Options } from './options.js'

const ms = (us: number): string => { const v = us / 1000; return v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0) }
const int = (n: number): string => Math.round(n).toLocaleString('en-US')
const mib = (kib: number): string => (kib / 1024).toFixed(1)
const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(1)}×` : '–')
export const errorCount = (e: Record<string, ErrorCount>): number => Object.values(e).reduce((n, x) => n + x.count, 0)

export function markdown(r: BenchResult): string {
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

export interface BenchResult {
  commit: string
  date: string
  machine: string
  command: string
  options: Options
  passed: boolean
  fanout?: FanoutResult[]
  churn?: ChurnResult
}
