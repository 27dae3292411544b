// A command as a WASM extension vs the same command builtin (issue 6; figures in
// docs/benchmarks.md, "WASM extensions"): demo/bank's bank.TransferWasm (AssemblyScript,
// demo/bank/assembly/transfer.ts) against bank.Transfer.
//
//   npx tsc -p . && node scripts/build-wasm.mjs && node dist/bench/wasm-vs-builtin.js [options]
//
// Part 1, on this thread, the extension call alone (latency of every call, percentiles):
//   - engine: borrow an instance → invoke `transfer` (its one host call answered from
//     pre-encoded replies) → give it back;
//   - runner: the whole execute stage, WasmRunner vs BuiltinRunner, on a real CommandTx whose
//     accounts are in the partition's record cache (as in a warm partition).
//   This part imports src/workers (unlike the rest of bench/, which uses the engine only as a
//   user does): the engine pool is what it measures.
// Part 2, the server: `vvm start` in a child process (its own event loops), driven over the
// binary protocol (the SDK) by this process, closed loop (`--connections` × `--pipeline`
// commands in flight); rounds alternate the two commands so that drift hits both. Throughput
// is what the figure is; the closed-loop latency is printed in parentheses (not a latency
// figure). Server CPU per command comes from /proc.

import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect, type VvmClient } from '../src/client/index.js'
import { openStorageProvider } from '../src/shared/storage/index.js'
import type { AppDef } from '../src/shared/appdef/types.js'
import { recordKey, PartitionState } from '../src/workers/command/partition-state.js'
import { CommandTx } from '../src/workers/command/command-tx.js'
import { Staging } from '../src/workers/command/staging.js'
import { BuiltinRunner } from '../src/workers/extensions.js'
import { WasmEngines } from '../src/workers/wasm/engine-pool.js'
import { WasmRunner } from '../src/workers/wasm/wasm-runner.js'
import { abiCodec } from '../src/workers/wasm/host-api.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BANK_URL = new URL('../demo/bank/index.js', import.meta.url).href
const TRANSFER_WASM = new URL('../demo/bank/transfer.wasm', import.meta.url)
/** Why 1e12: no run moves enough to meet insufficient funds. */
const OPENING_BALANCE = 1e12

interface Options {
  durationS: number
  rounds: number
  connections: number
  pipeline: number
  workspaces: number
  partitions: number
  storage: string
  calls: number
}

function parseOptions(argv: readonly string[]): Options {
  const o: Options = { durationS: 5, rounds: 3, connections: 4, pipeline: 64, workspaces: 64, partitions: 2, storage: 'level', calls: 200_000 }
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]!.replace(/^--/, '').replace(/-(\w)/g, (_, c: string) => c.toUpperCase()) as keyof Options
    const value = argv[i + 1]
    if (!(key in o) || value === undefined) throw new Error(`unknown option ${argv[i]} (options: ${Object.keys(o).join(', ')}, e.g. --duration-s 5)`)
    ;(o as unknown as Record<string, unknown>)[key] = key === 'storage' ? value : Number(value)
  }
  return o
}

const opts = parseOptions(process.argv.slice(2))

function percentiles(samplesNs: number[]): { p50: number; p99: number; p999: number; max: number } {
  samplesNs.sort((a, b) => a - b)
  const at = (q: number): number => samplesNs[Math.min(samplesNs.length - 1, Math.floor(q * samplesNs.length))]! / 1000
  return { p50: at(0.5), p99: at(0.99), p999: at(0.999), max: samplesNs[samplesNs.length - 1]! / 1000 }
}

const us = (x: number): string => (x < 10 ? x.toFixed(2) : x.toFixed(1))
const fmt = (p: ReturnType<typeof percentiles>): string => `p50 ${us(p.p50)} µs, p99 ${us(p.p99)} µs, p99.9 ${us(p.p999)} µs, max ${us(p.max)} µs`

// ---- part 1: the extension call on this thread ------------------------------------------

async function engineLatency(): Promise<string[]> {
  const cacheDir = await mkdtemp(join(tmpdir(), 'vvm-bench-wasm-'))
  const engines = await WasmEngines.open({ deadlineMs: 50, memoryBytesMax: 16 << 20, poolSize: 2, cacheDir }, 2)
  const lines: string[] = []
  try {
    const { pool } = await engines.pool(await readFile(TRANSFER_WASM), 'command', 'bench')
    const account = (id: number) => ({ 'sys.ID': id, 'sys.QName': 'bank.Account', 'sys.IsActive': true, name: 'a', balance: OPENING_BALANCE })
    const reply = abiCodec.pack([account(70000), account(70001)])
    const host = (): Uint8Array => reply
    const input = abiCodec.pack({ qname: 'bank.TransferWasm', wsid: 1, args: { from: 70000, to: 70001, amount: 1 } })
    const samples: number[] = []
    for (let i = 0; i < opts.calls + 10_000; i++) {
      const t0 = process.hrtime.bigint()
      const inst = pool.borrow()
      inst.invoke('transfer', input, host)
      pool.giveBack(inst)
      if (i >= 10_000) samples.push(Number(process.hrtime.bigint() - t0))
    }
    lines.push(`engine: borrow → invoke transfer (1 host call) → give back: ${fmt(percentiles(samples))} (n=${opts.calls})`)
    const borrowOnly: number[] = []
    for (let i = 0; i < opts.calls; i++) {
      const t0 = process.hrtime.bigint()
      pool.giveBack(pool.borrow())
      borrowOnly.push(Number(process.hrtime.bigint() - t0))
    }
    lines.push(`engine: borrow → give back alone: ${fmt(percentiles(borrowOnly))}`)
  } finally {
    engines.close()
    await rm(cacheDir, { recursive: true, force: true })
  }
  return lines
}

async function runnerLatency(): Promise<string[]> {
  const app = (await import(BANK_URL)).default as AppDef
  const provider = await openStorageProvider({ kind: 'mem' })
  const storage = await provider.appStorage(app.qname)
  const part = new PartitionState(storage, 0, { wsHeadsCachedMax: 1000, recordsCachedMax: 1000 })
  const wsid = 1
  const [from, to] = [70000, 70001]
  const rec = (name: string) => ({ q: 'bank.Account', a: true, f: { name, balance: OPENING_BALANCE } })
  part.applyCommitted(0, new Map([[wsid, { wo: 0, id: 80000 }]]), new Map([[recordKey(wsid, from), rec('a')], [recordKey(wsid, to), rec('b')]]))
  const cacheDir = await mkdtemp(join(tmpdir(), 'vvm-bench-wasm-'))
  const wasm = await WasmRunner.start([{ app, url: BANK_URL }], ['command'], { deadlineMs: 50, memoryBytesMax: 16 << 20, poolSize: 2, cacheDir })
  const builtin = new BuiltinRunner()
  const lines: string[] = []
  try {
    for (const [label, runner, qname] of [['builtin', builtin, 'bank.Transfer'], ['wasm', wasm, 'bank.TransferWasm']] as const) {
      const cmd = app.commands.get(qname)!
      const samples: number[] = []
      const n = Math.min(opts.calls, 100_000)
      for (let i = 0; i < n + 5000; i++) {
        const tx = new CommandTx(app, part, new Staging(), wsid)
        await tx.loadWorkspace()
        const t0 = process.hrtime.bigint()
        await runner.command(app, cmd, { from, to, amount: 1 }, tx)
        if (i >= 5000) samples.push(Number(process.hrtime.bigint() - t0))
      }
      lines.push(`runner, ${label.padEnd(7)} ${qname}: execute stage ${fmt(percentiles(samples))} (n=${n})`)
    }
  } finally {
    await wasm.close()
    await provider.close()
    await rm(cacheDir, { recursive: true, force: true })
  }
  return lines
}

// ---- part 2: the server ---------------------------------------------------------------------

interface Server {
  url: string
  pid: number
  stop(): Promise<void>
}

async function startServer(dataDir: string): Promise<Server> {
  const args = [join(ROOT, 'bin/vvm.js'), 'start', '--host', '127.0.0.1', '--port', '0', '--metrics-port', '0', '--log-level', 'warn',
    '--auth', 'off', '--data-dir', dataDir, '--storage', opts.storage, '--partitions', String(opts.partitions)]
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${out}`)), 30_000)
    proc.stdout!.on('data', () => {
      const m = /listening on (http:\/\/[^\s]+?:\d+)/.exec(out)
      if (m) { clearTimeout(timer); resolve(m[1]!) }
    })
    void exited.then(() => { clearTimeout(timer); reject(new Error(`the server exited:\n${out}`)) })
  })
  return { url, pid: proc.pid!, stop: async () => { proc.kill('SIGTERM'); await exited } }
}

/** utime + stime of all the server's threads, seconds (Linux /proc). */
function serverCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / 100 // USER_HZ is 100 on Linux
}

interface RunResult {
  qname: string
  perS: number
  cpuUsPerCommand: number
  latency: ReturnType<typeof percentiles>
}

async function runLoad(server: Server, clients: VvmClient[], accounts: number[][], qname: string, durationS: number): Promise<RunResult> {
  const samples: number[] = []
  let done = 0
  let errors = 0
  let running = true
  const cpu0 = serverCpuSeconds(server.pid)
  const t0 = performance.now()
  const one = async (client: VvmClient, seed: number): Promise<void> => {
    let i = seed
    while (running) {
      const w = (i = (i * 1103515245 + 12345) >>> 0) % accounts.length
      const [a, b] = accounts[w]!
      const flip = (i >>> 16) & 1
      const s = process.hrtime.bigint()
      try {
        await client.command(qname, { from: flip ? a : b, to: flip ? b : a, amount: 1 }, { wsid: 10_000 + w, idempotencyKey: false })
        if (running) {
          done++
          samples.push(Number(process.hrtime.bigint() - s))
        }
      } catch (err) {
        errors++
        if (errors === 1) console.error(`${qname}: ${(err as Error).message}`)
      }
    }
  }
  const loops = clients.flatMap((c, ci) => Array.from({ length: opts.pipeline }, (_, k) => one(c, ci * 1000 + k + 1)))
  await new Promise((r) => setTimeout(r, durationS * 1000))
  running = false
  const elapsedS = (performance.now() - t0) / 1000
  const cpu = serverCpuSeconds(server.pid) - cpu0
  await Promise.all(loops)
  if (errors > 0) throw new Error(`${qname}: ${errors} commands failed`)
  return { qname, perS: done / elapsedS, cpuUsPerCommand: (cpu * 1e6) / done, latency: percentiles(samples) }
}

async function serverThroughput(): Promise<string[]> {
  const dataDir = await mkdtemp(join(tmpdir(), 'vvm-bench-wasm-data-'))
  const server = await startServer(dataDir)
  const lines: string[] = []
  const clients: VvmClient[] = []
  try {
    const wsUrl = server.url.replace(/^http/, 'ws') + '/api/ws'
    for (let i = 0; i < opts.connections; i++) clients.push(await connect(wsUrl, { app: 'demo/bank', wsid: 10_000, timeoutMs: 60_000 }))
    const accounts: number[][] = []
    for (let w = 0; w < opts.workspaces; w++) {
      const ids: number[] = []
      for (const name of ['a', 'b']) ids.push((await clients[0]!.docs.create('bank.Account', { name, balance: OPENING_BALANCE }, { wsid: 10_000 + w })).newIDs['1']!)
      accounts.push(ids)
    }
    // Warm-up: JIT, caches (every account read once), group-commit steady state.
    for (const q of ['bank.Transfer', 'bank.TransferWasm']) await runLoad(server, clients, accounts, q, 1)
    const results = new Map<string, RunResult[]>()
    for (let r = 0; r < opts.rounds; r++) {
      for (const q of r % 2 === 0 ? ['bank.Transfer', 'bank.TransferWasm'] : ['bank.TransferWasm', 'bank.Transfer']) {
        const res = await runLoad(server, clients, accounts, q, opts.durationS)
        results.set(q, [...(results.get(q) ?? []), res])
        console.error(`  round ${r + 1} ${q}: ${Math.round(res.perS)}/s, ${us(res.cpuUsPerCommand)} µs server CPU per command`)
      }
    }
    const median = (rs: RunResult[]): RunResult => [...rs].sort((a, b) => a.perS - b.perS)[Math.floor(rs.length / 2)]!
    const b = median(results.get('bank.Transfer')!)
    const w = median(results.get('bank.TransferWasm')!)
    for (const x of [b, w]) {
      lines.push(`server, ${x.qname.padEnd(17)}: ${Math.round(x.perS)} commands/s (median of ${opts.rounds}), ${us(x.cpuUsPerCommand)} µs server CPU per command (closed-loop latency p50 ${us(x.latency.p50 / 1000)} ms, p99 ${us(x.latency.p99 / 1000)} ms)`)
    }
    lines.push(`server, WASM / builtin throughput: ${((100 * w.perS) / b.perS).toFixed(1)} % (target ≥ 70 %)`)
  } finally {
    for (const c of clients) await c.close()
    await server.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
  return lines
}

const lines = [...(await engineLatency()), ...(await runnerLatency()), ...(await serverThroughput())]
console.log(`wasm-vs-builtin: storage ${opts.storage}, ${opts.partitions} partitions, ${opts.connections} connections × ${opts.pipeline} in flight, ${opts.workspaces} workspaces, ${opts.rounds} rounds of ${opts.durationS} s`)
for (const l of lines) console.log(`  ${l}`)
