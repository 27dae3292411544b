// Text tables for the terminal and for docs/benchmarks.md (Markdown).

import { dirname, join } from 'node:path'
import type { BenchReport, RunResult } from '../result.js'
import { fmtInt } from './progress.js'
import { resourceSections } from './resources.js'

export const fmtMs = (us: number): string => (us === 0 ? '–' : us < 10_000 ? (us / 1000).toFixed(2) : us < 1_000_000 ? (us / 1000).toFixed(1) : fmtInt(us / 1000))
export const fmtTimes = (r: number | null | undefined): string => (r === null || r === undefined ? '–' : `${r.toFixed(r >= 10 ? 0 : 1)}×`)
export const fmtRatio = (r: number | null | undefined): string => (r === null || r === undefined ? '–' : r >= 10 ? `${r.toFixed(1)}×` : r >= 0.1 ? `${(r * 100).toFixed(0)} %` : `${(r * 100).toFixed(1)} %`)

export function runRow(r: RunResult): string[] {
  const lat = r.latencyUs
  const load = r.mode === 'open' ? `open ${fmtInt(r.settings.ratePerS ?? 0)}/s` : 'closed'
  return [
    r.label,
    `${r.transport}${r.transport === 'http' ? ' ' + r.api : ''}, ${r.settings.connections}×${r.settings.pipeline}, ${load}`,
    fmtInt(r.throughputPerS),
    r.ceiling === undefined ? '–' : fmtRatio(r.ceiling.throughputRatio),
    r.mode === 'open' ? fmtMs(lat.p50) : `(${fmtMs(lat.p50)})`,
    r.mode === 'open' ? fmtMs(lat.p90) : `(${fmtMs(lat.p90)})`,
    r.mode === 'open' ? fmtMs(lat.p99) : `(${fmtMs(lat.p99)})`,
    r.mode === 'open' ? fmtMs(lat.p999) : `(${fmtMs(lat.p999)})`,
    r.mode === 'open' ? fmtMs(lat.max) : `(${fmtMs(lat.max)})`,
    fmtTimes(r.ceiling?.p99Ratio),
    r.errors.total === 0 ? '0' : `${fmtInt(r.errors.total)} ✗`,
    r.clientElu.toFixed(2),
    r.serverCores === null ? '–' : r.serverCores.toFixed(2),
    fmtCpuPerOp(r),
    r.otherCores === null ? '–' : r.otherCores.toFixed(2),
  ]
}

/**
 * Server CPU per served operation, µs (server cores ÷ ok/s): what one operation costs the
 * server at this load. It falls as the load rises, because batches grow and their fixed cost
 * (thread hand-offs, one write and sync) is shared by more commands.
 */
export function serverCpuUsPerOp(r: RunResult): number | null {
  return r.serverCores === null || r.throughputPerS <= 0 ? null : (r.serverCores / r.throughputPerS) * 1e6
}

function fmtCpuPerOp(r: RunResult): string {
  const us = serverCpuUsPerOp(r)
  return us === null ? '–' : us >= 100 ? fmtInt(us) : us.toFixed(1)
}

export const RUN_HEADER = ['run', 'load', 'ok/s', '÷ ceiling', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'p99 ÷ ceiling', 'errors', 'client ELU', 'server cores', 'server µs/op', 'other cores']

export function textTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  return [line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

export function markdownTable(header: string[], rows: string[][]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|')
  return [`| ${header.map(esc).join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n')
}

/** The summary printed at the end of every invocation; `outDir` is where its files went. */
export function terminalSummary(rep: BenchReport, outDir = ''): string {
  const out: string[] = []
  out.push(`commit ${rep.commit} · ${rep.machine.nproc} × ${rep.machine.cpuModel} · node ${rep.machine.node} · load average ${rep.machine.loadAverage.join(' / ')} · ${rep.durability}`)
  out.push('latency in ms; in parentheses: closed-loop latency, not a latency figure (throughput only)')
  out.push(textTable(RUN_HEADER, rep.runs.map(runRow)))
  for (const s of rep.sweeps) {
    out.push('')
    out.push(`${s.title}${s.knee === undefined ? '' : ` — knee at ${fmtInt(s.knee.ratePerS)}/s (${s.knee.reason})`}`)
    out.push(textTable([s.xLabel, ...RUN_HEADER.slice(2)], s.points.map((p) => [fmtInt(p.x), ...runRow(p.run).slice(2)])))
  }
  if (rep.targets.length > 0) {
    out.push('')
    out.push(textTable(['target (PERFORMANCE.md)', 'wanted', 'measured', 'met'], rep.targets.map((t) => [t.figure, t.target, t.measured, t.met === null ? (t.noVerdict ?? 'n/a') : t.met ? 'yes' : 'NO'])))
  }
  for (const sec of resourceSections(rep)) {
    out.push('')
    out.push(sec.title)
    for (const [what, figure] of sec.rows) out.push(`  ${what}: ${figure}`)
  }
  for (const r of [...rep.runs, ...rep.sweeps.flatMap((s) => s.points.map((p) => p.run))]) {
    if (r.errors.total === 0) continue
    out.push('')
    out.push(`errors in "${r.label}": ${Object.entries(r.errors.byKind).map(([k, n]) => `${k}: ${fmtInt(n)}`).join(', ')}`)
    for (const s of r.errors.samples.slice(0, 3)) out.push(`  e.g. ${s}`)
  }
  for (const p of rep.profiles) {
    out.push('')
    out.push(`profile of "${p.run.label}" (${fmtInt(p.run.throughputPerS)}/s); server threads, cores: ${p.run.serverThreads.map((t) => `${t.main ? 'main ' : ''}${t.cores.toFixed(2)}`).join(', ') || 'n/a'}`)
    for (const t of p.threads.slice(0, 4)) {
      out.push(`  ${t.thread}, ${t.waitingPct.toFixed(0)} % waiting: ${t.top.slice(0, 6).map((f) => `${f.fn} ${f.selfPct.toFixed(1)} %`).join(' · ')}`)
    }
    const kept = p.threads.filter((t) => t.flameSvg !== undefined)
    if (kept.length > 0) out.push(`  flame graphs (.svg) and V8 profiles (.cpuprofile) of its ${kept.length} threads: ${join(outDir, dirname(kept[0]!.flameSvg!))}/`)
  }
  for (const n of rep.notes) out.push(`note: ${n}`)
  return out.join('\n')
}
