// The server under test of bench/subscriptions.ts: `vvm start` in a child process (LevelDB or
// memory, a fresh data directory, --auth off) serving the demo bank app; its metrics scraped
// (Prometheus text), its RSS read from /proc, its CPU and this process's split into cores.

import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startChildServer, type ChildServer } from '../servers/child.js'
import { machineBusySeconds, selfCpuSeconds } from '../load/cpu.js'
import { nowUs } from './clock.js'
import type { Options } from './options.js'

/** The repository's root: this file runs as dist/bench/subscriptions/engine.js. */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
export const APP = 'demo/bank'

/** Why 120 s: a call waits behind up to --subscribers pushes on a loaded 2-core machine; only a lost reply should time out. */
export const CALL_TIMEOUT_MS = 120_000

export async function startEngine(opts: Options, dataDir: string, extra: string[]): Promise<ChildServer & { metricsUrl: string }> {
  const args = [join(ROOT, 'bin/vvm.js'), 'start', '--host', '127.0.0.1', '--port', '0', '--metrics-port', '0', '--log-level', 'warn',
    '--auth', 'off', '--data-dir', dataDir, '--storage', opts.storage, '--partitions', String(opts.partitions), ...extra]
  const s = await startChildServer(args, 'vvm')
  const m = /metrics on port (\d+)/.exec(s.output())
  if (m === null) throw new Error(`no metrics port in the server's output:\n${s.output()}`)
  return Object.assign(s, { metricsUrl: `http://127.0.0.1:${m[1]}/metrics` })
}

/** Sum of the series of a metric in Prometheus text whose labels contain `labels` (0 when absent). */
export async function scrape(url: string): Promise<(name: string, labels?: string) => number> {
  const text = await (await fetch(url)).text()
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

/** CPU of the server, of this process and of the whole machine, to split a window's cores among them. */
export function cpuMark(server: { cpuSeconds(): number | undefined }): { server: number; self: number; machine: number; atUs: number } {
  return { server: server.cpuSeconds() ?? NaN, self: selfCpuSeconds(), machine: machineBusySeconds() ?? NaN, atUs: nowUs() }
}

export interface Cores {
  server: number
  client: number
  other: number
}

export function coresBetween(a: ReturnType<typeof cpuMark>, b: ReturnType<typeof cpuMark>): Cores {
  const s = (b.atUs - a.atUs) / 1e6
  const server = (b.server - a.server) / s
  const client = (b.self - a.self) / s
  return { server, client, other: Math.max(0, (b.machine - a.machine) / s - server - client) }
}
