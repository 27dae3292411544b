// A server in a child process: started with its command line, ready when it prints
// "listening on http://host:port", stopped with SIGTERM (SIGKILL if it does not exit in time)
// or killed outright (SIGKILL, a crash: the restart step). Its CPU time is read from /proc so a
// run can say how many cores the server used; when it was spawned and when it said it listens
// are kept so a step can time a start.

import { spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { clockTicksPerS } from '../load/cpu.js'

const READY_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 20_000
/** Output kept for error messages; older output is dropped. */
const OUTPUT_CHARS_MAX = 16_384

export interface ChildServer {
  readonly url: string
  readonly pid: number
  /** performance.now() just before the spawn, and when the "listening on" line arrived. */
  readonly spawnedAtMs: number
  readonly listeningAtMs: number
  /** CPU seconds (user + system, all threads) used so far; undefined where /proc is missing. */
  cpuSeconds(): number | undefined
  /** CPU seconds used so far by each thread (OS thread id → seconds); undefined where /proc is missing. */
  threadCpuSeconds(): Map<number, number> | undefined
  output(): string
  stop(): Promise<void>
  /** SIGKILL, as a crash would end it; resolves once the process is gone. */
  kill(): Promise<void>
}

export async function startChildServer(args: readonly string[], what: string): Promise<ChildServer> {
  const spawnedAtMs = performance.now()
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const keep = (d: Buffer): void => {
    out += d.toString()
    if (out.length > OUTPUT_CHARS_MAX) out = out.slice(-OUTPUT_CHARS_MAX)
  }
  proc.stdout!.on('data', keep)
  proc.stderr!.on('data', keep)
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  /** How it ended, for messages: the exit code, or the signal that ended it. */
  const ending = (): string => (proc.signalCode !== null ? `signal ${proc.signalCode}` : `code ${proc.exitCode}`)
  let listeningAtMs = 0
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`${what} did not start in ${READY_TIMEOUT_MS} ms:\n${out}`)) }, READY_TIMEOUT_MS)
    const check = (): void => {
      const m = /listening on (http:\/\/[^\s]+?:\d+)/.exec(out)
      if (m) { listeningAtMs = performance.now(); clearTimeout(timer); proc.stdout!.off('data', check); resolve(m[1]!) }
    }
    proc.stdout!.on('data', check)
    void exited.then(() => { clearTimeout(timer); reject(new Error(`${what} exited (${ending()}) before listening:\n${out}`)) })
  })
  const gone = (): boolean => proc.exitCode !== null || proc.signalCode !== null
  return {
    url,
    pid: proc.pid!,
    spawnedAtMs,
    listeningAtMs,
    cpuSeconds: () => cpuSecondsOf(proc),
    threadCpuSeconds: () => threadCpuSecondsOf(proc),
    output: () => out,
    stop: async () => {
      if (gone()) return
      proc.kill('SIGTERM')
      const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    },
    kill: async () => {
      if (gone()) return
      proc.kill('SIGKILL')
      await exited
    },
  }
}

/** utime + stime of a /proc `stat` line, in seconds. */
function statCpuSeconds(stat: string): number {
  // Fields after the command name (which may hold spaces, hence the last ')'): utime is the
  // 14th field and stime the 15th of the whole line.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / clockTicksPerS()
}

function cpuSecondsOf(proc: ChildProcess): number | undefined {
  try {
    return statCpuSeconds(readFileSync(`/proc/${proc.pid}/stat`, 'latin1'))
  } catch {
    return undefined // not Linux, or the process is gone: the run reports no server CPU
  }
}

function threadCpuSecondsOf(proc: ChildProcess): Map<number, number> | undefined {
  try {
    const out = new Map<number, number>()
    for (const tid of readdirSync(`/proc/${proc.pid}/task`)) {
      try {
        out.set(Number(tid), statCpuSeconds(readFileSync(`/proc/${proc.pid}/task/${tid}/stat`, 'latin1')))
      } catch {
        // the thread ended between the listing and the read: it has nothing more to count
      }
    }
    return out
  } catch {
    return undefined // not Linux, or the process is gone
  }
}
