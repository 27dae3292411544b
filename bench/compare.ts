// `vvm bench <scenario> --rounds N [--compare-server-arg <flag> …]`: the same step N times, each
// on a fresh server. With --compare-server-arg the rounds alternate between the server as
// configured (A) and with the extra flags (B), A first, and the means are set side by side.
//
// Why: on a shared 2-core VM one run moves ±10–20 % from the next, more than most engine
// changes are worth. A change of a few percent shows only as a difference of means over
// alternating fresh servers, and best in server CPU per operation at a fixed open-loop rate
// (docs/benchmarks.md, "Reading the output").

import type { BenchOptions } from './options.js'
import type { ProgressLine } from './report/progress.js'
import { fmtInt } from './report/progress.js'
import { fmtMs, serverCpuUsPerOp } from './report/table.js'
import type { RunResult } from './result.js'
import { measureOn, Target, type Step } from './session.js'

export interface Side {
  name: 'A' | 'B'
  /** The `vvm start` flags added to the configured ones (none for A). */
  extraArgs: readonly string[]
  /** The server's command line, as its first round started it. */
  commandLine: string
  runs: RunResult[]
}

/** Runs the rounds; every run is labelled with its side and round, and listed in the order it ran. */
export async function runRounds(
  o: BenchOptions, step: Step, app: string, ceiling: RunResult | undefined, progress: ProgressLine,
): Promise<{ sides: Side[]; runs: RunResult[] }> {
  const sides: Side[] = [{ name: 'A', extraArgs: [], commandLine: '', runs: [] }]
  const runs: RunResult[] = []
  if (o.compareServerArgs.length > 0) sides.push({ name: 'B', extraArgs: o.compareServerArgs, commandLine: '', runs: [] })
  for (let round = 1; round <= o.rounds; round++) {
    for (const side of sides) {
      const target = await Target.start({ partitions: o.partitions, storage: o.storage, app, extraArgs: [...o.serverArgs, ...side.extraArgs] })
      if (round === 1) side.commandLine = target.server?.commandLine ?? ''
      const label = sides.length === 1 ? `${step.label} · round ${round}` : `${step.label} · ${side.name} round ${round}`
      const run = await measureOn({ ...step, label }, target, ceiling, progress)
      side.runs.push(run)
      runs.push(run)
    }
  }
  return { sides, runs }
}

interface Stat { mean: number; min: number; max: number }

function stat(values: readonly number[]): Stat | undefined {
  if (values.length === 0) return undefined
  return { mean: values.reduce((a, b) => a + b, 0) / values.length, min: Math.min(...values), max: Math.max(...values) }
}

/** The figures of each side (mean, and the range over its rounds) and, with two sides, B against A. */
export function compareLines(sides: readonly Side[]): string[] {
  const figures = sides.map((s) => ({
    side: s,
    okPerS: stat(s.runs.map((r) => r.throughputPerS)),
    usPerOp: stat(s.runs.map(serverCpuUsPerOp).filter((x): x is number => x !== null)),
    cores: stat(s.runs.map((r) => r.serverCores).filter((x): x is number => x !== null)),
    p50: stat(s.runs.map((r) => r.latencyUs.p50)),
    p99: stat(s.runs.map((r) => r.latencyUs.p99)),
  }))
  const range = (x: Stat | undefined, f: (n: number) => string): string => (x === undefined ? '–' : `${f(x.mean)} (${f(x.min)}–${f(x.max)})`)
  const latencyKind = sides[0]?.runs[0]?.mode === 'open' ? '' : ' (closed loop: not a latency figure)'
  const lines = figures.map((f) => {
    const who = f.side.extraArgs.length === 0 ? 'as configured' : f.side.extraArgs.join(' ')
    return `${f.side.name} (${who}), ${f.side.runs.length} rounds, mean (range): ok/s ${range(f.okPerS, fmtInt)} · server µs/op ${range(f.usPerOp, (n) => n.toFixed(1))} · server cores ${range(f.cores, (n) => n.toFixed(2))} · p50 ${range(f.p50, fmtMs)} ms · p99 ${range(f.p99, fmtMs)} ms${latencyKind}`
  })
  if (figures.length === 2) {
    const [a, b] = figures as [typeof figures[0], typeof figures[0]]
    const change = (x: Stat | undefined, y: Stat | undefined): string => {
      if (x === undefined || y === undefined || x.mean === 0) return '–'
      const pct = ((y.mean - x.mean) / x.mean) * 100
      return `${pct >= 0 ? '+' : '−'}${Math.abs(pct).toFixed(1)} %`
    }
    // Ranges that overlap say the difference may be the machine's, not the change's.
    const overlap = (x: Stat | undefined, y: Stat | undefined): string => (x !== undefined && y !== undefined && x.min <= y.max && y.min <= x.max ? ' (ranges overlap)' : '')
    lines.push(`B against A, means: ok/s ${change(a.okPerS, b.okPerS)}${overlap(a.okPerS, b.okPerS)} · server µs/op ${change(a.usPerOp, b.usPerOp)}${overlap(a.usPerOp, b.usPerOp)} · p99 ${change(a.p99, b.p99)}${overlap(a.p99, b.p99)}`)
  }
  return lines
}
