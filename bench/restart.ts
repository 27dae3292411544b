// Restart with a long log (PERFORMANCE.md: with 1M events in the PLog, the first command is
// served ≤ 2 s after the start), a step of the standard report:
//
// 1. a fresh engine on a data directory this step owns;
// 2. deposits over the binary protocol (the `deposit` scenario, 1 connection × 256 in flight,
//    closed loop, through runStep like every run of the report) until the partitions' PLog
//    offsets (`vvm_partition_plog_offset`) sum to the target;
// 3. SIGKILL, as a crash: nothing is flushed or closed;
// 4. the same server started again on that directory, and a document create sent every ~20 ms
//    from its "listening on" line until one is answered 201 (with port 0 the address is not
//    known earlier, and the server accepts nothing before it listens). The figure is the time
//    from the spawn to that reply; the time to "listening" is kept beside it. The restarted
//    server's own PLog offsets must hold every event of before the kill.

import { readdir, stat, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fmtInt, type ProgressLine } from './report/progress.js'
import type { RestartResult, RunResult, TargetCheck } from './result.js'
import { field } from './scenario.js'
import { startEngine, type EngineOptions, type EngineServer } from './servers/engine.js'
import { scrape } from './servers/probe.js'
import { runStep, Target, type Step } from './session.js'

/** PERFORMANCE.md's size and bound. */
export const RESTART_TARGET_EVENTS = 1_000_000
const FIRST_COMMAND_TARGET_MS = 2000
/** The first fill run's length assumes this rate; the next ones use the rate measured. */
const FILL_GUESS_PER_S = 10_000
/** Fill runs of at most this long, so that progress shows and a stall is seen within a run. */
const FILL_RUN_S_MIN = 1
const FILL_RUN_S_MAX = 30
/** 1M events at the slowest rate seen on this VM (~2k deposits/s) take ~17 runs of 30 s. */
const FILL_RUNS_MAX = 60
/** Each run plans this much more than the events missing, so the last run usually reaches the target. */
const FILL_OVERSHOOT = 1.05
/** Between the starts of two attempts at the first command. */
const RETRY_MS = 20
/** Why 60 s: 30 × the target; a server that needs longer is failed, not measured. */
const FIRST_COMMAND_TIMEOUT_MS = 60_000
const ATTEMPT_TIMEOUT_MS = 5000

export interface RestartOptions {
  engine: EngineOptions
  eventsTarget: number
  /** The fill's load: the deposit scenario over the binary protocol; its duration is set here. */
  fill: Step
  progress: ProgressLine
  /** Called with each finished fill run (prints its line). */
  done(r: RunResult): RunResult
}

/** A failure of the step with the reason the report shows; anything else thrown is a bug. */
class StepFailure extends Error {}

export async function restartStep(o: RestartOptions): Promise<RestartResult> {
  const r: RestartResult = {
    status: 'measured', reason: '', eventsTarget: o.eventsTarget, eventsBeforeKill: null, eventsAfterRestart: null, dataDirBytes: null,
    fill: { label: o.fill.label, runsCount: 0, ok: 0, errors: 0, errorKinds: {}, seconds: 0, eventsPerS: 0 },
    listeningMs: null, firstCommandMs: null, attemptsCount: 0,
  }
  // mem keeps nothing across a restart; a Cassandra server started by the harness gets a fresh keyspace on each start.
  if (o.engine.storage !== 'level') return { ...r, status: 'skipped', reason: `the restart step runs on level storage, not ${o.engine.storage}` }
  const dataDir = await mkdtemp(join(tmpdir(), 'vvm-bench-restart-'))
  let first: Target | undefined
  let second: EngineServer | undefined
  try {
    first = await Target.start({ ...o.engine, dataDir })
    r.eventsBeforeKill = await fill(first, o, r)
    r.dataDirBytes = await directoryBytes(dataDir)
    await first.server!.kill()

    try {
      second = await startEngine({ ...o.engine, dataDir })
    } catch (err) {
      throw new StepFailure(`the server did not start again: ${(err as Error).message.split('\n')[0]}`)
    }
    r.listeningMs = Math.round(second.listeningAtMs - second.spawnedAtMs)
    const served = await firstCommand(second.url, o, r)
    r.firstCommandMs = Math.round(served - second.spawnedAtMs)
    r.eventsAfterRestart = await eventsInLog(second.metricsUrl)
    if (r.eventsAfterRestart < r.eventsBeforeKill) throw new StepFailure(`the restarted server's PLogs hold ${fmtInt(r.eventsAfterRestart)} events, ${fmtInt(r.eventsBeforeKill)} before the kill`)
    return r
  } catch (err) {
    o.progress.clear()
    if (!(err instanceof StepFailure)) throw err
    return { ...r, status: 'failed', reason: err.message }
  } finally {
    await second?.stop()
    await first?.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

/** Deposits until the PLogs hold the target; returns the events they hold. */
async function fill(target: Target, o: RestartOptions, r: RestartResult): Promise<number> {
  const metricsUrl = target.server?.metricsUrl
  let inLog = await eventsInLog(metricsUrl)
  let perS = FILL_GUESS_PER_S
  const startedMs = performance.now()
  while (inLog < o.eventsTarget) {
    if (r.fill.runsCount >= FILL_RUNS_MAX) throw new StepFailure(`after ${FILL_RUNS_MAX} fill runs the PLogs hold ${fmtInt(inLog)} of ${fmtInt(o.eventsTarget)} events`)
    const durationS = Math.min(FILL_RUN_S_MAX, Math.max(FILL_RUN_S_MIN, ((o.eventsTarget - inLog) * FILL_OVERSHOOT) / perS))
    const runStartedMs = performance.now()
    // No warm-up: every event counts, and the figure of a fill run is not a report's figure.
    const run = o.done(await runStep({ ...o.fill, warmupS: 0, durationS: Math.round(durationS * 10) / 10, label: `restart fill: ${o.fill.label} (${fmtInt(inLog)} of ${fmtInt(o.eventsTarget)} events in the PLogs)` }, target, o.progress))
    r.fill.runsCount++
    r.fill.ok += run.ok
    r.fill.errors += run.errors.total
    for (const [kind, n] of Object.entries(run.errors.byKind)) r.fill.errorKinds[kind] = (r.fill.errorKinds[kind] ?? 0) + n
    const now = await eventsInLog(metricsUrl)
    if (now <= inLog) throw new StepFailure(`a fill run added no event to the PLogs (${fmtInt(now)}; ${fmtInt(run.errors.total)} errors)`)
    perS = (now - inLog) / ((performance.now() - runStartedMs) / 1000)
    inLog = now
  }
  r.fill.seconds = Math.round((performance.now() - startedMs) / 100) / 10
  r.fill.eventsPerS = r.fill.seconds > 0 ? Math.round(inLog / r.fill.seconds) : 0
  return inLog
}

/** The sum of the partitions' last committed PLog offsets, from the server's metrics. */
async function eventsInLog(metricsUrl: string | undefined): Promise<number> {
  if (metricsUrl === undefined) throw new StepFailure('the server printed no metrics port: the PLog offsets cannot be read')
  try {
    return (await scrape(metricsUrl))('vvm_partition_plog_offset')
  } catch (err) {
    throw new StepFailure(`reading ${metricsUrl}: ${(err as Error).message}`)
  }
}

/** Sends a document create every ~20 ms until one is answered 201; returns when (performance.now()). */
async function firstCommand(url: string, o: RestartOptions, r: RestartResult): Promise<number> {
  const path = `${url}/api/v2/apps/${o.engine.app}/workspaces/${o.fill.wsidBase}/docs/bank.Account`
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(o.fill.token === undefined ? {} : { authorization: `Bearer ${o.fill.token}` }) }
  const body = JSON.stringify({ name: 'bench-restart', balance: 0 })
  const deadlineMs = performance.now() + FIRST_COMMAND_TIMEOUT_MS
  let last = ''
  while (performance.now() < deadlineMs) {
    const sentMs = performance.now()
    r.attemptsCount++
    try {
      const res = await fetch(path, { method: 'POST', headers, body, signal: AbortSignal.timeout(ATTEMPT_TIMEOUT_MS) })
      const text = await res.text()
      const answeredMs = performance.now()
      if (res.status === 201) {
        if (typeof field(parseJson(text), 'newIDs', '1') !== 'number') throw new StepFailure(`the first command was answered 201 without newIDs["1"]: ${text.slice(0, 200)}`)
        return answeredMs
      }
      // Not ready yet (503), or limited: try again. Anything else is a wrong reply.
      if (res.status < 500 && res.status !== 429 && res.status !== 408) throw new StepFailure(`the first command was answered ${res.status}: ${text.slice(0, 200)}`)
      last = `status ${res.status} ${text.slice(0, 120)}`
    } catch (err) {
      if (err instanceof StepFailure) throw err
      last = (err as Error).message
    }
    await sleep(Math.max(0, RETRY_MS - (performance.now() - sentMs)))
  }
  throw new StepFailure(`no document create answered 201 within ${FIRST_COMMAND_TIMEOUT_MS / 1000} s of "listening" (${fmtInt(r.attemptsCount)} attempts; the last: ${last})`)
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    total += e.isDirectory() ? await directoryBytes(p) : (await stat(p)).size
  }
  return total
}

/** The PERFORMANCE.md row: a verdict only at the target's size. */
export function restartTarget(r: RestartResult | undefined): TargetCheck {
  const check = { figure: 'restart with 1M events until the first command', target: '≤ 2 s' }
  if (r === undefined) return { ...check, measured: 'not measured', met: null }
  if (r.status === 'skipped') return { ...check, measured: `not measured: ${r.reason}`, met: null }
  if (r.status === 'failed' || r.firstCommandMs === null || r.eventsBeforeKill === null) return { ...check, measured: `failed: ${r.reason}`, met: false }
  const measured = `${fmtInt(r.firstCommandMs)} ms with ${fmtInt(r.eventsBeforeKill)} events in the log (listening after ${fmtInt(r.listeningMs ?? 0)} ms)`
  if (r.eventsBeforeKill < RESTART_TARGET_EVENTS) return { ...check, measured, met: null, noVerdict: `no verdict: ${fmtInt(r.eventsBeforeKill)} events, not ${fmtInt(RESTART_TARGET_EVENTS)}` }
  return { ...check, measured, met: r.firstCommandMs <= FIRST_COMMAND_TARGET_MS }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined // not JSON: the caller reports the text
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
