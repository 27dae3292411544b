// The binary protocol (docs/protocol.md) at `/api/ws` on the main uWS app: hello, requests
// with client-chosen ids answered in any order, ping, re-auth, and the limits of a connection.
// Requests become the same EngineRequests as HTTP ones (format MSGPACK, body already decoded),
// are authenticated by the same Authenticator (the connection's token, from HELLO or AUTH, in
// place of the Authorization header) and go through the same Dispatcher, so statuses and codes
// are the HTTP ones.
//
// Bounds of one connection, each with one answer:
//   frame > frameBytesMax                    → close 1009
//   requests in flight = inflightMax         → reply 503 BUSY
//   replies buffered > bufferedBytesMax / 2  → new requests get 503 BUSY (throttle)
//   replies buffered > bufferedBytesMax      → close 4008 (slow reader)
//   no frame for idleTimeoutS, none in flight → close 4010
// Replies are gathered per connection and written once per burst inside `cork`.
//
// The fan-out of a push to many connections is spread over ticks (DEFERRED_PUSHES_PER_TICK),
// so that one popular group does not hold every other reply; a connection's own reply sends
// its deferred pushes first, which keeps "a batch's diffs before its replies" per connection.
//
// This file: the options, the server (upgrade, frames, requests, sweeps). One connection (its
// replies, pushes and buffer bound): ws-connection.ts. Subscriptions (version 2,
// docs/subscriptions.md): ws-subscriptions.ts.

import assert from 'node:assert/strict'
import type { TemplatedApp } from 'uWebSockets.js'
import type { Logger } from 'pino'
import type { AppDef } from '../shared/appdef/types.js'
import { Op, ReplyFormat, type EngineRequest, type OpCode } from '../shared/engine-messages.js'
import { BadRequestError, BusyError, NotFoundError, VvmError, toVvmError } from '../shared/errors.js'
import {
  CloseCode, FrameError, FrameType, HELLO_TIMEOUT_MS, OP_SINCE_VERSION, PROTOCOL_VERSIONS, WIRE_OP_NAMES, WireOp,
  decodeClientFrame, encodePong, encodeReply, encodeWelcome, packValue, unpackFrame, type ServerLimits, type WireRequest,
} from '../shared/protocol/index.js'
import { renderError } from '../shared/reply.js'
import type { Authenticator, Caller } from './auth/authenticator.js'
import type { Dispatcher } from './dispatcher.js'
import type { ServerMetrics } from './metrics.js'
import { Connection, WsSink, type UserData } from './ws-connection.js'
import { SubscribeSink, type WsSubscriptionOptions } from './ws-subscriptions.js'

export type { WsSubscriptionOptions } from './ws-subscriptions.js'

export const WS_PATH = '/api/ws'

// The wire ops are the engine ops: one table of numbers, checked once at load.
assert.deepEqual(
  [WireOp.COMMAND, WireOp.DOC_CREATE, WireOp.DOC_UPDATE, WireOp.DOC_DEACTIVATE, WireOp.QUERY, WireOp.DOC_GET, WireOp.CDOCS, WireOp.VIEW, WireOp.SUBSCRIBE, WireOp.UNSUBSCRIBE],
  [Op.COMMAND, Op.DOC_CREATE, Op.DOC_UPDATE, Op.DOC_DEACTIVATE, Op.QUERY, Op.DOC_GET, Op.CDOCS, Op.VIEW, Op.SUBSCRIBE, Op.UNSUBSCRIBE],
)

/** Which definition map an op's qname must be in. */
const OP_KIND: Readonly<Record<number, 'command' | 'query' | 'table' | 'view' | 'table, view or query'>> = {
  [Op.COMMAND]: 'command', [Op.DOC_CREATE]: 'table', [Op.DOC_UPDATE]: 'table', [Op.DOC_DEACTIVATE]: 'table',
  [Op.QUERY]: 'query', [Op.DOC_GET]: 'table', [Op.CDOCS]: 'table', [Op.VIEW]: 'view', [Op.SUBSCRIBE]: 'table, view or query',
}

/** Why 4096: about 5 ms of pushes at ~1.5 µs each; replies to other connections wait at most that long. */
const DEFERRED_PUSHES_PER_TICK = 4096
/** Why 1 s: idle and hello deadlines are whole seconds; one sweep of all connections per second is cheap. */
const SWEEP_INTERVAL_MS = 1000
/**
 * uWS drops (does not queue) a send once its buffer passes maxBackpressure. Replies must never
 * be dropped silently, so uWS's bound is set far above ours and ours is checked after each send.
 */
const UWS_BACKPRESSURE_BYTES = 1024 * 1024 * 1024

export interface WsApiOptions {
  apps: ReadonlyMap<string, AppDef>
  dispatcher: Dispatcher
  /** False while starting or shutting down: requests get 503 SHUTTING_DOWN. */
  serving: () => boolean
  frameBytesMax: number
  inflightMax: number
  bufferedBytesMax: number
  /** 0: connections are never closed for idleness. */
  idleTimeoutS: number
  idempotencyKeyBytesMax: number
  /** Without one, requests get the Dispatcher's default principal. */
  auth?: Authenticator
  metrics?: ServerMetrics
  log?: Logger
  /** Without it, SUBSCRIBE is answered 400. */
  subscriptions?: WsSubscriptionOptions
}

export interface WsApiStats {
  connections: number
  requestsInFlight: number
  /** Connections closed for each close code the server chose (4008, 4010, 1009, …). */
  closedByServer: Record<number, number>
  /** Changed rows held back for subscribers that do not read (coalesced diffs). */
  subscriptionPendingOps: number
}

export interface WsApi {
  /** The server is stopping: every connection gets close 1001 after the replies already written. */
  goingAway(): void
  stats(): WsApiStats
}

export class WsServer implements WsApi {
  readonly connections = new Set<Connection>()
  inflightTotal = 0
  readonly limits: ServerLimits
  /** Version 2 adds the subscription bounds. */
  readonly limitsV2: ServerLimits
  readonly log: Logger | undefined
  private readonly closedByServer: Record<number, number> = {}
  /** Connections with deferred pushes, in the order they got them. */
  private readonly deferredConns = new Set<Connection>()
  private deferredScheduled = false
  private readonly drainDeferredBound = (): void => this.drainDeferred()
  private sweepTimer: NodeJS.Timeout | undefined
  private stopping = false

  constructor(readonly o: WsApiOptions) {
    this.log = o.log
    this.limits = {
      frameBytesMax: o.frameBytesMax, inflightMax: o.inflightMax, bufferedBytesMax: o.bufferedBytesMax,
      idleTimeoutS: o.idleTimeoutS, idempotencyKeyBytesMax: o.idempotencyKeyBytesMax,
    }
    this.limitsV2 = {
      ...this.limits,
      subscriptionsMax: o.subscriptions?.perConnectionMax ?? 0,
      subscriptionPendingOpsMax: o.subscriptions?.pendingOpsMax ?? 0,
    }
  }

  register(app: TemplatedApp): void {
    app.ws<UserData>(WS_PATH, {
      // Frames up to twice the limit are still read, so that the answer is a close 1009 with a
      // reason; uWS itself drops larger ones without a close frame (the client sees 1006).
      maxPayloadLength: this.o.frameBytesMax * 2,
      maxBackpressure: UWS_BACKPRESSURE_BYTES,
      closeOnBackpressureLimit: false,
      // Idleness is judged here (frames from the client, requests in flight), not by uWS, so that
      // the close carries code 4010; uWS would drop the socket without a close frame.
      idleTimeout: 0,
      sendPingsAutomatically: false,
      upgrade: (res, req, context) => {
        if (this.stopping) {
          res.cork(() => res.writeStatus('503 Service Unavailable').writeHeader('retry-after', '1').end('the server is stopping'))
          return
        }
        const address = Buffer.from(res.getRemoteAddressAsText()).toString()
        // No subprotocol is chosen: the version is negotiated by HELLO.
        res.upgrade<UserData>(
          { conn: new Connection(this, address) },
          req.getHeader('sec-websocket-key'), '', req.getHeader('sec-websocket-extensions'), context,
        )
      },
      open: (ws) => {
        const c = ws.getUserData().conn
        c.ws = ws
        this.connections.add(c)
        this.startSweep()
      },
      message: (ws, message, isBinary) => this.onMessage(ws.getUserData().conn, message, isBinary),
      drain: (ws) => ws.getUserData().conn.onDrain(),
      close: (ws) => {
        const c = ws.getUserData().conn
        c.closed = true
        c.ws = undefined
        this.connections.delete(c)
        c.releaseSubscriptions()
        // Replies still due are counted down as they arrive and then dropped.
        if (this.connections.size === 0) this.stopSweep()
      },
    })
  }

  scheduleDeferred(c: Connection): void {
    this.deferredConns.add(c)
    if (this.deferredScheduled) return
    this.deferredScheduled = true
    setImmediate(this.drainDeferredBound)
  }

  /**
   * The fan-out of pushes, DEFERRED_PUSHES_PER_TICK at a time: a group with many subscribers
   * does not hold the main thread for all of them at once, so replies to other connections go
   * out between the chunks (a connection's own replies send its deferred pushes first).
   */
  private drainDeferred(): void {
    this.deferredScheduled = false
    let budget = DEFERRED_PUSHES_PER_TICK
    for (const c of this.deferredConns) {
      if (budget <= 0) break
      budget -= c.sendDeferred(budget)
      if (!c.hasDeferred) this.deferredConns.delete(c)
    }
    if (this.deferredConns.size > 0) {
      this.deferredScheduled = true
      setImmediate(this.drainDeferredBound)
    }
  }

  private onMessage(c: Connection, message: ArrayBuffer, isBinary: boolean): void {
    if (c.closed) return
    c.lastFrameMs = Date.now()
    if (!isBinary) return c.end(CloseCode.UNSUPPORTED_DATA, 'text frames are not accepted: frames are binary MessagePack')
    if (message.byteLength > this.o.frameBytesMax) {
      return c.end(CloseCode.TOO_BIG, `frame of ${message.byteLength} bytes exceeds frameBytesMax ${this.o.frameBytesMax}`)
    }
    let frame
    try {
      frame = decodeClientFrame(new Uint8Array(message))
    } catch (err) {
      if (!c.helloDone) return c.end(CloseCode.HELLO_EXPECTED, `hello expected: ${(err as Error).message}`)
      return this.replyError(c, err instanceof FrameError ? err.reqId : 0, 'frame', new BadRequestError((err as Error).message), err)
    }
    if (c.helloPending) return c.end(CloseCode.HELLO_EXPECTED, 'a frame before WELCOME: send requests once WELCOME has arrived')
    if (!c.helloDone) {
      if (frame.type !== FrameType.HELLO) return c.end(CloseCode.HELLO_EXPECTED, `hello expected: the first frame must be HELLO (1), not ${frame.type}`)
      const version = Math.max(...frame.versions.filter((v) => PROTOCOL_VERSIONS.includes(v)))
      if (!Number.isFinite(version)) {
        return c.end(CloseCode.VERSION_UNSUPPORTED, `no common protocol version: the server speaks ${PROTOCOL_VERSIONS.join(', ')}`)
      }
      c.token = frame.token ?? undefined
      const welcome = (): void => {
        c.helloPending = false
        c.helloDone = true
        c.version = version
        c.sendNow(encodeWelcome(version, version >= 2 ? this.limitsV2 : this.limits, {}))
      }
      // A hello that names its app has its token checked now (close 4401); otherwise the token
      // is checked with each request's app, as HTTP checks its Authorization header.
      const app = frame.options.app
      const auth = this.o.auth
      if (auth === undefined || !auth.enabled || c.token === undefined || typeof app !== 'string') return welcome()
      c.helloPending = true
      auth.authenticate(c.token, app).then(welcome, (err: unknown) => {
        c.end(CloseCode.UNAUTHORIZED, `unauthorized: ${toVvmError(err).message}`)
      })
      return
    }
    switch (frame.type) {
      case FrameType.HELLO:
        return this.replyError(c, 0, 'frame', new BadRequestError('HELLO was already received on this connection'))
      case FrameType.PING:
        c.sendNow(encodePong(frame.pingId, Date.now()))
        return
      case FrameType.REQUEST:
        return this.onRequest(c, frame)
      case FrameType.AUTH:
        return this.onAuth(c, frame.reqId, frame.token ?? undefined, frame.options.app)
    }
  }

  /** Re-auth: the connection's token is replaced once it is verified (when the frame names the app). */
  private onAuth(c: Connection, reqId: number, token: string | undefined, app: unknown): void {
    const auth = this.o.auth
    const ok = (): void => {
      c.token = token
      this.record('ws.auth', 200, performance.now(), undefined)
      c.sendNow(encodeReply(reqId, 200, 0, packValue({})))
    }
    if (auth === undefined || !auth.enabled || token === undefined || typeof app !== 'string') return ok()
    auth.authenticate(token, app).then(ok, (err: unknown) => this.replyError(c, reqId, 'ws.auth', err))
  }

  private onRequest(c: Connection, r: WireRequest): void {
    const route = `ws.${WIRE_OP_NAMES[r.op]}`
    const startedMs = performance.now()
    const since = OP_SINCE_VERSION[r.op]
    if (since !== undefined && (c.version < since || this.o.subscriptions === undefined)) {
      return this.replyError(c, r.reqId, route, new BadRequestError(`op ${WIRE_OP_NAMES[r.op]} is served from protocol version ${since}; this connection speaks ${c.version}`))
    }
    if (r.op === WireOp.UNSUBSCRIBE) return this.onUnsubscribe(c, r, route)
    if (c.inflight.has(r.reqId)) {
      // Answered on id 0: a reply on the duplicate's id would be taken for the first request's.
      return this.replyError(c, 0, route, new VvmError('BAD_REQUEST', `request id ${r.reqId} is already in flight on this connection`, { data: { reqId: r.reqId } }))
    }
    if (c.inflight.size >= this.o.inflightMax) {
      return this.replyError(c, r.reqId, route, new BusyError(`${this.o.inflightMax} requests are in flight on this connection (inflightMax)`))
    }
    if (c.ws!.getBufferedAmount() > this.o.bufferedBytesMax / 2) {
      return this.replyError(c, r.reqId, route, new BusyError(`more than ${this.o.bufferedBytesMax / 2} bytes of replies wait to be read: read them first`))
    }
    let request: EngineRequest
    let caller: Caller | Promise<Caller> | undefined
    let sink: WsSink
    try {
      request = this.toEngineRequest(r)
      if (!this.o.serving()) throw new VvmError('SHUTTING_DOWN', 'the server is not serving now', { retryAfterS: 1 })
      caller = this.o.auth?.authenticateNow(c.token, r.app)
      if (!(caller instanceof Promise)) this.admit(c, request, caller)
      sink = r.op === WireOp.SUBSCRIBE ? this.subscribeSink(c, r, route, startedMs) : new WsSink(c, r.reqId, route, startedMs)
    } catch (err) {
      return this.replyError(c, r.reqId, route, err)
    }
    c.inflight.set(r.reqId, sink)
    this.inflightTotal++
    const expiry = (cl: Caller | undefined): void => {
      if (!(sink instanceof SubscribeSink)) return
      sink.expiresAtMs = cl?.expiresAtMs ?? Infinity
      sink.login = cl?.login ?? ''
    }
    if (!(caller instanceof Promise)) {
      expiry(caller)
      return this.submit(request, sink)
    }
    // A token not seen before (or forgotten) is verified once, off this callback; the request
    // holds its id meanwhile.
    caller.then((cl) => {
      this.admit(c, request, cl)
      expiry(cl)
      this.submit(request, sink)
    }).catch((err: unknown) => this.failSink(sink, err))
  }

  /** Takes a place for one more subscription (429 per connection, 503 per server); the sink gives it back or uses it. */
  private subscribeSink(c: Connection, r: WireRequest, route: string, startedMs: number): SubscribeSink {
    const so = this.o.subscriptions!
    if (c.subs.size + c.subscribing >= so.perConnectionMax) {
      throw new VvmError('SUBSCRIPTIONS_LIMIT', `this connection has ${so.perConnectionMax} subscriptions (subscriptionsPerConnectionMax): unsubscribe some first`)
    }
    so.hub.reserve()
    c.subscribing++
    return new SubscribeSink(c, r.reqId, route, startedMs, r.app, so.partitionOf(r.app, r.wsid), so)
  }

  /** UNSUBSCRIBE: docId names the subscription; no push of it follows the reply. */
  private onUnsubscribe(c: Connection, r: WireRequest, route: string): void {
    const sub = c.subs.get(r.docId)
    if (sub === undefined) return this.replyError(c, r.reqId, route, new NotFoundError(`subscription ${r.docId} is not active on this connection`))
    c.endSubscription(sub, undefined)
    this.record(route, 200, performance.now(), undefined)
    c.sendNow(encodeReply(r.reqId, 200, 0, packValue({})))
  }

  /** Principal (401) and rate (429), as HTTP does them. */
  private admit(c: Connection, request: EngineRequest, caller: Caller | undefined): void {
    if (caller !== undefined) request.principal = this.o.auth!.principalFor(caller, request)
    this.o.dispatcher.checkRate(request, c.address)
  }

  private submit(request: EngineRequest, sink: WsSink): void {
    try {
      this.o.dispatcher.submit(request, sink)
    } catch (err) {
      this.failSink(sink, err)
    }
  }

  private failSink(sink: WsSink, err: unknown): void {
    const e = toVvmError(err)
    if (e.code === 'INTERNAL') this.log?.error({ err }, 'ws: submit failed')
    sink.reply(e.status, renderError(ReplyFormat.MSGPACK, e), e.retryAfterS ?? 0)
  }

  private toEngineRequest(r: WireRequest): EngineRequest {
    const def = this.o.apps.get(r.app)
    if (def === undefined) throw new NotFoundError(`app ${r.app} is not deployed`)
    const kind = OP_KIND[r.op]!
    const known = kind === 'command' ? def.commands.has(r.qname) : kind === 'query' ? def.queries.has(r.qname) : kind === 'table' ? def.tables.has(r.qname)
      : kind === 'view' ? def.views.has(r.qname) : def.tables.has(r.qname) || def.views.has(r.qname) || def.queries.has(r.qname)
    if (!known) throw new NotFoundError(`${kind} ${r.qname} is not defined in app ${r.app}`, r.qname)
    if (r.idempotencyKey !== null && r.idempotencyKey.length > this.o.idempotencyKeyBytesMax) {
      throw new BadRequestError(`the idempotency key must be 1..${this.o.idempotencyKeyBytesMax} printable ASCII characters`)
    }
    return {
      reqId: 0, op: r.op as OpCode, format: ReplyFormat.MSGPACK, app: r.app, wsid: r.wsid, qname: r.qname, id: r.docId,
      idempotencyKey: r.idempotencyKey, body: r.body ?? undefined, params: r.params,
    }
  }

  /** An error answered by this layer, at once (we are inside a uWS callback: corked already). */
  private replyError(c: Connection, reqId: number, route: string, err: unknown, cause?: unknown): void {
    const e = toVvmError(err)
    if (e.code === 'INTERNAL') this.log?.error({ err: cause ?? err }, 'ws: internal error')
    this.record(route, e.status, performance.now(), undefined, e.code)
    c.sendNow(encodeReply(reqId, e.status, e.retryAfterS ?? 0, renderError(ReplyFormat.MSGPACK, e)))
  }

  record(route: string, status: number, startedMs: number, body: Uint8Array | undefined, code?: string): void {
    const m = this.o.metrics
    if (m === undefined) return
    m.recordReply(route, status, startedMs)
    if (status >= 400) m.errors.inc({ code: code ?? errorCodeOf(body) })
  }

  countClose(code: number): void {
    this.closedByServer[code] = (this.closedByServer[code] ?? 0) + 1
  }

  private startSweep(): void {
    if (this.sweepTimer !== undefined) return
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS)
    this.sweepTimer.unref()
  }

  private stopSweep(): void {
    clearInterval(this.sweepTimer)
    this.sweepTimer = undefined
  }

  private sweep(): void {
    const now = Date.now()
    const idleMs = this.o.idleTimeoutS * 1000
    // A short idle timeout shortens the wait for HELLO too: a socket that says nothing is idle.
    const helloMs = idleMs > 0 ? Math.min(HELLO_TIMEOUT_MS, idleMs) : HELLO_TIMEOUT_MS
    for (const c of this.connections) {
      if (c.subs.size > 0) this.checkSubscriptionTokens(c, now)
      if (!c.helloDone) {
        if (now - c.openedMs > helloMs) c.end(CloseCode.HELLO_TIMEOUT, `no HELLO within ${helloMs} ms`)
      } else if (idleMs > 0 && c.inflight.size === 0 && now - c.lastFrameMs > idleMs) {
        c.end(CloseCode.IDLE_TIMEOUT, `idle for ${this.o.idleTimeoutS} s`)
      }
    }
  }

  /**
   * A subscription whose token has expired lives on if the connection's current token (AUTH may
   * have replaced it) is a valid token of the same login for its app; otherwise it ends with
   * TOKEN_EXPIRED. (Its rights are those it was made with; a token with other roles: subscribe again.)
   */
  private checkSubscriptionTokens(c: Connection, now: number): void {
    const auth = this.o.auth
    const gone = (): VvmError => new VvmError('TOKEN_EXPIRED', 'the token of this subscription has expired and the connection has no newer token of the same login: subscribe again')
    for (const sub of [...c.subs.values()]) {
      if (sub.expiresAtMs > now) continue
      sub.expiresAtMs = Infinity
      const expired = (err: unknown): void => c.endSubscription(sub, toVvmError(err))
      const renewed = (cl: Caller | undefined): void => {
        if (cl === undefined || cl.kind !== 'token' || cl.login !== sub.login || cl.expiresAtMs <= now) return expired(gone())
        sub.expiresAtMs = cl.expiresAtMs
      }
      try {
        const cl = auth?.authenticateNow(c.token, sub.app)
        if (cl instanceof Promise) cl.then(renewed, expired)
        else renewed(cl)
      } catch (err) {
        expired(err)
      }
    }
  }

  goingAway(): void {
    this.stopping = true
    for (const c of [...this.connections]) {
      // Replies queued in this tick go out before the close frame.
      c.flush()
      c.end(CloseCode.GOING_AWAY, 'the server is shutting down')
    }
    this.stopSweep()
  }

  stats(): WsApiStats {
    let pending = 0
    for (const c of this.connections) for (const sub of c.subs.values()) pending += sub.pending?.size ?? 0
    return { connections: this.connections.size, requestsInFlight: this.inflightTotal, closedByServer: { ...this.closedByServer }, subscriptionPendingOps: pending }
  }
}

function errorCodeOf(body: Uint8Array | undefined): string {
  if (body === undefined) return 'UNKNOWN'
  try {
    const v = unpackFrame(body) as { code?: unknown }
    return typeof v?.code === 'string' ? v.code : 'UNKNOWN'
  } catch {
    return 'UNKNOWN'
  }
}

/** Serves the binary protocol at /api/ws. Register it before the HTTP catch-all route. */
export function registerWsApi(app: TemplatedApp, o: WsApiOptions): WsApi {
  const server = new WsServer(o)
  server.register(app)
  if (o.metrics !== undefined) {
    const r = o.metrics.registry
    r.gauge('vvm_ws_connections', 'open binary-protocol connections', () => [{ labels: {}, value: server.connections.size }])
    r.gauge('vvm_ws_requests_in_flight', 'binary-protocol requests waiting for their reply', () => [{ labels: {}, value: server.inflightTotal }])
    r.gauge('vvm_ws_closed_total', 'binary-protocol connections the server closed, by close code', () =>
      Object.entries(server.stats().closedByServer).map(([code, n]) => ({ labels: { code }, value: n })), 'counter')
  }
  return server
}
