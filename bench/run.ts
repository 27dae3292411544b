// `vvm bench <scenario>`: one scenario, with its ceiling measured just before it under the
// same load settings, then the files and the summary. Exit code 0 only when every reply of
// every run was right.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { durabilityOf, type BenchOptions } from './options.js'
import { summarizeProfiles } from './profile.js'
import { latencyChart } from './report/charts.js'
import { ProgressLine } from './report/progress.js'
import { terminalSummary } from './report/table.js'
import { commit, defaultOutDir, machine, writeReport } from './report/write.js'
import type { BenchReport, ProfiledRun, RunResult } from './result.js'
import { loadScenario, resolveScenario } from './scenario.js'
import { ceilingStep, describeLoad, measureOn, runStep, Target, type Step } from './session.js'
import { runLine } from './summary.js'
import { runNotes } from './notes.js'
import { compareLines, runRounds } from './compare.js'

export function stepFromOptions(o: BenchOptions, label: string): Step {
  return {
    label, scenario: o.scenario, transport: o.transport, api: o.api,
    mode: o.ratePerS === undefined ? 'closed' : 'open', ratePerS: o.ratePerS ?? 0,
    connections: o.connections, pipeline: o.pipeline, workers: o.workers,
    warmupS: o.warmupS, durationS: o.durationS, workspaces: o.workspaces, wsidBase: o.wsidBase,
    payloadBytes: o.payloadBytes, intervalMs: o.intervalMs, drainS: o.drainS, token: o.token,
  }
}

export async function runCommand(o: BenchOptions, commandLine: string): Promise<number> {
  const progress = new ProgressLine()
  const scenario = await loadScenario(resolveScenario(o.scenario))
  const isEcho = scenario.name === 'echo'
  // Known before the runs: a profiled server's flame graphs are written there.
  const out = o.out ?? defaultOutDir(scenario.name)
  const step = stepFromOptions(o, `${scenario.name} (${describeLoad({ ...o, mode: o.ratePerS === undefined ? 'closed' : 'open', ratePerS: o.ratePerS ?? 0 })})`)
  const runs: RunResult[] = []
  const notes: string[] = []
  const profileDir = o.cpuProf ? await mkdtemp(join(tmpdir(), 'vvm-bench-prof-')) : undefined
  const profiles: ProfiledRun[] = []
  let ceiling: RunResult | undefined
  let durability: string

  if (o.ceiling && !isEcho) {
    const echo = await Target.echo()
    try {
      ceiling = await runStep(ceilingStep(step), echo, progress)
    } finally {
      await echo.stop()
    }
    runs.push(ceiling)
    progress.line(runLine(ceiling))
  }
  if (o.rounds > 1 || o.compareServerArgs.length > 0) {
    const rounds = await runRounds(o, step, scenario.app ?? 'demo/bank', ceiling, progress)
    runs.push(...rounds.runs)
    durability = durabilityOf(o.storage)
    notes.push(...rounds.sides.map((s) => `server ${s.name}: ${s.commandLine}`), ...compareLines(rounds.sides))
  } else {
    let target: Target
    if (o.target !== undefined) {
      target = Target.external(o.target)
      durability = 'as configured by the target server (not known to the harness)'
    } else if (isEcho) {
      target = await Target.echo()
      durability = 'none: raw echo server'
    } else {
      target = await Target.start({ partitions: o.partitions, storage: o.storage, app: scenario.app ?? 'demo/bank', extraArgs: o.serverArgs, cpuProfDir: profileDir })
      durability = durabilityOf(o.storage)
      notes.push(`server: ${target.server?.commandLine ?? ''}`)
    }
    runs.push(await measureOn(step, target, ceiling, progress))
  }
  if (profileDir !== undefined) {
    profiles.push({ run: runs.at(-1)!, threads: await summarizeProfiles(profileDir, { outDir: out, prefix: scenario.name }) })
    await rm(profileDir, { recursive: true, force: true })
  }
  notes.push(...runNotes(runs))

  const report: BenchReport = {
    kind: 'run', createdAt: new Date().toISOString(), commit: commit(), machine: machine(), commandLine, durability,
    runs, sweeps: [], targets: [], profiles, notes, passed: runs.every((r) => r.passed),
  }
  const files = await writeReport(report, latencyChart(runs, `${scenario.name}: latency by percentile`), out)
  process.stdout.write(`\n${terminalSummary(report, out)}\n\nresult: ${files.json}\nreport: ${files.html} (and ${files.md})\nchart:  ${files.png}\n`)
  if (!report.passed) process.stdout.write('\nFAILED: some replies were wrong or missing (errors above); these figures are not valid.\n')
  return report.passed ? 0 : 1
}
