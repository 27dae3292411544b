// The size of V8's platform thread pool: the threads that run the garbage collector's
// concurrent and parallel work (marking, sweeping, parallel scavenges) and background
// compilation for every isolate of the process — the main thread's and each worker's. Node
// starts 4 whatever the machine. On a 2-core machine those helpers compete for the cores with
// the threads a request waits for (the main thread, the partition workers): a worker woken by
// its commit's completion can wait milliseconds for a core (docs/benchmarks.md, twelfth
// session: at half the maximum rate the p99 fell from 8.0 to 6.1 ms with one helper).
//
// Node reads `--v8-pool-size` only at start-up, so `vvm start` restarts itself in place (same
// pid, same streams) with the flag when node runs without the size wanted (`restartNeeded`;
// `execReplace`, native/).

import { availableParallelism } from 'node:os'

type Native = typeof import('../../native/index.js')
/** The addon, from the compiled file (dist/src/main/). */
const NATIVE_URL = new URL('../../../native/index.js', import.meta.url)

/** Node's own default (`--v8-pool-size` absent or 0). */
export const NODE_DEFAULT_V8_POOL_SIZE = 4
/** The `--v8-pool-size` option's "size it to the machine". */
export const V8_POOL_SIZE_AUTO = -1
export const V8_POOL_SIZE_MAX = 64

/**
 * The pool size a server should run with: the option as given, or for `auto` one helper per
 * core beyond the first (at least 1, at most Node's default); 0: Node's default, no flag.
 */
export function v8PoolSizeFor(option: number, cores = availableParallelism()): number {
  if (option !== V8_POOL_SIZE_AUTO) return option
  return Math.max(1, Math.min(NODE_DEFAULT_V8_POOL_SIZE, cores - 1))
}

/** Node's flags for this process in the order node applies them: NODE_OPTIONS, then the command line. */
function nodeFlagsOf(execArgv: readonly string[], nodeOptions: string): string[] {
  return [...nodeOptions.split(/\s+/), ...execArgv]
}

/** The `--v8-pool-size` this process was started with (command line, then NODE_OPTIONS); undefined: none. */
export function startedV8PoolSize(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env['NODE_OPTIONS'] ?? ''): number | undefined {
  const flags = nodeFlagsOf(execArgv, nodeOptions)
  let size: number | undefined
  for (let i = 0; i < flags.length; i++) {
    const f = flags[i]!
    const m = /^--v8[-_]pool[-_]size(?:=(.*))?$/.exec(f)
    if (m === null) continue
    const value = m[1] ?? flags[i + 1]
    const n = Number(value)
    if (Number.isInteger(n) && n >= 0) size = n
  }
  return size
}

/** The pool size in force in this process. */
export function v8PoolSizeInForce(): number {
  const started = startedV8PoolSize()
  if (started === undefined) return NODE_DEFAULT_V8_POOL_SIZE
  // An explicit 0 makes Node size it itself: one per core beyond the first.
  return started === 0 ? Math.max(1, availableParallelism() - 1) : started
}

/**
 * Whether the process should restart with `wanted`: not for 0 (Node's default); for the
 * automatic size only when node was started without one (a size given to node is the
 * operator's); for a size given to vvm when node runs with another.
 */
export function restartNeeded(option: number, wanted: number, started: number | undefined): boolean {
  if (wanted === 0) return false
  if (started === undefined) return true
  return option !== V8_POOL_SIZE_AUTO && started !== wanted
}

/**
 * A node flag under which the process must not replace itself, and why; undefined: none. A
 * debugger's port stays taken by this process until it is gone, so the new one could not open
 * it; a profiler's SIGPROF still pending at the replacement kills the new process before it
 * handles that signal (seen: a server started with --cpu-prof ended by SIGPROF before listening).
 */
export function restartBlockedBy(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env['NODE_OPTIONS'] ?? ''): string | undefined {
  for (const f of nodeFlagsOf(execArgv, nodeOptions)) {
    if (/^--inspect/.test(f)) return `${f} (the debugger's port would be lost)`
    if (/^--(cpu-prof|heap-prof|prof)(=|$)/.test(f)) return `${f} (a pending profiler signal would end the new process)`
  }
  return undefined
}

/**
 * When the server wants a pool size the process was not started with, the process is replaced
 * by the same node, script and arguments with `--v8-pool-size` added (after node's own flags,
 * so it wins over one among them or in NODE_OPTIONS); this call then does not return. Returns
 * a warning when it did not although it should have, undefined otherwise.
 */
export async function restartWithV8PoolSize(option: number): Promise<string | undefined> {
  const wanted = v8PoolSizeFor(option)
  if (!restartNeeded(option, wanted, startedV8PoolSize())) return undefined
  const blocker = restartBlockedBy()
  if (blocker !== undefined) {
    return `not restarting with --v8-pool-size=${wanted} under ${blocker}; start node with --v8-pool-size=${wanted} to have it`
  }
  const args = [...process.execArgv, `--v8-pool-size=${wanted}`, ...process.argv.slice(1)]
  try {
    const { execReplace } = await (import(NATIVE_URL.href) as Promise<Native>)
    execReplace(process.execPath, args)
  } catch (err) {
    return `could not restart with --v8-pool-size=${wanted} (${(err as Error).message.split('\n')[0]}); V8 keeps the pool node started with`
  }
  return undefined
}
