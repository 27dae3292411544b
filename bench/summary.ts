// The one line printed when a run ends.

import { fmtInt } from './report/progress.js'
import { fmtMs, fmtRatio, fmtTimes } from './report/table.js'
import type { RunResult } from './result.js'

export function runLine(r: RunResult): string {
  const mark = r.passed ? '✓' : '✗'
  const ratio = r.ceiling?.throughputRatio == null ? '' : ` (${fmtRatio(r.ceiling.throughputRatio)} of ceiling)`
  const lat = r.mode === 'open'
    ? ` · p50 ${fmtMs(r.latencyUs.p50)} p99 ${fmtMs(r.latencyUs.p99)} p99.9 ${fmtMs(r.latencyUs.p999)} max ${fmtMs(r.latencyUs.max)} ms (uncorrected p99 ${fmtMs(r.uncorrectedLatencyUs.p99)})${r.ceiling?.p99Ratio == null ? '' : `, p99 ${fmtTimes(r.ceiling.p99Ratio)} the ceiling's`}`
    : ''
  const errors = r.errors.total === 0 ? '' : ` · ${fmtInt(r.errors.total)} errors: ${Object.entries(r.errors.byKind).map(([k, n]) => `${k} ×${fmtInt(n)}`).join(', ')}`
  return `${mark} ${r.label}: ${fmtInt(r.throughputPerS)}/s${ratio}${lat}${errors}`
}
