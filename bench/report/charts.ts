// Which charts a report has, built from its runs and sweeps.

import type { RunResult, Sweep } from '../result.js'
import { PALETTE, type ChartSpec, type Series } from './chart.js'

const ms = (us: number): number => us / 1000

/** Latency by percentile: the main chart. Open-loop runs also show their uncorrected curve, dashed. */
export function latencyChart(runs: RunResult[], title: string, p99TargetMs?: number): ChartSpec {
  const series: Series[] = []
  runs.forEach((r, i) => {
    const color = PALETTE[i % PALETTE.length]!
    const kind = r.mode === 'open' ? 'corrected' : 'closed loop, not a latency figure'
    series.push({ name: `${r.label} (${kind})`, color, points: r.percentileCurve.map(([p, us]) => [p, ms(us)]) })
    if (r.mode === 'open') series.push({ name: `${r.label} (uncorrected)`, color, dashed: true, points: r.uncorrectedCurve.map(([p, us]) => [p, ms(us)]) })
  })
  const rules = p99TargetMs === undefined ? [] : [{ y: p99TargetMs, label: `target: p99 ≤ ${p99TargetMs} ms`, color: '#9a6700' }]
  return { title, xLabel: 'percentile', yLabel: 'latency, ms', xScale: 'percentile', series, rules }
}

export function timelineChart(runs: RunResult[], what: 'throughput' | 'p99', title: string): ChartSpec {
  const series = runs.map((r, i): Series => ({
    name: r.label,
    color: PALETTE[i % PALETTE.length]!,
    // Only whole intervals inside the window: the warm-up's first and the drain's last would read as dips.
    points: r.timeline.filter((t) => t.measured && t.tS <= r.settings.warmupS + r.settings.durationS + 1e-9).map((t) => [t.tS, what === 'throughput' ? t.okPerS : ms(t.p99Us)]),
  }))
  return {
    title, xScale: 'linear', series,
    xLabel: 'seconds since the start of the warm-up',
    yLabel: what === 'throughput' ? 'right replies per second' : 'p99 latency, ms',
  }
}

export function sweepCharts(s: Sweep): ChartSpec[] {
  const pts = (f: (r: RunResult) => number): [number, number][] => s.points.map((p) => [p.x, f(p.run)])
  const xScale = s.name === 'workspaces' ? 'log' : 'linear'
  const charts: ChartSpec[] = []
  if (s.name === 'partitions') {
    charts.push({ title: s.title, xLabel: s.xLabel, yLabel: 'commands per second', xScale, series: [{ name: 'throughput', color: PALETTE[0]!, dots: true, points: pts((r) => r.throughputPerS) }] })
  } else {
    charts.push({
      title: s.title, xLabel: s.xLabel, yLabel: 'latency, ms', xScale,
      series: [
        { name: 'p50', color: PALETTE[2]!, dots: true, points: pts((r) => ms(r.latencyUs.p50)) },
        { name: 'p99', color: PALETTE[1]!, dots: true, points: pts((r) => ms(r.latencyUs.p99)) },
        { name: 'p99.9', color: PALETTE[4]!, dots: true, points: pts((r) => ms(r.latencyUs.p999)) },
      ],
    })
  }
  if (s.name === 'rate') {
    charts.push({
      title: 'Rate sweep: achieved vs intended rate', xLabel: s.xLabel, yLabel: 'right replies per second', xScale,
      series: [
        { name: 'intended', color: PALETTE[7]!, dashed: true, points: s.points.map((p) => [p.x, p.x]) },
        { name: 'achieved', color: PALETTE[0]!, dots: true, points: pts((r) => r.throughputPerS) },
      ],
    })
  }
  return charts
}
