// What the harness reads of a server process from outside: its Prometheus /metrics, and from
// Linux /proc its resident memory and its open-files limit.

import { readFileSync } from 'node:fs'

/** Why 30 s: a scrape answers in milliseconds, a few seconds on a saturated server; 30 s is a hung one. */
const SCRAPE_TIMEOUT_MS = 30_000

/** Sum of the series of a metric in Prometheus text whose labels contain `labels` (0 when absent). */
export async function scrape(url: string): Promise<(name: string, labels?: string) => number> {
  const text = await (await fetch(url, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) })).text()
  return (name: string, labels = '') => {
    let sum = 0
    for (const line of text.split('\n')) {
      if (!line.startsWith(name)) continue
      const rest = line.slice(name.length)
      if (rest[0] !== ' ' && rest[0] !== '{') continue
      if (labels !== '' && !rest.startsWith('{')) continue
      if (labels !== '' && !rest.slice(0, rest.indexOf('}')).includes(labels)) continue
      sum += Number(line.slice(line.lastIndexOf(' ') + 1))
    }
    return sum
  }
}

/** VmRSS and RssAnon of a process, KiB (Linux /proc). */
export function rssKiB(pid: number): { rss: number; anon: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1')
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN)
  return { rss: field('VmRSS'), anon: field('RssAnon') }
}

/** The soft (`ulimit -n`) and hard limits of open files of a process; undefined where /proc is missing or they are unlimited. */
export function openFilesLimit(pid: number | 'self'): { soft: number; hard: number } | undefined {
  try {
    const m = /^Max open files\s+(\d+)\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'latin1'))
    return m === null ? undefined : { soft: Number(m[1]), hard: Number(m[2]) }
  } catch {
    return undefined // not Linux: the step finds out when a connection fails
  }
}
