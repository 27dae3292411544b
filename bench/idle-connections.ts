// Memory with idle WebSocket connections (PERFORMANCE.md: ≤ 300 MiB RSS with 10k), a step of
// the standard report: a fresh engine, its RSS once idle, then N binary-protocol connections
// opened from this process — each upgrades, sends HELLO and waits for WELCOME — left idle, the
// RSS again and the server's own count (`vvm_ws_connections`); then they are closed.
//
// The connections are plain `ws` sockets speaking the SDK's own frame encoders, not SDK
// clients: what the server holds per connection is the same, and the client side stays light
// (an SDK client keeps timers and per-call state; 10k of them would load this 2-core machine
// while its RSS is read). Every wait is bounded; a refused or dropped connection fails the step.

import WebSocket from 'ws'
import { decodeServerFrame, encodeHello, FrameType, PROTOCOL_VERSIONS } from '../src/shared/protocol/index.js'
import { fmtInt, type ProgressLine } from './report/progress.js'
import type { IdleConnectionsResult, TargetCheck } from './result.js'
import { startEngine, type EngineOptions } from './servers/engine.js'
import { openFilesLimit, rssKiB, scrape } from './servers/probe.js'

/** PERFORMANCE.md's size and bound. */
export const IDLE_CONNECTIONS_TARGET_COUNT = 10_000
const RSS_TARGET_KIB = 300 * 1024
/** The server's idle timeout during the step (`--ws-idle-timeout-s`): far beyond the step, so no connection is closed for idling. */
const SERVER_IDLE_TIMEOUT_S = 600
/** Upgrades in flight at once: opens 10k in seconds and stays well under the listen backlog. */
const HANDSHAKES_IN_FLIGHT = 128
/** Why 10 s: the server itself closes a connection that has not said HELLO after 10 s (docs/protocol.md). */
const HANDSHAKE_TIMEOUT_MS = 10_000
/** Opening them all takes seconds here; a step still opening after this is failed. */
const OPEN_TIMEOUT_MS = 180_000
/** After the start, before the first RSS reading: workers loaded, storage open, start-up garbage collected or not. */
const SETTLE_MS = 1000
/** How long the connections stay idle before the RSS is read. */
const IDLE_MS = 1000
const CLOSE_TIMEOUT_MS = 10_000
/** Open files besides one per connection, in this process and in the server (LevelDB files, worker pipes, the load worker's). */
const FD_MARGIN = 256
/**
 * Connections per loopback source address. One (source, destination) address pair has
 * ~28k ephemeral ports (ip_local_port_range 32768–60999), so 100k connections come from
 * 127.0.0.1, 127.0.0.2, … (all of 127/8 is local on Linux).
 */
const CONNECTIONS_PER_SOURCE_ADDRESS = 20_000

export interface IdleConnectionsOptions {
  engine: EngineOptions
  connectionsCount: number
  token: string | undefined
  progress: ProgressLine
}

/** A failure of the step with the reason the report shows; anything else thrown is a bug. */
class StepFailure extends Error {}

interface Welcome {
  version: number
  idleTimeoutS: number
}

export async function idleConnectionsStep(o: IdleConnectionsOptions): Promise<IdleConnectionsResult> {
  const n = o.connectionsCount
  const r: IdleConnectionsResult = {
    status: 'measured', reason: '', connectionsCount: n, openedCount: 0, protocolVersion: null, idleTimeoutS: null,
    rssBeforeKiB: null, rssWithKiB: null, perConnectionKiB: null, serverConnectionsCount: null, openMs: null, idleMs: IDLE_MS,
  }
  const fdsNeeded = n + FD_MARGIN
  const ownLimit = openFilesLimit('self')
  if (ownLimit !== undefined && ownLimit.soft < fdsNeeded) {
    const hard = ownLimit.hard < fdsNeeded ? `, its hard limit ${fmtInt(ownLimit.hard)} too (raising that needs root with CAP_SYS_RESOURCE)` : ` (hard limit ${fmtInt(ownLimit.hard)}: raise it with ulimit -n)`
    return { ...r, status: 'skipped', reason: `the open-files limit (ulimit -n) is ${fmtInt(ownLimit.soft)}${hard}; ${fmtInt(n)} connections need about ${fmtInt(fdsNeeded)} in the bench and in the server` }
  }
  // Later flags win: the step's idle timeout over one given with --server-arg.
  const server = await startEngine({ ...o.engine, extraArgs: [...o.engine.extraArgs, '--ws-idle-timeout-s', String(SERVER_IDLE_TIMEOUT_S)] })
  const pool = new ConnectionPool(server.url.replace(/^http/, 'ws') + '/api/ws', encodeHello(PROTOCOL_VERSIONS, o.token ?? null, { app: o.engine.app, client: 'vvm bench idle connections' }))
  try {
    const serverLimit = openFilesLimit(server.pid)
    if (serverLimit !== undefined && serverLimit.soft < fdsNeeded) {
      return { ...r, status: 'skipped', reason: `the server's open-files limit is ${fmtInt(serverLimit.soft)}; ${fmtInt(n)} connections need about ${fmtInt(fdsNeeded)}` }
    }
    await sleep(SETTLE_MS)
    r.rssBeforeKiB = rssKiB(server.pid).rss
    const startedMs = performance.now()
    const welcome = await pool.open(n, (done) => o.progress.setup(`${fmtInt(n)} idle WebSocket connections`, done, n))
    o.progress.clear()
    r.openMs = Math.round(performance.now() - startedMs)
    r.openedCount = pool.openCount
    r.protocolVersion = welcome.version
    r.idleTimeoutS = welcome.idleTimeoutS
    await sleep(IDLE_MS)
    pool.assertNoneLost()
    r.rssWithKiB = rssKiB(server.pid).rss
    r.perConnectionKiB = Math.round(((r.rssWithKiB - r.rssBeforeKiB) / n) * 100) / 100
    if (server.metricsUrl !== undefined) {
      r.serverConnectionsCount = (await scrape(server.metricsUrl))('vvm_ws_connections')
      if (r.serverConnectionsCount !== n) throw new StepFailure(`the server counts ${fmtInt(r.serverConnectionsCount)} connections (vvm_ws_connections) where the bench holds ${fmtInt(n)}`)
    }
    pool.assertNoneLost()
    return r
  } catch (err) {
    o.progress.clear()
    if (!(err instanceof StepFailure)) throw err
    return { ...r, openedCount: pool.openCount, status: 'failed', reason: err.message }
  } finally {
    await pool.closeAll()
    await server.stop()
  }
}

/** The loopback address connection `i` comes from: 127.0.0.1 for the first 20,000, then 127.0.0.2, … */
export function sourceAddressOf(i: number): string {
  const k = 1 + Math.floor(i / CONNECTIONS_PER_SOURCE_ADDRESS)
  return `127.${(k >> 16) & 0xff}.${(k >> 8) & 0xff}.${k & 0xff}`
}

/** The step's connections: opened with a bounded number of handshakes in flight, watched while idle, closed. */
class ConnectionPool {
  private readonly sockets: WebSocket[] = []
  private closing = false
  private lost = 0
  private firstLoss = ''

  constructor(private readonly url: string, private readonly hello: Uint8Array) {}

  get openCount(): number {
    return this.sockets.length
  }

  /** Opens `count` connections; the first that fails (or the overall deadline) fails the step. */
  async open(count: number, progress: (done: number) => void): Promise<Welcome> {
    let next = 0
    let failure: string | undefined
    let welcome: Welcome | undefined
    const deadlineMs = performance.now() + OPEN_TIMEOUT_MS
    const opener = async (): Promise<void> => {
      while (failure === undefined && next < count) {
        if (performance.now() > deadlineMs) {
          failure = `${fmtInt(this.sockets.length)} of ${fmtInt(count)} connections opened in ${OPEN_TIMEOUT_MS / 1000} s`
          return
        }
        const i = next++
        try {
          const w = await this.openOne(sourceAddressOf(i))
          welcome ??= w
          if (w.version !== welcome.version) failure = `connection ${i + 1}: WELCOME version ${w.version}, the first had ${welcome.version}`
          progress(this.sockets.length)
        } catch (err) {
          failure ??= `connection ${fmtInt(i + 1)} of ${fmtInt(count)} failed (${fmtInt(this.sockets.length)} open): ${(err as Error).message}`
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(HANDSHAKES_IN_FLIGHT, count) }, opener))
    if (failure !== undefined) throw new StepFailure(failure)
    this.assertNoneLost()
    return welcome!
  }

  /** One connection: upgrade, HELLO, WELCOME (checked as the SDK checks it). */
  private openOne(localAddress: string): Promise<Welcome> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, { handshakeTimeout: HANDSHAKE_TIMEOUT_MS, localAddress })
      let settled = false
      const settle = (err: Error | undefined, w?: Welcome): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (err !== undefined) {
          ws.terminate()
          reject(err)
          return
        }
        // From here on a close is a loss, unless the step is closing them.
        ws.removeAllListeners()
        ws.on('error', () => { /* a 'close' follows every 'error': counted there */ })
        ws.on('close', (code, reason) => this.onClose(code, reason.toString()))
        this.sockets.push(ws)
        resolve(w!)
      }
      const timer = setTimeout(() => settle(new Error(`no WELCOME within ${HANDSHAKE_TIMEOUT_MS} ms`)), HANDSHAKE_TIMEOUT_MS)
      ws.on('open', () => ws.send(this.hello))
      ws.on('message', (data, isBinary) => {
        if (!isBinary) return settle(new Error('the server answered HELLO with a text message'))
        try {
          const f = decodeServerFrame(new Uint8Array(data as Buffer))
          if (f.type !== FrameType.WELCOME) return settle(new Error(`the server answered HELLO with frame type ${String(f.type)}, not WELCOME`))
          if (!PROTOCOL_VERSIONS.includes(f.version)) return settle(new Error(`WELCOME chose version ${f.version}, which HELLO did not offer`))
          settle(undefined, { version: f.version, idleTimeoutS: f.limits.idleTimeoutS })
        } catch (err) {
          settle(new Error(`a bad WELCOME: ${(err as Error).message}`))
        }
      })
      ws.on('error', (err) => settle(err))
      ws.on('close', (code, reason) => settle(new Error(`closed before WELCOME (${code}${reason.length > 0 ? ` ${reason.toString()}` : ''})`)))
    })
  }

  private onClose(code: number, reason: string): void {
    if (this.closing) return
    if (this.lost++ === 0) this.firstLoss = `${code}${reason === '' ? '' : ` ${reason}`}`
  }

  assertNoneLost(): void {
    if (this.lost > 0) throw new StepFailure(`${fmtInt(this.lost)} idle connections were closed by the server (the first: ${this.firstLoss})`)
  }

  /** A close handshake for each, bounded; whatever has not closed by then is dropped. */
  async closeAll(): Promise<void> {
    this.closing = true
    const closed = this.sockets.map((ws) => new Promise<void>((resolve) => {
      if (ws.readyState === WebSocket.CLOSED) return resolve()
      ws.once('close', () => resolve())
      ws.close(1000, 'bench step done')
    }))
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.all(closed), new Promise((resolve) => { timer = setTimeout(resolve, CLOSE_TIMEOUT_MS) })])
    clearTimeout(timer)
    for (const ws of this.sockets) if (ws.readyState !== WebSocket.CLOSED) ws.terminate()
    this.sockets.length = 0
  }
}

/** The PERFORMANCE.md row: a verdict only at the target's size. */
export function idleConnectionsTarget(r: IdleConnectionsResult | undefined): TargetCheck {
  const check = { figure: 'memory with 10k idle WebSocket connections', target: '≤ 300 MiB RSS' }
  if (r === undefined) return { ...check, measured: 'not measured', met: null }
  if (r.status === 'skipped') return { ...check, measured: `not measured: ${r.reason}`, met: null }
  if (r.status === 'failed' || r.rssWithKiB === null || r.rssBeforeKiB === null) return { ...check, measured: `failed: ${r.reason}`, met: false }
  const measured = `${fmtMiB(r.rssWithKiB)} MiB with ${fmtInt(r.connectionsCount)} idle connections (${fmtMiB(r.rssBeforeKiB)} MiB before; ${r.perConnectionKiB!.toFixed(1)} KiB each)`
  if (r.connectionsCount < IDLE_CONNECTIONS_TARGET_COUNT) return { ...check, measured, met: null, noVerdict: `no verdict: ${fmtInt(r.connectionsCount)} connections, not ${fmtInt(IDLE_CONNECTIONS_TARGET_COUNT)}` }
  return { ...check, measured, met: r.rssWithKiB <= RSS_TARGET_KIB }
}

export const fmtMiB = (kib: number): string => (kib / 1024).toFixed(1)

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
