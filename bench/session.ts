// One bench invocation's moving parts: the server under test (started here or given by
// --target), the ceiling echo server, scenario setups (done once per server, scenario and
// workspace count), and `runStep`, which runs one measured load and returns its RunResult.

import { fmtInt, type ProgressLine } from './report/progress.js'
import { runLine } from './summary.js'
import type { RunResult } from './result.js'
import { loadScenario, resolveScenario } from './scenario.js'
import { runLoad, type LoadPlan } from './load/driver.js'
import { runSetup } from './load/setup.js'
import type { LoadMode } from './load/job.js'
import { startEchoServer } from './servers/echo.js'
import { startEngine, type EngineOptions } from './servers/engine.js'
import type { ChildServer } from './servers/child.js'

export interface Step {
  label: string
  /** Shipped scenario name or module path. */
  scenario: string
  transport: 'http' | 'ws'
  api: 'v1' | 'v2'
  mode: LoadMode
  ratePerS: number
  connections: number
  pipeline: number
  workers: number
  warmupS: number
  durationS: number
  workspaces: number
  wsidBase: number
  payloadBytes: number
  intervalMs: number
  drainS: number
  token: string | undefined
}

/** A server under test and what was prepared on it. */
export class Target {
  private readonly setups = new Map<string, unknown>()

  private constructor(readonly url: string, readonly server: (ChildServer & { commandLine?: string; metricsUrl?: string | undefined }) | undefined) {}

  static external(url: string): Target {
    return new Target(url, undefined)
  }

  static async start(o: EngineOptions): Promise<Target> {
    const server = await startEngine(o)
    return new Target(server.url, server)
  }

  static async echo(): Promise<Target> {
    const server = await startEchoServer()
    return new Target(server.url, server)
  }

  async setupFor(step: Step, scenarioUrl: string, progress: ProgressLine): Promise<unknown> {
    const key = `${scenarioUrl}|${step.workspaces}|${step.wsidBase}`
    if (this.setups.has(key)) return this.setups.get(key)
    const scenario = await loadScenario(scenarioUrl)
    const data = await runSetup(scenario, {
      target: this.url, token: step.token, app: scenario.app ?? 'demo/bank', workspaces: step.workspaces, wsidBase: step.wsidBase, payloadBytes: step.payloadBytes,
      progress: (done, total) => progress.setup(`${scenario.name} (${fmtInt(step.workspaces)} workspaces)`, done, total),
    })
    progress.clear()
    this.setups.set(key, data)
    return data
  }

  async stop(): Promise<void> {
    await this.server?.stop()
  }
}

export async function runStep(step: Step, target: Target, progress: ProgressLine): Promise<RunResult> {
  const scenarioUrl = resolveScenario(step.scenario)
  const scenario = await loadScenario(scenarioUrl)
  const echo = scenario.name === 'echo'
  const data = echo ? undefined : await target.setupFor(step, scenarioUrl, progress)
  const plan: LoadPlan = {
    label: step.label,
    scenarioName: scenario.name,
    scenarioUrl,
    scenarioData: data,
    transport: { kind: step.transport, target: target.url, app: scenario.app ?? 'demo/bank', api: step.api, pipeline: step.pipeline, token: step.token },
    echo,
    workers: step.workers,
    connections: step.connections,
    mode: step.mode,
    ratePerS: step.ratePerS,
    workspaces: step.workspaces,
    wsidBase: step.wsidBase,
    payloadBytes: step.payloadBytes,
    warmupS: step.warmupS,
    durationS: step.durationS,
    intervalMs: step.intervalMs,
    drainMs: step.drainS * 1000,
    serverCpuSeconds: target.server === undefined ? undefined : () => target.server!.cpuSeconds(),
    serverThreadCpuSeconds: target.server === undefined ? undefined : () => target.server!.threadCpuSeconds(),
    serverPid: target.server?.pid,
  }
  const result = await runLoad(plan, (p) => progress.load(p))
  progress.clear()
  return result
}

/**
 * One measured run of `step` on `target`, divided by its ceiling when there is one, its line
 * printed; the target is stopped afterwards whatever happens.
 */
export async function measureOn(step: Step, target: Target, ceiling: RunResult | undefined, progress: ProgressLine): Promise<RunResult> {
  try {
    let run = await runStep(step, target, progress)
    if (ceiling !== undefined) run = attachCeiling(run, ceiling)
    progress.line(runLine(run))
    return run
  } finally {
    await target.stop()
  }
}

/** The same load against the ceiling server: the echo scenario with the step's own settings. */
export function ceilingStep(step: Step): Step {
  return { ...step, label: `ceiling ${step.transport === 'http' ? 'uWS HTTP POST echo' : 'uWS WebSocket echo'} (${describeLoad(step)})`, scenario: 'echo' }
}

export function describeLoad(s: Pick<Step, 'connections' | 'pipeline' | 'mode' | 'ratePerS' | 'transport'>): string {
  const load = s.mode === 'open' ? `open loop ${fmtInt(s.ratePerS)}/s` : 'closed loop'
  return `${s.transport}, ${s.connections} conn × ${s.pipeline} in flight, ${load}`
}

/** Divides `run` by its ceiling: throughput ratio for closed-loop runs, p99 ratio for open-loop ones. */
export function attachCeiling(run: RunResult, ceiling: RunResult): RunResult {
  // In open loop both deliver the intended rate: only the latency ratio says something.
  const throughputRatio = run.mode === 'closed' && ceiling.throughputPerS > 0 ? round3(run.throughputPerS / ceiling.throughputPerS) : null
  const p99Ratio = run.mode === 'open' && ceiling.latencyUs.p99 > 0 ? round3(run.latencyUs.p99 / ceiling.latencyUs.p99) : null
  return { ...run, ceiling: { label: ceiling.label, throughputRatio, p99Ratio } }
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000
