// Time-series charts (uPlot) over a bounded ring of samples: the page keeps the last
// POINTS_MAX seconds and drops the oldest, however long it stays open.

import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'

/** Why 600: ten minutes at one snapshot a second. */
export const POINTS_MAX = 600
const HEIGHT_PX = 180

export interface SeriesSpec {
  label: string
  color: string
  /** Digits shown in the legend. */
  digits?: number
}

/** Whole seconds and up: a sub-second tick says nothing about one sample a second. */
const TIME_INCRS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]
const pad = (n: number): string => String(n).padStart(2, '0')
const clock = (s: number): string => {
  const d = new Date(s * 1000)
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
}

const AXIS = { stroke: '#8b95a7', grid: { stroke: '#232a36', width: 1 }, ticks: { stroke: '#232a36', width: 1 }, font: '11px system-ui, sans-serif' }

export class TimeChart {
  private readonly times: number[] = []
  private readonly values: (number | null)[][]
  private readonly plot: uPlot

  constructor(private readonly el: HTMLElement, series: readonly SeriesSpec[]) {
    this.values = series.map(() => [])
    const opts: uPlot.Options = {
      width: this.widthPx(),
      height: HEIGHT_PX,
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      legend: { live: true },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        { ...AXIS, space: 70, incrs: TIME_INCRS_S, values: (_u, splits) => splits.map(clock) },
        { ...AXIS, size: 48 },
      ],
      series: [
        { label: 'time' },
        ...series.map((s) => ({
          label: s.label, stroke: s.color, width: 1.6, fill: s.color + '1a', spanGaps: false, points: { show: false },
          value: (_u: uPlot, v: number | null) => (v === null ? '–' : v.toFixed(s.digits ?? 0)),
        })),
      ],
    }
    this.plot = new uPlot(opts, [[], ...this.values.map(() => [])], el)
    new ResizeObserver(() => this.plot.setSize({ width: this.widthPx(), height: HEIGHT_PX })).observe(el)
  }

  push(timeS: number, values: readonly (number | null)[]): void {
    this.times.push(timeS)
    values.forEach((v, i) => this.values[i]!.push(v))
    if (this.times.length > POINTS_MAX) {
      this.times.shift()
      for (const v of this.values) v.shift()
    }
    this.plot.setData([this.times, ...this.values] as uPlot.AlignedData)
    this.el.dataset.points = String(this.times.length)
    // Away from the cursor, the legend shows the latest values rather than dashes.
    if (this.plot.cursor.idx === null || this.plot.cursor.idx === undefined) this.plot.setLegend({ idx: this.times.length - 1 })
  }

  get points(): number {
    return this.times.length
  }

  private widthPx(): number {
    return Math.max(200, Math.floor(this.el.getBoundingClientRect().width))
  }
}
