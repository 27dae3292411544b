// The HTML report: one self-contained file (inline CSS and SVG, no script, no network) that
// opens offline, with the same tables as the terminal and every chart.

import type { BenchReport, RunResult } from '../result.js'
import { layoutChart, PALETTE, type ChartSpec } from './chart.js'
import { sweepCharts, timelineChart } from './charts.js'
import { fmtInt } from './progress.js'
import { memorySweepPoints, resourceSections } from './resources.js'
import { toSvg } from './svg.js'
import { RUN_HEADER, runRow } from './table.js'

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1f2328;margin:24px auto;max-width:1180px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d8dee4;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}th,td{padding:4px 8px;border-bottom:1px solid #eaeef2;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{background:#f6f8fa;font-weight:600}
.meta{color:#57606a}.ok{color:#1a7f37;font-weight:600}.bad{color:#d1242f;font-weight:600}.na{color:#57606a}
code{background:#f6f8fa;padding:1px 4px;border-radius:4px;font-size:12px}svg{max-width:100%;height:auto;display:block;margin:8px 0}
.errors li{font-family:ui-monospace,monospace;font-size:12px}`

function table(header: string[], rows: string[][]): string {
  return `<table><thead><tr>${header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('')}</tbody></table>`
}

const chart = (spec: ChartSpec): string => toSvg(layoutChart(spec), spec.title)

export function renderHtml(rep: BenchReport, mainChart: ChartSpec): string {
  const s: string[] = []
  const verdict = rep.passed ? '<span class="ok">passed: every reply was right</span>' : '<span class="bad">FAILED: wrong replies or errors (see below)</span>'
  s.push(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>vvm bench — ${esc(rep.kind)} ${esc(rep.createdAt)}</title><style>${CSS}</style></head><body>`)
  s.push(`<h1>vvm bench: ${rep.kind === 'standard' ? 'standard report' : esc(rep.runs.at(-1)?.scenario ?? 'run')}</h1>`)
  s.push(`<p class="meta">${esc(rep.createdAt)} · commit <code>${esc(rep.commit)}</code> · ${rep.machine.nproc} × ${esc(rep.machine.cpuModel)}, ${rep.machine.memoryGiB} GiB · Node ${esc(rep.machine.node)} · ${esc(rep.machine.os)} · load average ${rep.machine.loadAverage.join(' / ')}</p>`)
  s.push(`<p class="meta">command: <code>${esc(rep.commandLine)}</code><br>durability: ${esc(rep.durability)}</p><p>${verdict}</p>`)
  s.push('<h2>Runs</h2><p class="meta">Latency in ms. Open-loop latency is measured from the intended send time (coordinated omission corrected); closed-loop latency, in parentheses, is not a latency figure. Each figure is divided by its ceiling: the raw uWS echo server driven by the same client with the same settings in the same invocation.</p>')
  s.push(table(RUN_HEADER, rep.runs.map(runRow)))
  if (rep.targets.length > 0) {
    s.push('<h2>Targets (PERFORMANCE.md)</h2>')
    s.push(`<table><thead><tr><th>figure</th><th>target</th><th>measured</th><th>met</th></tr></thead><tbody>${rep.targets.map((t) => `<tr><td>${esc(t.figure)}</td><td>${esc(t.target)}</td><td>${esc(t.measured)}</td><td class="${t.met === null ? 'na' : t.met ? 'ok' : 'bad'}">${t.met === null ? esc(t.noVerdict ?? 'not measured') : t.met ? 'yes' : 'no'}</td></tr>`).join('')}</tbody></table>`)
  }
  for (const sec of resourceSections(rep)) {
    s.push(`<h2>${esc(sec.title)}</h2>`)
    s.push(table(['', 'figure'], sec.rows))
  }
  const memory = memorySweepPoints(rep)
  if (memory.length > 1) {
    s.push(chart({
      title: 'Server RSS with idle WebSocket connections', xLabel: 'idle connections', yLabel: 'RSS, MiB', xScale: 'log',
      series: [{ name: 'RSS', color: PALETTE[0]!, dots: true, points: memory }],
      rules: [{ y: 300, label: 'target: ≤ 300 MiB with 10k', color: '#9a6700' }],
    }))
  }
  s.push('<h2>Latency by percentile</h2>', chart(mainChart))
  // Over time: the engine's runs (a ceiling's much larger figures would flatten them), or all of a plain run.
  const engine = rep.runs.filter((r) => r.scenario !== 'echo')
  const timed = (rep.kind === 'standard' && engine.length > 0 ? engine : rep.runs).filter((r) => r.timeline.length > 0)
  if (timed.length > 0) {
    s.push('<h2>Over time</h2>')
    s.push(chart(timelineChart(timed, 'throughput', 'Throughput over time')))
    s.push(chart(timelineChart(timed, 'p99', 'p99 latency over time (per interval)')))
  }
  for (const sw of rep.sweeps) {
    s.push(`<h2>${esc(sw.title)}</h2>`)
    if (sw.knee !== undefined) s.push(`<p>Knee: <b>${fmtInt(sw.knee.ratePerS)}/s</b> — ${esc(sw.knee.reason)}</p>`)
    for (const c of sweepCharts(sw)) s.push(chart(c))
    s.push(table([sw.xLabel, ...RUN_HEADER.slice(2)], sw.points.map((p) => [fmtInt(p.x), ...runRow(p.run).slice(2)])))
  }
  const failing: RunResult[] = [...rep.runs, ...rep.sweeps.flatMap((x) => x.points.map((p) => p.run))].filter((r) => r.errors.total > 0)
  if (failing.length > 0) {
    s.push('<h2>Errors</h2>')
    for (const r of failing) {
      s.push(`<p><b>${esc(r.label)}</b>: ${Object.entries(r.errors.byKind).map(([k, n]) => `${esc(k)}: ${fmtInt(n)}`).join(', ')}</p>`)
      s.push(`<ul class="errors">${r.errors.samples.map((x) => `<li>${esc(x)}</li>`).join('')}</ul>`)
    }
  }
  if (rep.profiles.length > 0) {
    s.push('<h2>Where the server spends its time</h2><p class="meta">Per run: the server\'s CPU by OS thread during the window (from /proc), then each JavaScript thread\'s top self-time frames over the server\'s life (node --cpu-prof). A profiled server runs slower than an unprofiled one: these runs are not figures.</p>')
    for (const p of rep.profiles) {
      s.push(`<h3>${esc(p.run.label)} — ${fmtInt(p.run.throughputPerS)}/s, server ${p.run.serverCores ?? '–'} cores</h3>`)
      if (p.run.serverThreads.length > 0) s.push(table(['thread', 'cores'], p.run.serverThreads.map((t) => [t.main ? `${t.tid} (main)` : String(t.tid), t.cores.toFixed(2)])))
      for (const t of p.threads) {
        const links = t.flameSvg !== undefined && t.cpuProfile !== undefined ? ` · <a href="${esc(t.flameSvg)}">flame graph</a> · <a href="${esc(t.cpuProfile)}">profile</a>` : ''
        s.push(`<p><b>${esc(t.thread)}</b> — ${fmtInt(t.samplesCount)} samples, ${t.waitingPct.toFixed(0)} % waiting${links}</p>`)
        s.push(table(['self %', 'function', 'where'], t.top.map((f) => [f.selfPct.toFixed(1), f.fn, f.where])))
      }
    }
  }
  if (rep.notes.length > 0) s.push(`<h2>Notes</h2><ul>${rep.notes.map((n) => `<li>${esc(n)}</li>`).join('')}</ul>`)
  s.push('</body></html>')
  return s.join('\n')
}
