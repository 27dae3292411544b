// HdrHistogram (hdr-histogram-js) in microseconds: one shape for every histogram of a run, so
// workers' histograms can be sent as compressed base64 and added in the main thread.

import hdr from 'hdr-histogram-js'
import type { Histogram } from 'hdr-histogram-js'

/** Why 60 s: any latency above it is reported as a timeout, not a figure; autoResize covers a stray. */
const HIGHEST_US = 60_000_000

export function newHistogram(): Histogram {
  return hdr.build({ bitBucketSize: 32, numberOfSignificantValueDigits: 3, lowestDiscernibleValue: 1, highestTrackableValue: HIGHEST_US, autoResize: true })
}

export const encodeHistogram = (h: Histogram): string => hdr.encodeIntoCompressedBase64(h)
export const decodeHistogram = (s: string): Histogram => hdr.decodeFromCompressedBase64(s, 32, false)

export interface LatencySummaryUs {
  count: number
  p50: number
  p90: number
  p99: number
  p999: number
  max: number
  mean: number
}

export function summarize(h: Histogram): LatencySummaryUs {
  if (h.totalCount === 0) return { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0 }
  return {
    count: h.totalCount,
    p50: h.getValueAtPercentile(50),
    p90: h.getValueAtPercentile(90),
    p99: h.getValueAtPercentile(99),
    p999: h.getValueAtPercentile(99.9),
    max: h.maxValue,
    mean: Math.round(h.mean),
  }
}

/** Percentiles for the latency-by-percentile curve (x is drawn as 1/(1-p), as HdrHistogram plots do). */
const CURVE_PERCENTILES = [0, 10, 25, 50, 75, 90, 95, 97.5, 99, 99.5, 99.75, 99.9, 99.95, 99.99, 99.995, 99.999, 100]

export function percentileCurve(h: Histogram): [number, number][] {
  if (h.totalCount === 0) return []
  return CURVE_PERCENTILES.map((p) => [p, p === 100 ? h.maxValue : h.getValueAtPercentile(p)])
}
