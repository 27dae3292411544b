// The main-thread side of a run: starts the load workers, gives them one start time, adds up
// their interval reports (progress, timeline) and final histograms into a RunResult.

import { Worker } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import type { Histogram } from 'hdr-histogram-js'
import type { RunResult, TimelinePoint } from '../result.js'
import type { TransportSpec } from '../transport/types.js'
import { machineBusySeconds, selfCpuSeconds } from './cpu.js'
import { decodeHistogram, newHistogram, percentileCurve, summarize } from './histogram.js'
import type { FromWorker, LoadMode, WorkerDone, WorkerJob } from './job.js'

export interface LoadPlan {
  label: string
  scenarioName: string
  scenarioUrl: string
  scenarioData: unknown
  transport: TransportSpec
  echo: boolean
  workers: number
  connections: number
  mode: LoadMode
  ratePerS: number
  workspaces: number
  wsidBase: number
  payloadBytes: number
  warmupS: number
  durationS: number
  intervalMs: number
  drainMs: number
  /** CPU seconds used so far by the server under test, sampled at the window's ends. */
  serverCpuSeconds?: (() => number | undefined) | undefined
  serverPid?: number | undefined
  serverThreadCpuSeconds?: (() => Map<number, number> | undefined) | undefined
}

export interface Progress {
  label: string
  elapsedS: number
  totalS: number
  okPerS: number
  ok: number
  errors: number
}

/** Why 20 ms: every worker has connected and is waiting, so this only aligns their clocks' first tick. */
const START_DELAY_MS = 20
const PROGRESS_EVERY_MS = 250
const nowMs = (): number => performance.timeOrigin + performance.now()

export async function runLoad(plan: LoadPlan, onProgress: (p: Progress) => void = () => {}): Promise<RunResult> {
  const workersCount = Math.max(1, Math.min(plan.workers, plan.connections))
  const jobs: WorkerJob[] = []
  for (let w = 0; w < workersCount; w++) {
    const connections = Math.floor(plan.connections / workersCount) + (w < plan.connections % workersCount ? 1 : 0)
    jobs.push({
      transport: plan.transport, echo: plan.echo, scenarioUrl: plan.scenarioUrl, scenarioData: plan.scenarioData,
      workerIndex: w, workersCount, connections, mode: plan.mode,
      ratePerS: (plan.ratePerS * connections) / plan.connections,
      workspaces: plan.workspaces, wsidBase: plan.wsidBase, payloadBytes: plan.payloadBytes,
      warmupMs: plan.warmupS * 1000, durationMs: plan.durationS * 1000, intervalMs: plan.intervalMs, drainMs: plan.drainMs,
    })
  }

  const workers = jobs.map((job) => new Worker(new URL('./worker.js', import.meta.url), { workerData: job }))
  const intervals = new Map<number, { ok: number; errors: number; histogram: Histogram }>()
  const dones: WorkerDone[] = []
  let okSoFar = 0
  let errorsSoFar = 0
  let failure: Error | undefined

  let markReady!: () => void
  let markDone!: () => void
  let fail!: (e: Error) => void
  const ready = new Promise<void>((resolve) => { markReady = resolve })
  const done = new Promise<void>((resolve) => { markDone = resolve })
  const failed = new Promise<never>((_, reject) => { fail = reject })
  failed.catch(() => {})
  let readyCount = 0
  for (const worker of workers) {
    worker.on('message', (m: FromWorker) => {
      switch (m.type) {
        case 'ready':
          if (++readyCount === workers.length) markReady()
          break
        case 'failed':
          failure ??= new Error(`load worker failed: ${m.message}`)
          fail(failure)
          break
        case 'interval': {
          let slot = intervals.get(m.index)
          if (slot === undefined) intervals.set(m.index, (slot = { ok: 0, errors: 0, histogram: newHistogram() }))
          slot.ok += m.ok
          slot.errors += m.errors
          slot.histogram.add(decodeHistogram(m.histogram))
          okSoFar += m.ok
          errorsSoFar += m.errors
          break
        }
        case 'done':
          dones.push(m)
          if (dones.length === workers.length) markDone()
          break
      }
    })
    worker.on('error', (err) => { failure ??= err; fail(err) })
    worker.on('exit', (code) => { if (dones.length < workers.length) fail(failure ?? new Error(`load worker exited with ${code} before finishing`)) })
  }

  let progressTimer: NodeJS.Timeout | undefined
  const cpuTimers: NodeJS.Timeout[] = []
  let serverCores: number | null = null
  let otherCores: number | null = null
  let serverThreads: RunResult['serverThreads'] = []
  // The window's end sample, taken by its timer or, if the workers finish first, right after them.
  let takeEndSample = (): void => {}
  try {
    await Promise.race([ready, failed])
    const startAtMs = nowMs() + START_DELAY_MS
    for (const w of workers) w.postMessage({ type: 'start', startAtMs })
    const totalS = plan.warmupS + plan.durationS
    // CPU use during the window: the server's, and what the machine used beyond the server and
    // this process (other work on the machine, which disturbs the figures).
    const serverCpu = plan.serverCpuSeconds ?? (() => undefined)
    const threadCpu = plan.serverThreadCpuSeconds ?? (() => undefined)
    const sample = (): CpuSample => ({ server: serverCpu(), machine: machineBusySeconds(), self: selfCpuSeconds(), threads: threadCpu() })
    let atStart: CpuSample | undefined
    takeEndSample = () => {
      takeEndSample = () => {}
      if (atStart !== undefined) ({ serverCores, otherCores, serverThreads } = cpuDuring(atStart, sample(), plan.durationS, plan.serverPid))
    }
    cpuTimers.push(setTimeout(() => { atStart = sample() }, START_DELAY_MS + plan.warmupS * 1000))
    cpuTimers.push(setTimeout(() => takeEndSample(), START_DELAY_MS + totalS * 1000))
    let lastOk = 0
    let lastT = startAtMs
    progressTimer = setInterval(() => {
      const t = nowMs()
      const okPerS = t > lastT ? ((okSoFar - lastOk) * 1000) / (t - lastT) : 0
      if (okSoFar !== lastOk || t - lastT > 1000) { lastOk = okSoFar; lastT = t }
      onProgress({ label: plan.label, elapsedS: Math.max(0, (t - startAtMs) / 1000), totalS, okPerS, ok: okSoFar, errors: errorsSoFar })
    }, PROGRESS_EVERY_MS)
    await Promise.race([done, failed])
    takeEndSample()
  } finally {
    clearInterval(progressTimer)
    for (const t of cpuTimers) clearTimeout(t)
    await Promise.all(workers.map((w) => w.terminate()))
  }
  return { ...assemble(plan, workersCount, dones, intervals), serverCores, otherCores, serverThreads }
}

function assemble(plan: LoadPlan, workersCount: number, dones: WorkerDone[], intervals: Map<number, { ok: number; errors: number; histogram: Histogram }>): RunResult {
  const corrected = newHistogram()
  const uncorrected = newHistogram()
  const byKind: Record<string, number> = {}
  const samples: string[] = []
  let ok = 0
  let sent = 0
  let elu = 0
  let reconnects = 0
  for (const d of dones) {
    corrected.add(decodeHistogram(d.corrected))
    uncorrected.add(decodeHistogram(d.uncorrected))
    ok += d.okInWindow
    sent += d.sentInWindow
    elu = Math.max(elu, d.elu)
    reconnects += d.reconnects
    for (const [k, n] of Object.entries(d.errorsByKind)) byKind[k] = (byKind[k] ?? 0) + n
    for (const s of d.errorSamples) if (samples.length < 10) samples.push(s)
  }
  const errorsTotal = Object.values(byKind).reduce((a, b) => a + b, 0)
  const timeline: TimelinePoint[] = []
  const last = Math.max(-1, ...intervals.keys())
  const intervalS = plan.intervalMs / 1000
  for (let i = 0; i <= last; i++) {
    const slot = intervals.get(i)
    const endS = (i + 1) * intervalS
    timeline.push({
      tS: Math.round(endS * 1000) / 1000,
      measured: endS > plan.warmupS && endS - intervalS < plan.warmupS + plan.durationS,
      okPerS: slot === undefined ? 0 : Math.round(slot.ok / intervalS),
      errors: slot?.errors ?? 0,
      p99Us: slot === undefined || slot.histogram.totalCount === 0 ? 0 : slot.histogram.getValueAtPercentile(99),
    })
  }
  return {
    label: plan.label,
    scenario: plan.scenarioName,
    transport: plan.transport.kind,
    api: plan.transport.api,
    mode: plan.mode,
    target: plan.transport.target,
    settings: {
      workers: workersCount, connections: plan.connections, pipeline: plan.transport.pipeline,
      ratePerS: plan.mode === 'open' ? plan.ratePerS : null,
      warmupS: plan.warmupS, durationS: plan.durationS, workspaces: plan.workspaces, payloadBytes: plan.payloadBytes,
    },
    throughputPerS: Math.round(ok / plan.durationS),
    ok, sent,
    errors: { total: errorsTotal, byKind, samples },
    latencyUs: summarize(corrected),
    uncorrectedLatencyUs: summarize(uncorrected),
    percentileCurve: percentileCurve(corrected),
    uncorrectedCurve: percentileCurve(uncorrected),
    timeline,
    clientElu: Math.round(elu * 1000) / 1000,
    serverCores: null,
    otherCores: null,
    serverThreads: [],
    reconnects,
    passed: errorsTotal === 0 && ok > 0,
  }
}

interface CpuSample {
  server: number | undefined
  machine: number | undefined
  self: number
  threads: Map<number, number> | undefined
}

/** Threads under a hundredth of a core are left out of serverThreads. */
const THREAD_CORES_MIN = 0.01
const THREADS_LISTED_MAX = 16

/** CPU use during the window: the server's (whole and by thread), and what the machine used
 *  beyond the server and this process (other work on the machine, which disturbs the figures). */
function cpuDuring(a: CpuSample, b: CpuSample, durationS: number, serverPid: number | undefined): Pick<RunResult, 'serverCores' | 'otherCores' | 'serverThreads'> {
  const cores = (x: number | undefined, y: number | undefined): number | null => (x === undefined || y === undefined ? null : Math.round(((y - x) / durationS) * 100) / 100)
  const serverCores = cores(a.server, b.server)
  const machineCores = cores(a.machine, b.machine)
  const selfCores = cores(a.self, b.self)!
  const otherCores = machineCores !== null && serverCores !== null ? Math.max(0, Math.round((machineCores - selfCores - serverCores) * 100) / 100) : null
  const serverThreads: RunResult['serverThreads'] = []
  if (a.threads !== undefined && b.threads !== undefined) {
    for (const [tid, end] of b.threads) {
      const c = cores(a.threads.get(tid) ?? 0, end)!
      if (c >= THREAD_CORES_MIN) serverThreads.push({ tid, main: tid === serverPid, cores: c })
    }
    serverThreads.sort((x, y) => y.cores - x.cores).splice(THREADS_LISTED_MAX)
  }
  return { serverCores, otherCores, serverThreads }
}
