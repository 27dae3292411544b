// The report as Markdown (report.md), for pasting into docs/benchmarks.md or a pull request.

import { WAITING_FRAMES } from '../cpu-profile.js'
import type { BenchReport } from '../result.js'
import { fmtInt } from './progress.js'
import { resourceSections } from './resources.js'
import { RUN_HEADER, markdownTable, runRow } from './table.js'

export function renderMarkdown(rep: BenchReport): string {
  const m = rep.machine
  const out: string[] = []
  out.push(`- commit \`${rep.commit}\`, ${rep.createdAt}`)
  out.push(`- machine: ${m.nproc} × ${m.cpuModel}, ${m.memoryGiB} GiB, Node ${m.node}, ${m.os}`)
  out.push(`- command: \`${rep.commandLine}\``)
  out.push(`- durability: ${rep.durability}`)
  out.push(`- result: ${rep.passed ? 'passed (every reply right)' : '**FAILED** (wrong or missing replies)'}`)
  out.push('')
  out.push('Latency in ms; in parentheses, closed-loop latency (not a latency figure). "÷ ceiling": the figure divided by the raw uWS echo run with the same client and settings.')
  out.push('')
  out.push(markdownTable(RUN_HEADER, rep.runs.map(runRow)))
  if (rep.targets.length > 0) {
    out.push('')
    out.push(markdownTable(['target (PERFORMANCE.md)', 'wanted', 'measured', 'met'], rep.targets.map((t) => [t.figure, t.target, t.measured, t.met === null ? (t.noVerdict ?? 'not measured') : t.met ? 'yes' : '**no**'])))
  }
  for (const sec of resourceSections(rep)) {
    out.push('')
    out.push(`**${sec.title}**`)
    out.push('')
    out.push(markdownTable(['', 'figure'], sec.rows))
  }
  for (const s of rep.sweeps) {
    out.push('')
    out.push(`**${s.title}**${s.knee === undefined ? '' : ` — knee at ${fmtInt(s.knee.ratePerS)}/s (${s.knee.reason})`}`)
    out.push('')
    out.push(markdownTable([s.xLabel, ...RUN_HEADER.slice(2)], s.points.map((p) => [fmtInt(p.x), ...runRow(p.run).slice(2)])))
  }
  for (const p of rep.profiles) {
    out.push('')
    out.push(`**Profile: ${p.run.label}** (${fmtInt(p.run.throughputPerS)}/s; server ${p.run.serverCores ?? '–'} cores; busiest threads: ${p.run.serverThreads.slice(0, 6).map((t) => `${t.main ? 'main ' : ''}${t.cores.toFixed(2)}`).join(', ')})`)
    out.push('')
    for (const t of p.threads) {
      out.push(`- ${t.thread}, ${t.waitingPct.toFixed(0)} % waiting: ${t.top.filter((f) => !WAITING_FRAMES.has(f.fn)).slice(0, 6).map((f) => `\`${f.fn}\` ${f.selfPct.toFixed(1)} %${f.where === '' ? '' : ` (${f.where})`}`).join(', ')}`)
      if (t.flameSvg !== undefined && t.cpuProfile !== undefined) out.push(`  — [flame graph](${t.flameSvg}) · [profile](${t.cpuProfile})`)
    }
  }
  if (rep.notes.length > 0) {
    out.push('')
    for (const n of rep.notes) out.push(`- note: ${n}`)
  }
  return out.join('\n') + '\n'
}
