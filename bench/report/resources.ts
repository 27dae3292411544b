// The standard report's resource steps (memory with idle connections, restart with a long log)
// as titled two-column tables, the same for the terminal, report.md and report.html. Absent in
// result files written before these steps existed: then there is nothing to show.

import type { BenchReport, IdleConnectionsResult, RestartResult } from '../result.js'
import { fmtInt } from './progress.js'

export interface ResourceSection {
  title: string
  rows: [string, string][]
}

export function resourceSections(rep: BenchReport): ResourceSection[] {
  const out: ResourceSection[] = []
  if (rep.idleConnections !== undefined) out.push(idleConnectionsSection(rep.idleConnections))
  if (rep.idleConnectionsSweep !== undefined && rep.idleConnectionsSweep.length > 1) out.push(memorySweepSection(rep.idleConnectionsSweep))
  if (rep.restart !== undefined) out.push(restartSection(rep.restart))
  return out
}

const mib = (kib: number | null): string => (kib === null ? '–' : `${(kib / 1024).toFixed(1)} MiB`)
const ms = (x: number | null): string => (x === null ? '–' : `${fmtInt(x)} ms`)
const outcome = (s: { status: string; reason: string }): [string, string][] => (s.status === 'measured' ? [] : [[s.status === 'failed' ? 'FAILED' : 'skipped', s.reason]])

function idleConnectionsSection(r: IdleConnectionsResult): ResourceSection {
  const n = fmtInt(r.connectionsCount)
  return {
    title: `Memory with ${n} idle WebSocket connections (server RSS, whole process)`,
    rows: [
      ...outcome(r),
      ['connections', `${fmtInt(r.openedCount)} of ${n} opened (upgrade, HELLO, WELCOME${r.protocolVersion === null ? '' : ` version ${r.protocolVersion}`}) in ${ms(r.openMs)}; server idle timeout ${r.idleTimeoutS === null ? '–' : `${r.idleTimeoutS} s`}`],
      ['RSS, started and idle', mib(r.rssBeforeKiB)],
      [`RSS with the connections, idle ${fmtInt(r.idleMs)} ms`, mib(r.rssWithKiB)],
      ['per connection', r.perConnectionKiB === null ? '–' : `${r.perConnectionKiB.toFixed(1)} KiB`],
      ['vvm_ws_connections', r.serverConnectionsCount === null ? '–' : fmtInt(r.serverConnectionsCount)],
    ],
  }
}

/** One row per connection count: RSS with them, per connection, or why it was not measured. */
function memorySweepSection(sweep: readonly IdleConnectionsResult[]): ResourceSection {
  return {
    title: `Memory by idle WebSocket connections (${sweep.map((r) => fmtInt(r.connectionsCount)).join(' / ')}; a fresh server each, RSS before and with them)`,
    rows: sweep.map((r): [string, string] => [
      `${fmtInt(r.connectionsCount)} connections`,
      r.status === 'measured'
        ? `${mib(r.rssWithKiB)} (${mib(r.rssBeforeKiB)} before; ${r.perConnectionKiB === null ? '–' : `${r.perConnectionKiB.toFixed(1)} KiB`} per connection)`
        : `${r.status === 'failed' ? 'FAILED' : 'not measured'}: ${r.reason}`,
    ]),
  }
}

/** RSS by connection count (the measured points of the sweep), for the HTML report's chart. */
export function memorySweepPoints(rep: BenchReport): [number, number][] {
  return (rep.idleConnectionsSweep ?? []).filter((r) => r.status === 'measured' && r.rssWithKiB !== null).map((r) => [r.connectionsCount, r.rssWithKiB! / 1024])
}

function restartSection(r: RestartResult): ResourceSection {
  const f = r.fill
  const errors = f.errors === 0 ? '0 errors' : `${fmtInt(f.errors)} errors (${Object.entries(f.errorKinds).map(([k, n]) => `${k} ×${fmtInt(n)}`).join(', ')})`
  return {
    title: `Restart with ${fmtInt(r.eventsBeforeKill ?? r.eventsTarget)} events in the log (SIGKILL, then the same data directory)`,
    rows: [
      ...outcome(r),
      ['fill', `${f.label}: ${fmtInt(f.ok)} deposits in ${f.runsCount} run${f.runsCount === 1 ? '' : 's'}, ${f.seconds} s (${fmtInt(f.eventsPerS)} events/s, setup included), ${errors}`],
      ['events in the PLogs before SIGKILL', r.eventsBeforeKill === null ? '–' : fmtInt(r.eventsBeforeKill)],
      ['data directory', r.dataDirBytes === null ? '–' : mib(r.dataDirBytes / 1024)],
      ['spawn → "listening on"', ms(r.listeningMs)],
      ['spawn → first command served (document create, 201)', `${ms(r.firstCommandMs)}${r.attemptsCount > 0 ? ` (${fmtInt(r.attemptsCount)} attempt${r.attemptsCount === 1 ? '' : 's'})` : ''}`],
      ['events in the PLogs after the restart (the create included)', r.eventsAfterRestart === null ? '–' : fmtInt(r.eventsAfterRestart)],
    ],
  }
}
