// Warnings a report carries about its own figures.

import type { RunResult } from './result.js'

/** Client ELU above this: the load generator, not the server, limited the run. */
const CLIENT_BOUND_ELU = 0.9
/** Other processes using more than this many cores during a window disturbed its figures. */
const DISTURBED_CORES = 0.25

export function runNotes(runs: RunResult[]): string[] {
  const notes: string[] = []
  for (const r of runs) {
    if (r.clientElu > CLIENT_BOUND_ELU) notes.push(`"${r.label}": a load worker was busy ${Math.round(r.clientElu * 100)} % of the window — the client limited this run (for a ceiling: the ceiling is a floor, so ratios to it are upper bounds; try --workers)`)
    if (r.otherCores !== null && r.otherCores > DISTURBED_CORES) notes.push(`"${r.label}": other processes used ${r.otherCores.toFixed(2)} cores during the window — this figure was disturbed; run again on a quiet machine`)
  }
  return notes
}
