// Where a run's tail came from, read from the server's own histograms: the share of commands
// over a few thresholds in each stage of `vvm_partition_stage_seconds` (queued, execute, commit,
// reply; all partitions together) and in `vvm_http_request_duration_seconds` for the HTTP v1
// command route, between two scrapes of /metrics around the run (its setup and warm-up included).

import { STAGES } from '../src/shared/stage-histogram.js'

type Scraped = (name: string, labels?: string) => number

/** Upper bounds (seconds) at which the share above is reported; each is a bucket bound of both histograms. */
export const TAIL_BOUNDS_S = [0.001, 0.0025, 0.005] as const

/** Share of the observations above each bound, between two scrapes; undefined without observations. */
function sharesAbove(before: Scraped, after: Scraped, metric: string, labels: string): number[] | undefined {
  const count = after(`${metric}_count`, labels) - before(`${metric}_count`, labels)
  if (!(count > 0)) return undefined
  return TAIL_BOUNDS_S.map((b) => {
    const at = `${labels},le="${b}"`
    return 1 - (after(`${metric}_bucket`, at) - before(`${metric}_bucket`, at)) / count
  })
}

/** One line for a report's notes: "> 1 / 2.5 / 5 ms" shares by stage, or undefined when the server reported none. */
export function stageTailNote(before: Scraped, after: Scraped, run: string): string | undefined {
  const pct = (shares: number[]): string => shares.map((x) => `${(100 * x).toFixed(2)} %`).join(' / ')
  const parts: string[] = []
  const server = sharesAbove(before, after, 'vvm_http_request_duration_seconds', 'route="v1/commands"')
  if (server !== undefined) parts.push(`server (arrival to reply) ${pct(server)}`)
  for (const stage of STAGES) {
    const s = sharesAbove(before, after, 'vvm_partition_stage_seconds', `stage="${stage}"`)
    if (s !== undefined) parts.push(`${stage} ${pct(s)}`)
  }
  if (parts.length === 0) return undefined
  return `where the time went in "${run}" (the server's histograms over the step, setup and warm-up included; share of commands over ${TAIL_BOUNDS_S.map((b) => b * 1000).join(' / ')} ms): ${parts.join('; ')}`
}
