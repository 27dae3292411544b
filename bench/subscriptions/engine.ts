// The server under test of bench/subscriptions.ts: `vvm start` in a child process (LevelDB or
// memory, a fresh data directory, --auth off) serving the demo bank app; its metrics scraped
// (Prometheus text), its RSS read from /proc, its CPU and this process's split into cores.

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

// Moved to ../servers/probe.ts (the standard report reads them too); re-exported for this bench's modules.
export { rssKiB, scrape } from '../servers/probe.js'

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
