// CPU time, to tell who used the machine during a run: the server (its /proc entry, see
// servers/child.ts), this bench process (all its threads), and the whole machine (/proc/stat).
// What the machine used beyond the first two is other work that disturbed the figures.

import { readFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'

let ticksPerS: number | undefined

/** Seconds of CPU the kernel counted as busy on all cores (user, nice, system, irq, softirq, steal); undefined off Linux. */
export function machineBusySeconds(): number | undefined {
  try {
    const cpu = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number)
    const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = cpu
    return (user + nice + system + irq + softirq + steal) / clockTicksPerS()
  } catch {
    return undefined // no /proc (not Linux): the run reports no machine figure
  }
}

/** CPU seconds this process (every thread) used so far. */
export function selfCpuSeconds(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

export function clockTicksPerS(): number {
  if (ticksPerS === undefined) {
    try {
      ticksPerS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'latin1' }).trim()) || 100
    } catch {
      ticksPerS = 100 // the Linux default, where getconf is missing
    }
  }
  return ticksPerS
}
