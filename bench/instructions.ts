// Instructions per command on the in-process command path (bench/command-path.ts), counted by
// valgrind's callgrind: a figure that does not move with the host's load, where this VM's timings
// move by ±15 % within minutes and it has no hardware counters. Two runs, N and 2N batches, with
// V8 compiling on the main thread (--single-threaded) so that all its work is counted and
// repeatable; their difference divided by N batches is the steady state, without start-up and
// warm-up. TurboFan's own instructions are reported apart: they shift between builds as
// inlining changes and would hide a change's effect. JIT code is named from the perf map that
// `--perf-basic-prof` writes.
//
// The default runs are 500 and 1,000 batches (~4 minutes): with 250 and 500 the window still
// caught much of TurboFan's work on the hot functions and the same build moved by ~1.3 %; with
// 500 and 1,000 it moves by ~0.4 % (docs/benchmarks.md, eighth session).
//
//   npx tsc -p . && node dist/bench/instructions.js [--batches 500] [--batch 32] [--top 25] [--inclusive] [--actualizers] [--json]

import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'

const run = promisify(execFile)
const COMMAND_PATH_JS = fileURLToPath(new URL('./command-path.js', import.meta.url))
/** callgrind is ~50x slower than native: a run of 1,000 batches takes about two minutes here. */
const RUN_TIMEOUT_MS = 20 * 60_000
/** Output of callgrind_annotate kept in memory; a whole-program listing is a few MiB. */
const ANNOTATE_BYTES_MAX = 256 * 1024 * 1024

/** Instructions by function (C++ symbols, V8 builtins, `JS <name>` for JIT code). */
export type Counts = Map<string, number>

export interface Steady {
  commands: number
  perCommand: number
  compilerPerCommand: number
  /** Per command without the optimizing compiler's work: the figure to compare builds by. */
  workPerCommand: number
  top: { fn: string; perCommand: number }[]
}

/** The functions of V8's compilers, parser and interpreter setup: work a steady state should not need. */
export function isCompiler(fn: string): boolean {
  return /v8::internal::(compiler|maglev|interpreter|baseline)::|v8::internal::(Scanner|Parser|Zone)\b/.test(fn)
}

/** `callgrind_annotate --threshold=100` output: instructions by function. */
export function parseAnnotate(text: string): { total: number; counts: Counts } {
  const counts: Counts = new Map()
  let total = 0
  for (const line of text.split('\n')) {
    const m = /^\s*([\d,]+) \([ \d.]+%\)\s+(.*)$/.exec(line)
    if (m === null) continue
    const n = Number(m[1]!.replace(/,/g, ''))
    if (m[2]!.includes('PROGRAM TOTALS')) total = n
    else counts.set(m[2]!, (counts.get(m[2]!) ?? 0) + n)
  }
  return { total, counts }
}

export interface PerfMapEntry { start: number; size: number; name: string }

/** `/tmp/perf-<pid>.map`: `<hex start> <hex size> <name>` per line, sorted by start. */
export function parsePerfMap(text: string): PerfMapEntry[] {
  const out: PerfMapEntry[] = []
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+) ([0-9a-f]+) (.+)$/.exec(line)
    if (m !== null) out.push({ start: parseInt(m[1]!, 16), size: parseInt(m[2]!, 16), name: m[3]! })
  }
  return out.sort((a, b) => a.start - b.start)
}

/** Unresolved callgrind entries (`???:0x…`) named by the perf map: `JS <name>`; others kept. */
export function nameJit(counts: Counts, map: readonly PerfMapEntry[]): Counts {
  const out: Counts = new Map()
  for (const [fn, n] of counts) {
    const m = /^\?\?\?:0x([0-9a-f]+)/.exec(fn)
    const e = m === null ? undefined : entryAt(map, parseInt(m[1]!, 16))
    const name = e === undefined ? fn : `JS ${e.name.replace(/^JS:/, '')}`
    out.set(name, (out.get(name) ?? 0) + n)
  }
  return out
}

function entryAt(map: readonly PerfMapEntry[], addr: number): PerfMapEntry | undefined {
  let lo = 0
  let hi = map.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    if (map[mid]!.start <= addr) lo = mid + 1
    else hi = mid - 1
  }
  const e = map[hi]
  return e !== undefined && addr < e.start + e.size ? e : undefined
}

/** The steady state between a short and a long run: what the extra commands cost. */
export function steadyState(short: Counts, long: Counts, commands: number, topCount: number): Steady {
  const diff: Counts = new Map()
  for (const fn of new Set([...short.keys(), ...long.keys()])) diff.set(fn, (long.get(fn) ?? 0) - (short.get(fn) ?? 0))
  let all = 0
  let compiler = 0
  for (const [fn, n] of diff) {
    all += n
    if (isCompiler(fn)) compiler += n
  }
  const top = [...diff].filter(([fn]) => !isCompiler(fn)).sort((a, b) => b[1] - a[1]).slice(0, topCount)
    .map(([fn, n]) => ({ fn, perCommand: n / commands }))
  return { commands, perCommand: all / commands, compilerPerCommand: compiler / commands, workPerCommand: (all - compiler) / commands, top }
}

/** One run's instructions by function: self, and with `inclusive` also with callees. */
export interface RunCounts { self: Counts; inclusive?: Counts }

/** One callgrind run of the command path; its instructions by function, JIT code named. */
async function countRun(batches: number, batch: number, inclusive: boolean, actualizers: boolean): Promise<RunCounts> {
  // Its own working directory: --perf-basic-prof also leaves V8 logs (isolate-*.log) there.
  const dir = await mkdtemp(join(tmpdir(), 'vvm-callgrind-'))
  const out = join(dir, 'callgrind.out')
  try {
    const { stderr } = await run('valgrind', [
      '--tool=callgrind', '--smc-check=all', `--callgrind-out-file=${out}`,
      process.execPath, '--single-threaded', '--perf-basic-prof', COMMAND_PATH_JS, '--batches', String(batches), '--batch', String(batch), '--rounds', '1',
      ...(actualizers ? ['--actualizers'] : []),
    ], { cwd: dir, timeout: RUN_TIMEOUT_MS, maxBuffer: ANNOTATE_BYTES_MAX })
    const pid = /^==(\d+)==/m.exec(stderr)?.[1]
    if (pid === undefined) throw new Error(`no pid in valgrind's output:\n${stderr.slice(-2000)}`)
    const mapFile = `/tmp/perf-${pid}.map`
    const map = parsePerfMap(await readFile(mapFile, 'utf8').catch(() => ''))
    await rm(mapFile, { force: true })
    const annotate = async (args: readonly string[]): Promise<Counts> =>
      nameJit(parseAnnotate((await run('callgrind_annotate', [...args, out], { maxBuffer: ANNOTATE_BYTES_MAX })).stdout).counts, map)
    const self = await annotate(['--threshold=100'])
    return inclusive ? { self, inclusive: await annotate(['--threshold=100', '--inclusive=yes']) } : { self }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** Instructions per command in the steady state: runs of `batches` and `2 × batches` batches. */
export async function measureInstructions(
  batches: number, batch: number, topCount: number, inclusive = false, actualizers = false,
): Promise<Steady & { inclusiveTop?: Steady['top'] }> {
  const short = await countRun(batches, batch, inclusive, actualizers)
  const long = await countRun(2 * batches, batch, inclusive, actualizers)
  const steady = steadyState(short.self, long.self, batches * batch, topCount)
  if (!inclusive) return steady
  return { ...steady, inclusiveTop: inclusiveTop(short.inclusive!, long.inclusive!, batches * batch, topCount) }
}

/**
 * The steady state's inclusive counts (a function with all it calls) of the project's own JS
 * functions: where a change's savings come from. Async functions count until their first
 * await; what runs after it is counted under the microtask that resumes it.
 */
export function inclusiveTop(short: Counts, long: Counts, commands: number, topCount: number): Steady['top'] {
  const own = (fn: string): boolean => fn.startsWith('JS ') && /\/(src|demo)\//.test(fn) && !/node_modules/.test(fn)
  return [...long].filter(([fn]) => own(fn)).map(([fn, n]) => ({ fn, perCommand: (n - (short.get(fn) ?? 0)) / commands }))
    .sort((a, b) => b.perCommand - a.perCommand).slice(0, topCount)
}

/** The first of the tools that is not installed (a tool that runs at all, whatever its exit code, is). */
async function missingTool(): Promise<string | undefined> {
  for (const tool of ['valgrind', 'callgrind_annotate']) {
    try {
      await run(tool, ['--version'])
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return tool
    }
  }
  return undefined
}

async function main(): Promise<number> {
  const { values: o } = parseArgs({
    options: {
      batches: { type: 'string', default: '500' },
      batch: { type: 'string', default: '32' },
      top: { type: 'string', default: '25' },
      json: { type: 'boolean', default: false },
      inclusive: { type: 'boolean', default: false },
      actualizers: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (o.help) {
    process.stdout.write(`instructions: instructions per command on the in-process command path (callgrind)

  node dist/bench/instructions.js [--batches N] [--batch N] [--top N] [--inclusive] [--actualizers] [--json]

  --batches      batches of the shorter run (default 500); the longer runs twice as many
  --batch        deposits per batch (default 32)
  --top          functions listed (default 25)
  --inclusive    also the project's own JS functions with all they call (per command)
  --actualizers  the async projectors too (bench/command-path.ts --actualizers): a figure of its own
  --json         the figures as JSON
`)
    return 0
  }
  const [batches, batch, top] = [Number(o.batches), Number(o.batch), Number(o.top)]
  if (![batches, batch, top].every((n) => Number.isInteger(n) && n > 0)) {
    process.stderr.write('instructions: --batches, --batch and --top take positive integers\n')
    return 2
  }
  const missing = await missingTool()
  if (missing !== undefined) {
    process.stderr.write(`instructions: ${missing} is not installed (Debian: apt-get install valgrind)\n`)
    return 2
  }
  const s = await measureInstructions(batches, batch, top, o.inclusive, o.actualizers)
  if (o.json) {
    process.stdout.write(JSON.stringify(s, null, 2) + '\n')
    return 0
  }
  const k = (n: number): string => `${(n / 1000).toFixed(1)}k`
  process.stdout.write(`command path${o.actualizers ? ' with the async projectors' : ''}, ${batch} deposits a batch, steady state over ${s.commands} commands (runs of ${batches} and ${2 * batches} batches):\n`)
  process.stdout.write(`  ${k(s.workPerCommand)} instructions per command without the optimizing compiler (compare builds by this)\n`)
  process.stdout.write(`  ${k(s.compilerPerCommand)} in V8's compilers during the window; ${k(s.perCommand)} in all\n\n`)
  const list = (top: Steady['top']): void => {
    for (const t of top) process.stdout.write(`${Math.round(t.perCommand).toLocaleString('en-US').padStart(9)}  ${t.fn.slice(0, 140)}\n`)
  }
  list(s.top)
  if (s.inclusiveTop !== undefined) {
    process.stdout.write(`\nthe project's JS functions with all they call (tiers apart: ^ baseline, * optimized):\n`)
    list(s.inclusiveTop)
  }
  return 0
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().then((code) => { process.exitCode = code }, (err: unknown) => {
    process.stderr.write(`instructions: ${(err as Error)?.stack ?? String(err)}\n`)
    process.exitCode = 1
  })
}
