// HTTPS test helpers: Pebble (scripts/pebble.sh) on free ports, an HTTPS client that verifies
// against a given CA and reports the peer certificate and the connection it used, self-signed
// certificates from the openssl CLI, and a test server whose log lines are kept.

import { execFileSync, spawnSync } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { readFileSync, rmSync } from 'node:fs'
import https from 'node:https'
import { createServer } from 'node:net'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { loadConfig } from '../../src/main/config.js'
import { startServer, type VvmServer } from '../../src/main/server.js'
import { REPO_ROOT, tempDir } from './server.js'

export const PEBBLE_SCRIPT = join(REPO_ROOT, 'scripts', 'pebble.sh')

/** A TCP port free now on 127.0.0.1 (another process may take it before it is used: tests only). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

/** A port free for both TCP and UDP (Pebble's DNS server binds both). */
async function freeTcpUdpPort(): Promise<number> {
  for (;;) {
    const port = await freePort()
    const ok = await new Promise<boolean>((resolve) => {
      const u = createSocket('udp4')
      u.once('error', () => resolve(false))
      u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)))
    })
    if (ok) return port
  }
}

/**
 * Why Pebble cannot run here, or undefined when it can (installing it on first use, ~30 s).
 * In CI (CI set) a missing Pebble is a failure, not a skip: .ci/run installs it.
 */
export function pebbleUnavailable(): string | undefined {
  if (process.env.CI) return undefined
  const r = spawnSync('bash', [PEBBLE_SCRIPT, 'install'], { encoding: 'utf8' })
  return r.status === 0 ? undefined : `Pebble cannot be installed (bash scripts/pebble.sh install: ${r.stderr.trim().split('\n').at(-1)})`
}

export interface Pebble {
  directoryUrl: string
  /** The CA of Pebble's own HTTPS (directory, management). */
  minicaFile: string
  /** The root CA of the certificates Pebble issues, from its management endpoint. */
  rootPem: string
  dir: string
  stop(): void
  /** The tail of Pebble's log (for failure messages). */
  log(): string
}

/** Starts Pebble validating HTTP-01 against `httpPort` on 127.0.0.1; certificates live `validityS`. */
export async function startPebble(o: { httpPort: number; validityS: number }): Promise<Pebble> {
  const dir = (await tempDir('vvm-pebble-')).path
  const port = await freePort()
  const managementPort = await freePort()
  const env = {
    ...process.env,
    VVM_PEBBLE_DIR: dir, VVM_PEBBLE_PORT: String(port), VVM_PEBBLE_MANAGEMENT_PORT: String(managementPort),
    VVM_PEBBLE_DNS_PORT: String(await freeTcpUdpPort()), VVM_PEBBLE_DNS_MANAGEMENT_PORT: String(await freePort()),
    VVM_PEBBLE_HTTP_PORT: String(o.httpPort), VVM_PEBBLE_VALIDITY_S: String(o.validityS),
  }
  execFileSync('bash', [PEBBLE_SCRIPT, 'start'], { env, stdio: ['ignore', 'inherit', 'inherit'] })
  const minicaFile = join(dir, 'pebble.minica.pem')
  const stop = (): void => {
    spawnSync('bash', [PEBBLE_SCRIPT, 'stop'], { env, stdio: 'inherit' })
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const root = await httpsRequest({ url: `https://127.0.0.1:${managementPort}/roots/0`, ca: readFileSync(minicaFile, 'utf8') })
    if (root.status !== 200) throw new Error(`pebble root: ${root.status}`)
    return {
      directoryUrl: `https://127.0.0.1:${port}/dir`, minicaFile, rootPem: root.body, dir, stop,
      log: () => spawnSync('bash', [PEBBLE_SCRIPT, 'log'], { env, encoding: 'utf8' }).stderr,
    }
  } catch (err) {
    stop()
    throw err
  }
}

export interface HttpsReply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
  /** The server certificate's serial and DNS names, and the client port of the connection. */
  serial: string
  names: string[]
  localPort: number
}

/**
 * One HTTPS request to 127.0.0.1 for `servername` (SNI and Host), verified against `ca`. With a
 * keep-alive `agent` of one socket, consecutive requests share a connection (see localPort).
 */
export function httpsRequest(o: {
  url: string; ca: string; servername?: string; method?: string; body?: string; agent?: https.Agent; headers?: Record<string, string>
}): Promise<HttpsReply> {
  const u = new URL(o.url)
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port: Number(u.port), path: u.pathname + u.search, method: o.method ?? 'GET', ca: o.ca,
      servername: o.servername, agent: o.agent ?? false,
      headers: { ...(o.servername === undefined ? {} : { host: o.servername }), ...(o.body === undefined ? {} : { 'content-type': 'application/json' }), ...o.headers },
    }, (res) => {
      const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate()
      const localPort = res.socket.localPort ?? 0
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve({
        status: res.statusCode ?? 0, headers: res.headers, body, serial: cert.serialNumber, localPort,
        names: (cert.subjectaltname ?? '').split(',').map((s) => s.trim()).filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4)),
      }))
    })
    req.on('error', reject)
    req.end(o.body)
  })
}

/** A self-signed certificate for `names` from the openssl CLI; undefined when there is none. */
export function selfSignedCert(dir: string, names: string[], days = 2): { certFile: string; keyFile: string; pem: string } | undefined {
  if (spawnSync('openssl', ['version']).status !== 0) return undefined
  const certFile = join(dir, `${names[0]}.crt`)
  const keyFile = join(dir, `${names[0]}.key`)
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile,
    '-days', String(days), '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
  ], { stdio: 'ignore' })
  return { certFile, keyFile, pem: readFileSync(certFile, 'utf8') }
}

export interface LoggedServer {
  server: VvmServer
  dataDir: string
  /** Log records so far (pino JSON lines, parsed). */
  logs: { level: number; msg: string; [k: string]: unknown }[]
  close(): Promise<void>
}

/** startTestServer with a log that the test can read (level info). */
export async function startLoggedServer(flags: string[], dataDir?: string): Promise<LoggedServer> {
  const dir = dataDir ?? (await tempDir()).path
  const config = loadConfig(['--port', '0', '--metrics-port', '0', '--host', '127.0.0.1', '--data-dir', dir, '--auth', 'off', ...flags], {})
  const logs: LoggedServer['logs'] = []
  const sink = new Writable({ write(chunk: Buffer, _enc, done) { for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line)); done() } })
  const server = await startServer(config, pino({ level: 'info' }, sink))
  let closing: Promise<void> | undefined
  const close = async (): Promise<void> => {
    await server.close()
    if (dataDir === undefined) await rm(dir, { recursive: true, force: true })
  }
  return { server, dataDir: dir, logs, close: () => (closing ??= close()) }
}

/** One series of the server's /metrics (undefined when absent). */
export async function metric(server: VvmServer, series: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

/** Polls `check` until it returns a value (not undefined) or `timeoutMs` passes. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await check()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
