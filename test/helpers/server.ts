// Test servers: in-process (`startTestServer`) and as a child process (`spawnServer`, for
// crash tests with SIGKILL). Real sockets on 127.0.0.1, port 0, real LevelDB in a temp dir.

import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import { loadConfig } from '../../src/main/config.js'
import { startServer, type VvmServer } from '../../src/main/server.js'

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url))
export const VVM_BIN = join(REPO_ROOT, 'bin', 'vvm.js')

export async function tempDir(prefix = 'vvm-test-'): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix))
  return { path, remove: () => rm(path, { recursive: true, force: true }) }
}

export interface TestServer {
  server: VvmServer
  url: string
  dataDir: string
  /** `…/api/v2/apps/{app}/workspaces/{wsid}` */
  ws(wsid: number, app?: string): string
  close(): Promise<void>
}

/** Tests of other features run with `--auth off` unless they choose (`--auth on`: test/auth*.test.ts). */
const authOffUnlessGiven = (flags: readonly string[]): string[] => (flags.some((f) => f === '--auth' || f.startsWith('--auth=')) ? [] : ['--auth', 'off'])

export async function startTestServer(flags: string[] = [], dataDir?: string): Promise<TestServer> {
  const dir = dataDir ?? (await tempDir()).path
  const config = loadConfig(['--port', '0', '--metrics-port', '0', '--host', '127.0.0.1', '--data-dir', dir, ...authOffUnlessGiven(flags), ...flags], {})
  const server = await startServer(config, pino({ level: 'warn' }))
  const url = `http://127.0.0.1:${server.port}`
  return {
    server, url, dataDir: dir,
    ws: (wsid, app = 'demo/bank') => `${url}/api/v2/apps/${app}/workspaces/${wsid}`,
    close: async () => {
      await server.close()
      if (dataDir === undefined) await rm(dir, { recursive: true, force: true })
    },
  }
}

export interface Reply {
  status: number
  headers: Headers
  body: any
}

export async function http(method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const init: RequestInit = { method, headers: { 'content-type': 'application/json', ...headers } }
  if (body !== undefined) init.body = typeof body === 'string' || body instanceof Uint8Array ? (body as string) : JSON.stringify(body)
  const res = await fetch(url, init)
  const text = await res.text()
  let parsed: unknown = text
  try { parsed = JSON.parse(text) } catch { /* non-JSON bodies are returned as text */ }
  return { status: res.status, headers: res.headers, body: parsed }
}

/** Creates a bank.Account and returns its id. */
export async function createAccount(base: string, name = 'acc', balance = 0): Promise<number> {
  const r = await http('POST', `${base}/docs/bank.Account`, { name, balance })
  if (r.status !== 201) throw new Error(`create account: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.newIDs['1'] as number
}

export async function balanceOf(base: string, account: number): Promise<number> {
  const r = await http('GET', `${base}/queries/bank.Balance?args=${encodeURIComponent(JSON.stringify({ account }))}`)
  if (r.status !== 200) throw new Error(`balance: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.results[0].balance as number
}

export interface ChildServer {
  proc: ChildProcess
  url: string
  port: number
  metricsUrl: string
  exited: Promise<number | null>
  output(): string
}

/** Starts `vvm start` in a child process and resolves once it listens. */
export async function spawnServer(flags: string[], timeoutMs = 20_000, env: NodeJS.ProcessEnv = process.env, nodeFlags: readonly string[] = []): Promise<ChildServer> {
  const proc = spawn(process.execPath, [...nodeFlags, VVM_BIN, 'start', '--host', '127.0.0.1', '--port', '0', '--metrics-port', '0', '--log-level', 'warn', ...authOffUnlessGiven(flags), ...flags], { stdio: ['ignore', 'pipe', 'pipe'], env })
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  const [port, metricsPort] = await new Promise<[number, number]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in ${timeoutMs} ms:\n${out}`)), timeoutMs)
    const check = (): void => {
      const m = /listening on https?:\/\/[^:]+:(\d+).*metrics on port (\d+)/.exec(out)
      if (m) { clearTimeout(timer); resolve([Number(m[1]), Number(m[2])]) }
    }
    proc.stdout!.on('data', check)
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`server exited with ${code ?? `signal ${proc.signalCode}`} before listening:\n${out}`)) })
  })
  return { proc, port, url: `http://127.0.0.1:${port}`, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, exited, output: () => out }
}

/** One series of a Prometheus text scrape (0 when absent). */
export async function scrape(metricsUrl: string, series: string): Promise<number> {
  const text = await (await fetch(metricsUrl)).text()
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}
