// `vvm bench standard`: the report docs/benchmarks.md quotes. One command from a fresh clone;
// the ceilings, every PERFORMANCE.md target this harness can measure, the sweeps (partitions,
// workspaces, open-loop rates up to the knee), a CPU profile of the server under the headline
// load, and the resource targets: memory with idle WebSocket connections (idle-connections.ts)
// and restart with a long PLog (restart.ts). Each step is short by default, but for the restart
// step's fill (1M events, about two minutes); --quick shrinks everything to a smoke test.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { durabilityOf, type BenchOptions } from './options.js'
import { summarizeProfiles, type KeepProfiles } from './profile.js'
import { latencyChart } from './report/charts.js'
import { fmtInt, ProgressLine } from './report/progress.js'
import { fmtMs, fmtRatio, terminalSummary } from './report/table.js'
import { commit, defaultOutDir, machine, writeReport } from './report/write.js'
import type { BenchReport, IdleConnectionsResult, ProfiledRun, RestartResult, RunResult, Sweep, TargetCheck } from './result.js'
import { stepFromOptions } from './run.js'
import { attachCeiling, ceilingStep, runStep, Target, type Step } from './session.js'
import { runLine } from './summary.js'
import { runNotes } from './notes.js'
import { stageTailNote } from './stage-tail.js'
import { scrape } from './servers/probe.js'
import { machineBusySeconds } from './load/cpu.js'
import { IDLE_CONNECTIONS_TARGET_COUNT, idleConnectionsStep, idleConnectionsTarget } from './idle-connections.js'
import { RESTART_TARGET_EVENTS, restartStep, restartTarget } from './restart.js'
import { syncPutCeiling, type SyncPutCeiling } from './sync-put.js'

/** PERFORMANCE.md: p99 at half of the maximum command rate must stay at or under this. */
const P99_TARGET_US = 5000
/** PERFORMANCE.md: a command with a WASM extension reaches at least this share of its builtin twin's throughput. */
const WASM_SHARE_TARGET = 0.7
/** How long the synced-put ceiling is measured (--quick: a tenth). */
const SYNC_PUT_MS = 3000
/** Rate sweep steps, as fractions of the closed-loop maximum; stops after the knee. */
const RATE_FRACTIONS = [0.1, 0.25, 0.5, 0.7, 0.85, 1.0, 1.2]
/** A rate step is past the knee when it delivers less than this share of its intended rate… */
const KEEP_UP_SHARE = 0.95
/** …or its p99 exceeds this many times the first step's (and the 5 ms target). */
const P99_GROWTH_MAX = 10
/** The quiet check before the report: this long, and at most this many cores used by others. */
const QUIET_CHECK_MS = 2000
const QUIET_CORES_MAX = 0.1
/** Warm-up of a run on a freshly started server (sweeps): its first seconds were seen to stall. */
const FRESH_SERVER_WARMUP_S = 2
/** The binary protocol's load: one connection, 256 in flight (PERFORMANCE.md's WS ceiling). */
const WS_CONNECTIONS = 1
const WS_PIPELINE = 256
/** --quick sizes of the resource steps (the full report uses PERFORMANCE.md's 10k and 1M). */
const QUICK_IDLE_CONNECTIONS_COUNT = 1000
/** Memory by idle connections (issue 12: "memory with 1k/10k/100k connections"); --quick: two small points. */
const IDLE_CONNECTIONS_SWEEP = [1000, IDLE_CONNECTIONS_TARGET_COUNT, 100_000]
const QUICK_IDLE_CONNECTIONS_SWEEP = [200, QUICK_IDLE_CONNECTIONS_COUNT]
const QUICK_RESTART_EVENTS = 20_000

export async function standardCommand(o: BenchOptions, commandLine: string): Promise<number> {
  const progress = new ProgressLine()
  const base = stepFromOptions(o, '')
  const http64: Step = { ...base, transport: 'http', api: 'v1', connections: 64, pipeline: 1, mode: 'closed', ratePerS: 0 }
  const runs: RunResult[] = []
  const sweeps: Sweep[] = []
  const notes: string[] = []
  const done = (r: RunResult): RunResult => { progress.line(runLine(r)); return r }
  const engineOptions = { partitions: o.partitions, storage: o.storage, app: 'demo/bank', extraArgs: o.serverArgs }
  // Known before the runs: the profiled runs write their flame graphs there.
  const out = o.out ?? defaultOutDir('standard')

  // 0. Is the machine quiet? Other work shows in every figure; each run also measures it.
  const busyCores = await machineBusyCores(QUIET_CHECK_MS)
  if (busyCores !== undefined) {
    const line = `before the report the machine was busy ${busyCores.toFixed(2)} cores with other work${busyCores > QUIET_CORES_MAX ? ' — not quiet: the figures will be disturbed' : ''}`
    notes.push(line)
    progress.line(line)
  }

  // 1. Ceilings (the echo server alone on the machine), closed loop.
  const echo = await Target.echo()
  let server: Target | undefined
  let ceilHttp: RunResult, ceilOne: RunResult, ceilWs: RunResult | undefined
  let deposit: RunResult, one: RunResult, query: RunResult, half: RunResult, wsDeposit: RunResult | undefined
  let syncPut: SyncPutCeiling
  let wasm: WasmVsBuiltin
  try {
    ceilHttp = done(await runStep(ceilingStep({ ...http64, label: '' }), echo, progress))
    ceilOne = done(await runStep(ceilingStep({ ...http64, connections: 1, label: '' }), echo, progress))
    const wsStep = wsStepOf(http64)
    ceilWs = done(await runStep(ceilingStep(wsStep), echo, progress))
    runs.push(ceilHttp, ceilOne, ceilWs)
    syncPut = await syncPutCeiling(o.quick ? SYNC_PUT_MS / 10 : SYNC_PUT_MS)
    progress.line(`✓ ceiling: LevelDB put with sync, one at a time: ${fmtInt(syncPut.putsPerS)}/s (p50 ${fmtMs(syncPut.p50Us)} ms, p99 ${fmtMs(syncPut.p99Us)} ms)`)

    // 2. The engine, closed loop: the throughput targets.
    server = await Target.start(engineOptions)
    notes.push(`server: ${server.server?.commandLine ?? ''}`)
    deposit = done(attachCeiling(await runStep({ ...http64, scenario: 'deposit', label: 'deposit, HTTP v1, 64 connections' }, server, progress), ceilHttp))
    one = done(attachCeiling(await runStep({ ...http64, connections: 1, scenario: 'deposit', label: 'deposit, one at a time' }, server, progress), ceilOne))
    runs.push(deposit, one)
    try {
      wsDeposit = done(attachCeiling(await runStep({ ...wsStep, scenario: 'deposit', label: `deposit, binary protocol, ${WS_CONNECTIONS}×${WS_PIPELINE}` }, server, progress), ceilWs))
      runs.push(wsDeposit)
    } catch (err) {
      // A server without the binary protocol still gets the rest of its report.
      notes.push(`binary protocol run not measured: ${(err as Error).message.split('\n')[0]}`)
    }
    query = done(attachCeiling(await runStep({ ...http64, api: 'v2', scenario: 'point-query', label: 'point query, HTTP v2, 64 connections' }, server, progress), ceilHttp))
    const mixed = done(attachCeiling(await runStep({ ...http64, api: 'v2', scenario: 'mixed', label: 'mixed, HTTP v2, 64 connections' }, server, progress), ceilHttp))
    const transfer = done(attachCeiling(await runStep({ ...http64, scenario: 'transfer', label: 'transfer, HTTP v1, 64 connections' }, server, progress), ceilHttp))
    // The WASM twin between two builtin runs, so that drift of the machine hits both sides.
    const transferWasm = done(attachCeiling(await runStep({ ...http64, scenario: 'transfer-wasm', label: 'transfer as WASM, HTTP v1, 64 connections' }, server, progress), ceilHttp))
    const transferAgain = done(attachCeiling(await runStep({ ...http64, scenario: 'transfer', label: 'transfer again, HTTP v1, 64 connections' }, server, progress), ceilHttp))
    runs.push(query, mixed, transfer, transferWasm, transferAgain)
    wasm = { wasm: transferWasm, builtin: [transfer, transferAgain] }

    // 3. Open loop at half the maximum command rate: the latency target, beside its ceiling.
    const halfRate = Math.max(100, Math.round(deposit.throughputPerS / 2))
    const open: Step = { ...http64, mode: 'open', ratePerS: halfRate }
    const ceilHalf = done(await runStep(ceilingStep(open), echo, progress))
    const metricsUrl = server.server?.metricsUrl
    const stagesBefore = metricsUrl === undefined ? undefined : await scrape(metricsUrl)
    half = done(attachCeiling(await runStep({ ...open, scenario: 'deposit', label: `deposit, open loop at half the maximum (${fmtInt(halfRate)}/s)` }, server, progress), ceilHalf))
    runs.push(ceilHalf, half)
    // The server's own account of the tail at that rate: which stage the slow commands spent it in.
    const tail = metricsUrl === undefined || stagesBefore === undefined ? undefined : stageTailNote(stagesBefore, await scrape(metricsUrl), half.label)
    if (tail !== undefined) notes.push(tail)

    // 4. Rate sweep on the same server, up to the knee.
    sweeps.push(await rateSweep({ ...open, scenario: 'deposit' }, deposit.throughputPerS, server, progress, done, o.quick))
  } finally {
    await echo.stop()
    await server?.stop()
  }

  // 5. Workspaces and partitions: a fresh server per point.
  const halfRate = Math.max(100, Math.round(deposit.throughputPerS / 2))
  const freshWarmupS = o.quick ? o.warmupS : Math.max(o.warmupS, FRESH_SERVER_WARMUP_S)
  const wsCounts = o.quick ? [100, 1000] : [1000, 10_000, 100_000]
  sweeps.push(await freshServerSweep('workspaces', `Latency with 1k/10k/100k workspaces (deposit, open loop ${fmtInt(halfRate)}/s)`, 'workspaces', wsCounts,
    (n) => ({ ...http64, scenario: 'deposit', mode: 'open', ratePerS: halfRate, workspaces: n, label: `deposit over ${fmtInt(n)} workspaces` }), () => engineOptions, progress, done, freshWarmupS))
  const partitionCounts = o.quick ? [1, 2] : [1, 2, 4, 8]
  sweeps.push(await freshServerSweep('partitions', 'Throughput with 1/2/4/8 partitions (deposit, closed loop, 64 connections)', 'partitions', partitionCounts,
    (n) => ({ ...http64, scenario: 'deposit', label: `deposit, ${n} partition${n === 1 ? '' : 's'}` }), (n) => ({ ...engineOptions, partitions: n }), progress, done, freshWarmupS))

  // 6. Where the time goes: CPU profiles of every server thread under the loads of the targets.
  const profiles: ProfiledRun[] = []
  for (const step of [
    { ...http64, scenario: 'deposit', label: 'profiled: deposit, HTTP v1, 64 connections' },
    { ...http64, connections: 1, scenario: 'deposit', label: 'profiled: deposit, one at a time' },
    { ...http64, api: 'v2' as const, scenario: 'point-query', label: 'profiled: point query, 64 connections' },
  ]) {
    const prefix = `profile-${profiles.length + 1}-${step.scenario}-${step.transport}-${step.api}`
    profiles.push(await profileRun(step, engineOptions, progress, { outDir: out, prefix }))
  }

  // 7. Memory: a fresh server's RSS idle, then with 1k, 10k and 100k idle binary-protocol connections (a fresh server each).
  const idleConnectionsSweep: IdleConnectionsResult[] = []
  for (const count of o.quick ? QUICK_IDLE_CONNECTIONS_SWEEP : IDLE_CONNECTIONS_SWEEP) {
    const step = await idleConnectionsStep({ engine: engineOptions, connectionsCount: count, token: o.token, progress })
    progress.line(`${stepMark(step.status)} memory with ${fmtInt(step.connectionsCount)} idle WebSocket connections: ${idleConnectionsTarget(step).measured}`)
    if (step.status !== 'measured') notes.push(`memory step with ${fmtInt(count)} connections ${step.status}: ${step.reason}`)
    idleConnectionsSweep.push(step)
  }
  const targetCount = o.quick ? QUICK_IDLE_CONNECTIONS_COUNT : IDLE_CONNECTIONS_TARGET_COUNT
  const idleConnections = idleConnectionsSweep.find((r) => r.connectionsCount === targetCount)!

  // 8. Restart: fill the PLog with 1M events (deposits, binary protocol), SIGKILL, start again, time the first command.
  const restart = await restartStep({
    engine: engineOptions, eventsTarget: o.quick ? QUICK_RESTART_EVENTS : RESTART_TARGET_EVENTS, progress, done,
    fill: { ...wsStepOf(base), scenario: 'deposit', label: `deposit, binary protocol, ${WS_CONNECTIONS}×${WS_PIPELINE}` },
  })
  progress.line(`${stepMark(restart.status)} restart: ${restartTarget(restart).measured}`)
  if (restart.status !== 'measured') notes.push(`restart step ${restart.status}: ${restart.reason}`)
  if (restart.fill.errors > 0) notes.push(`the restart step's fill had ${fmtInt(restart.fill.errors)} wrong or missing replies`)

  // 9. The targets.
  const rate = sweeps.find((s) => s.name === 'rate')
  const targets = targetChecks({ deposit, one, query, half, wsDeposit, ceilHttp, ceilWs, syncPut, wasm, idleConnections, restart })
  notes.push(...runNotes([...runs, ...sweeps.flatMap((s) => s.points.map((p) => p.run))]))
  notes.push(`${machine().nproc} cores shared by the server and the load generator (${o.workers} load worker${o.workers === 1 ? '' : 's'})`)
  const pastKnee = new Set(rate?.points.filter((p) => rate.knee !== undefined && p.x > rate.knee.ratePerS).map((p) => p.run) ?? [])
  const wrongReply = (r: RunResult): boolean => Object.keys(r.errors.byKind).some((k) => k.startsWith('content') || k.startsWith('check'))
  const passed = [...runs, ...sweeps.flatMap((s) => s.points.map((p) => p.run))].every((r) => (pastKnee.has(r) ? !wrongReply(r) : r.passed))
    && idleConnectionsSweep.every((r) => r.status !== 'failed') && restart.status !== 'failed' && restart.fill.errors === 0
  const report: BenchReport = {
    kind: 'standard', createdAt: new Date().toISOString(), commit: commit(), machine: machine(), commandLine,
    durability: durabilityOf(o.storage),
    runs, sweeps, targets, profiles, idleConnections, idleConnectionsSweep, restart, syncPut, notes, passed,
  }
  const main = latencyChart(runs.filter((r) => r.mode === 'open'), `deposit at half the maximum rate: latency by percentile (${report.commit})`, P99_TARGET_US / 1000)
  const files = await writeReport(report, main, out)
  process.stdout.write(`\n${terminalSummary(report, out)}\n\nresult: ${files.json}\nreport: ${files.html} (and ${files.md})\nchart:  ${files.png}\n`)
  if (!passed) process.stdout.write('\nFAILED: some replies were wrong or missing, or a resource step failed (errors and notes above); these figures are not valid.\n')
  return passed ? 0 : 1
}

const stepMark = (status: 'measured' | 'failed' | 'skipped'): string => (status === 'measured' ? '✓' : status === 'failed' ? '✗' : '–')

/** The binary protocol's load: one connection, 256 in flight (PERFORMANCE.md's WS ceiling), closed loop. */
function wsStepOf(s: Step): Step {
  return { ...s, transport: 'ws', api: 'v2', connections: WS_CONNECTIONS, pipeline: WS_PIPELINE, mode: 'closed', ratePerS: 0 }
}

async function rateSweep(open: Step, maxPerS: number, server: Target, progress: ProgressLine, done: (r: RunResult) => RunResult, quick: boolean): Promise<Sweep> {
  const sweep: Sweep = { name: 'rate', title: 'Open-loop rate sweep (deposit, 64 connections)', xLabel: 'intended rate, per second', points: [] }
  let firstP99 = 0
  let lastGood: number | undefined
  for (const f of quick ? [0.25, 0.7, 1.2] : RATE_FRACTIONS) {
    const rate = Math.max(50, Math.round(maxPerS * f))
    const run = done(await runStep({ ...open, ratePerS: rate, label: `deposit at ${fmtInt(rate)}/s (${Math.round(f * 100)} % of max)` }, server, progress))
    sweep.points.push({ x: rate, run })
    if (firstP99 === 0) firstP99 = run.latencyUs.p99
    const reasons: string[] = []
    if (run.throughputPerS < rate * KEEP_UP_SHARE) reasons.push(`delivered ${fmtInt(run.throughputPerS)}/s of ${fmtInt(rate)}/s`)
    if (run.latencyUs.p99 > Math.max(P99_TARGET_US, firstP99 * P99_GROWTH_MAX)) reasons.push(`p99 ${fmtMs(run.latencyUs.p99)} ms`)
    if (run.errors.total > 0) reasons.push(`${fmtInt(run.errors.total)} errors`)
    if (reasons.length > 0) {
      sweep.knee = lastGood === undefined
        ? { ratePerS: 0, reason: `already past the knee at the lowest rate: ${reasons.join(', ')}` }
        : { ratePerS: lastGood, reason: `the next step (${fmtInt(rate)}/s): ${reasons.join(', ')}` }
      break
    }
    lastGood = rate
  }
  if (sweep.knee === undefined && lastGood !== undefined) sweep.knee = { ratePerS: lastGood, reason: 'no step went past the knee' }
  return sweep
}

async function freshServerSweep(
  name: Sweep['name'], title: string, xLabel: string, xs: number[], step: (x: number) => Step,
  engine: (x: number) => Parameters<typeof Target.start>[0], progress: ProgressLine, done: (r: RunResult) => RunResult, freshWarmupS: number,
): Promise<Sweep> {
  const sweep: Sweep = { name, title, xLabel, points: [] }
  for (const x of xs) {
    const server = await Target.start(engine(x))
    try {
      // A fresh server compiles its hot paths and settles its storage in its first seconds.
      const s = step(x)
      sweep.points.push({ x, run: done(await runStep({ ...s, warmupS: Math.max(s.warmupS, freshWarmupS) }, server, progress)) })
    } finally {
      await server.stop()
    }
  }
  return sweep
}

/** One run on a fresh server started with --cpu-prof; the profile is read (and kept, with its flame graphs) once the server exited. */
async function profileRun(step: Step, engine: Parameters<typeof Target.start>[0], progress: ProgressLine, keep: KeepProfiles): Promise<ProfiledRun> {
  const dir = await mkdtemp(join(tmpdir(), 'vvm-bench-prof-'))
  try {
    const server = await Target.start({ ...engine, cpuProfDir: dir })
    let run: RunResult
    try {
      run = await runStep(step, server, progress)
      progress.line(runLine(run))
    } finally {
      await server.stop()
    }
    return { run, threads: await summarizeProfiles(dir, keep) }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** The WASM twin of a command and its builtin runs before and after it, on one server. */
interface WasmVsBuiltin {
  wasm: RunResult
  builtin: [RunResult, RunResult]
}

interface Measured {
  deposit: RunResult
  one: RunResult
  query: RunResult
  half: RunResult
  wsDeposit: RunResult | undefined
  ceilHttp: RunResult
  ceilWs: RunResult | undefined
  syncPut: SyncPutCeiling
  wasm: WasmVsBuiltin
  idleConnections: IdleConnectionsResult
  restart: RestartResult
}

function targetChecks(m: Measured): TargetCheck[] {
  const perS = (r: RunResult): string => `${fmtInt(r.throughputPerS)}/s`
  const ratio = (r: RunResult): number => r.ceiling?.throughputRatio ?? 0
  const out: TargetCheck[] = []
  if (m.wsDeposit !== undefined) {
    out.push({
      figure: 'durable commands/s, binary protocol, pipelined', target: '≥ 40 % of the WS echo ceiling; ≥ 30k/s',
      measured: `${perS(m.wsDeposit)} = ${fmtRatio(ratio(m.wsDeposit))} of ${perS(m.ceilWs!)}`,
      met: m.wsDeposit.passed && ratio(m.wsDeposit) >= 0.4 && m.wsDeposit.throughputPerS >= 30_000,
    })
  } else {
    out.push({ figure: 'durable commands/s, binary protocol, pipelined', target: '≥ 40 % of the WS echo ceiling; ≥ 30k/s', measured: `not measured (see the notes)${m.ceilWs ? `; WS echo ceiling ${perS(m.ceilWs)}` : ''}`, met: null })
  }
  out.push({
    figure: 'durable commands/s over HTTP v1, 64 connections', target: '≥ 25 % of the POST echo ceiling; ≥ 15k/s',
    measured: `${perS(m.deposit)} = ${fmtRatio(ratio(m.deposit))} of ${perS(m.ceilHttp)}`,
    met: m.deposit.passed && ratio(m.deposit) >= 0.25 && m.deposit.throughputPerS >= 15_000,
  })
  out.push({
    figure: 'commands/s one at a time, durable', target: '≥ 2k/s',
    measured: `${perS(m.one)} = ${fmtRatio(m.one.throughputPerS / m.syncPut.putsPerS)} of the synced-put ceiling ${fmtInt(m.syncPut.putsPerS)}/s (one LevelDB put with sync at a time)`,
    met: m.one.passed && m.one.throughputPerS >= 2000,
  })
  out.push({
    figure: 'p99 at half the maximum command rate, open loop', target: '≤ 5 ms',
    measured: `${fmtMs(m.half.latencyUs.p99)} ms at ${fmtInt(m.half.settings.ratePerS ?? 0)}/s (p50 ${fmtMs(m.half.latencyUs.p50)}, p99.9 ${fmtMs(m.half.latencyUs.p999)}; one synced put alone: p99 ${fmtMs(m.syncPut.p99Us)} ms)`,
    met: m.half.passed && m.half.latencyUs.p99 <= P99_TARGET_US,
  })
  out.push({ figure: 'point queries/s through the piscina pool', target: '≥ 20k/s', measured: `${perS(m.query)} = ${fmtRatio(ratio(m.query))} of the POST echo ceiling`, met: m.query.passed && m.query.throughputPerS >= 20_000 })
  const builtinPerS = (m.wasm.builtin[0].throughputPerS + m.wasm.builtin[1].throughputPerS) / 2
  const wasmShare = builtinPerS > 0 ? m.wasm.wasm.throughputPerS / builtinPerS : 0
  out.push({
    figure: 'command with a WASM extension vs builtin', target: '≥ 70 %',
    measured: `${fmtRatio(wasmShare)}: bank.TransferWasm ${perS(m.wasm.wasm)} vs bank.Transfer ${perS(m.wasm.builtin[0])} and ${perS(m.wasm.builtin[1])} (before and after), HTTP v1, 64 connections`,
    met: m.wasm.wasm.passed && m.wasm.builtin.every((r) => r.passed) && wasmShare >= WASM_SHARE_TARGET,
  })
  out.push(restartTarget(m.restart))
  out.push(idleConnectionsTarget(m.idleConnections))
  return out
}

async function machineBusyCores(ms: number): Promise<number | undefined> {
  const a = machineBusySeconds()
  await new Promise((r) => setTimeout(r, ms))
  const b = machineBusySeconds()
  return a === undefined || b === undefined ? undefined : Math.max(0, (b - a) / (ms / 1000))
}
