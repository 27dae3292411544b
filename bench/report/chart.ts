// Charts as data: a chart (series, axes) is laid out into drawing primitives in pixels; svg.ts
// writes them as SVG for the HTML report, raster.ts paints them for the PNG. One layout, so the
// PNG and the HTML show the same picture.

export interface Series {
  name: string
  color: string
  points: [number, number][]
  dashed?: boolean
  /** Draw a dot on every point (sparse data such as sweeps). */
  dots?: boolean
}

export interface ChartSpec {
  title: string
  xLabel: string
  yLabel: string
  /** `percentile`: x in percent, drawn as log10(1/(1-p)) like HdrHistogram plots. */
  xScale: 'linear' | 'percentile' | 'log'
  series: Series[]
  width?: number
  height?: number
  /** Horizontal reference lines (targets), drawn dotted. */
  rules?: { y: number; label: string; color: string }[]
}

export type Prim =
  | { t: 'rect'; x: number; y: number; w: number; h: number; fill: string }
  | { t: 'line'; pts: number[]; color: string; width: number; dash: number }
  | { t: 'dot'; x: number; y: number; r: number; fill: string }
  | { t: 'text'; x: number; y: number; text: string; size: number; color: string; anchor: 'start' | 'middle' | 'end'; vertical?: boolean; bold?: boolean }

export interface Drawing {
  width: number
  height: number
  prims: Prim[]
}

export const PALETTE = ['#1f6feb', '#d1242f', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#0a7d8c', '#57606a']
const AXIS = '#57606a'
const GRID = '#d8dee4'
const INK = '#1f2328'
/** p = 99.999 % is the last labelled percentile; `max` (100) is drawn a bit to its right. */
const PERCENTILE_NINES_MAX = 5
const PERCENTILE_TICKS: [number, string][] = [[0, '0%'], [90, '90%'], [99, '99%'], [99.9, '99.9%'], [99.99, '99.99%'], [99.999, '99.999%']]

const percentileX = (p: number): number => (p >= 100 ? PERCENTILE_NINES_MAX + 0.3 : Math.min(PERCENTILE_NINES_MAX, Math.log10(100 / (100 - p))))

export function layoutChart(spec: ChartSpec): Drawing {
  const width = spec.width ?? 900
  const height = spec.height ?? 460
  const m = { left: 78, right: 24, top: 44, bottom: 56 }
  const pw = width - m.left - m.right
  const ph = height - m.top - m.bottom
  const prims: Prim[] = [{ t: 'rect', x: 0, y: 0, w: width, h: height, fill: '#ffffff' }]
  prims.push({ t: 'text', x: m.left, y: 26, text: spec.title, size: 16, color: INK, anchor: 'start', bold: true })

  const all = spec.series.flatMap((s) => s.points)
  const tx = spec.xScale === 'percentile' ? percentileX : spec.xScale === 'log' ? (v: number) => Math.log10(Math.max(v, 1e-9)) : (v: number) => v
  let xs = all.map((p) => tx(p[0]))
  if (xs.length === 0) xs = [0, 1]
  let x0 = Math.min(...xs)
  let x1 = Math.max(...xs)
  if (spec.xScale === 'percentile') { x0 = 0; x1 = PERCENTILE_NINES_MAX + 0.3 }
  if (x1 === x0) { x0 -= 0.5; x1 += 0.5 }
  const yMaxData = Math.max(0, ...all.map((p) => p[1]), ...(spec.rules ?? []).map((r) => r.y))
  const yTicks = niceTicks(0, yMaxData > 0 ? yMaxData * 1.05 : 1)
  const y1 = yTicks[yTicks.length - 1]!
  const px = (v: number): number => m.left + ((tx(v) - x0) / (x1 - x0)) * pw
  const py = (v: number): number => m.top + ph - (v / y1) * ph

  for (const t of yTicks) {
    const y = py(t)
    prims.push({ t: 'line', pts: [m.left, y, m.left + pw, y], color: GRID, width: 1, dash: 0 })
    prims.push({ t: 'text', x: m.left - 8, y: y + 4, text: fmtTick(t), size: 11, color: AXIS, anchor: 'end' })
  }
  const xTicks: [number, string][] = spec.xScale === 'percentile'
    ? [...PERCENTILE_TICKS, [100, 'max']]
    : spec.xScale === 'log'
      ? logTicks(Math.pow(10, x0), Math.pow(10, x1)).map((v) => [v, fmtTick(v)])
      : niceTicks(x0, x1).filter((v) => v >= x0 - 1e-9 && v <= x1 + 1e-9).map((v) => [v, fmtTick(v)])
  for (const [v, label] of xTicks) {
    const x = px(v)
    prims.push({ t: 'line', pts: [x, m.top, x, m.top + ph], color: GRID, width: 1, dash: 0 })
    prims.push({ t: 'text', x, y: m.top + ph + 18, text: label, size: 11, color: AXIS, anchor: 'middle' })
  }
  prims.push({ t: 'line', pts: [m.left, m.top + ph, m.left + pw, m.top + ph], color: AXIS, width: 1, dash: 0 })
  prims.push({ t: 'line', pts: [m.left, m.top, m.left, m.top + ph], color: AXIS, width: 1, dash: 0 })
  prims.push({ t: 'text', x: m.left + pw / 2, y: height - 14, text: spec.xLabel, size: 12, color: INK, anchor: 'middle' })
  prims.push({ t: 'text', x: 18, y: m.top + ph / 2, text: spec.yLabel, size: 12, color: INK, anchor: 'middle', vertical: true })

  for (const r of spec.rules ?? []) {
    const y = py(r.y)
    prims.push({ t: 'line', pts: [m.left, y, m.left + pw, y], color: r.color, width: 1.5, dash: 3 })
    prims.push({ t: 'text', x: m.left + pw - 4, y: y - 5, text: r.label, size: 11, color: r.color, anchor: 'end' })
  }
  for (const s of spec.series) {
    if (s.points.length === 0) continue
    const pts = s.points.flatMap(([x, y]) => [px(x), py(y)])
    prims.push({ t: 'line', pts, color: s.color, width: 2, dash: s.dashed === true ? 6 : 0 })
    if (s.dots === true || s.points.length === 1) for (const [x, y] of s.points) prims.push({ t: 'dot', x: px(x), y: py(y), r: 3.5, fill: s.color })
  }
  // Legend, top-left inside the plot, one row per series.
  let ly = m.top + 14
  for (const s of spec.series) {
    prims.push({ t: 'line', pts: [m.left + 12, ly - 4, m.left + 36, ly - 4], color: s.color, width: 2.5, dash: s.dashed === true ? 6 : 0 })
    prims.push({ t: 'text', x: m.left + 42, y: ly, text: s.name, size: 11, color: INK, anchor: 'start' })
    ly += 17
  }
  return { width, height, prims }
}

/** 0 and multiples of 1, 2 or 5 × 10^k covering [lo, hi] in about six steps. */
export function niceTicks(lo: number, hi: number): number[] {
  const span = hi - lo
  const raw = span / 6
  const mag = Math.pow(10, Math.floor(Math.log10(raw)))
  const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => span / s <= 7) ?? 10 * mag
  const first = Math.floor(lo / step) * step
  const out: number[] = []
  for (let v = first; v < hi + step * 0.999; v += step) out.push(Math.round(v / step) * step)
  return out
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = []
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const k of [1, 2, 5]) {
      const v = k * Math.pow(10, e)
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v)
    }
  }
  return out
}

export function fmtTick(v: number): string {
  const a = Math.abs(v)
  if (a >= 1e6) return `${+(v / 1e6).toFixed(2)}M`
  if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}k`
  if (a >= 100 || v === 0) return String(Math.round(v))
  return String(+v.toPrecision(3))
}
