// The SDK's connection: calls with client-chosen request ids, many in flight, answered in any
// order; a per-call timeout; reconnect with backoff and jitter; calls that are safe to repeat
// (reads, and writes with an idempotency key, which the SDK adds by default) are sent again
// after a lost connection or a 503, so a retried command is never applied twice.
//
// The options and result shapes are in options.ts; the calls under way (and their bounds) in
// call-table.ts; the subscriptions of the connection in subscription-host.ts (and each
// subscription in subscription.ts).

import {
  CloseCode, FrameType, OP_RULES, REQUEST_ID_MAX, WIRE_OP_NAMES, WireOp,
  encodeAuth, encodePing, encodeRequest, type ServerFrame, type ServerLimits, type WireParams,
} from '../shared/protocol/index.js'
import { ConnectionError, ReplyError, TimeoutError } from './errors.js'
import type {
  CallOptions, ClientState, CommandOptions, CommandResult, ConnectOptions, RawRequest, ReadOptions, ReadResult, ReconnectOptions, Row, WriteOptions,
} from './options.js'
import { closeAndWait, closeQuietly, type WebSocketConstructor, type WebSocketLike } from './websocket.js'
import { CallTable } from './call-table.js'
import { openConnection } from './handshake.js'
import { KeepAlive } from './keep-alive.js'
import { randomIdempotencyKey } from './idempotency-keys.js'
import { Live, type SubscribeOptions, type SubscribeTarget, type Subscription } from './subscription.js'
import { ClientSubscriptions } from './subscription-host.js'

const DEFAULT_TIMEOUT_MS = 30_000
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000
const DEFAULT_RECONNECT = { delayMinMs: 100, delayMaxMs: 5_000, attemptsMax: Infinity }
/** Closes after which connecting again cannot help. */
const FATAL_CLOSE_CODES: ReadonlySet<number> = new Set([
  CloseCode.UNSUPPORTED_DATA, CloseCode.HELLO_EXPECTED, CloseCode.VERSION_UNSUPPORTED, CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN,
])

type Timer = ReturnType<typeof setTimeout>

interface PingWaiter {
  startedMs: number
  timer: Timer
  resolve: (ms: number) => void
  reject: (e: Error) => void
}

export class VvmClient {
  private stateNow: ClientState = 'connecting'
  private socket: WebSocketLike | undefined
  private limitsNow: ServerLimits | undefined
  private versionNow = 0
  /** The calls under way: sent on this.socket when open (or closing), failed or sent again when it closes. */
  private readonly calls: CallTable
  private readonly pings = new Map<number, PingWaiter>()
  private nextPingId = 1
  private reconnectAttempt = 0
  private reconnectTimer: Timer | undefined
  private readonly keepAlive = new KeepAlive({
    send: (frame) => {
      if (this.socket === undefined) return false
      this.socket.send(frame)
      return true
    },
    dead: () => {
      const socket = this.socket
      if (socket === undefined) return
      // A dead path never completes a close handshake: drop the socket where the implementation can.
      const t = (socket as { terminate?: () => void }).terminate
      if (t !== undefined) t.call(socket)
      else closeQuietly(socket, CloseCode.NORMAL, 'no pong')
      this.onSocketClosed(socket, 1006, 'keep-alive: no frame from the server within two intervals')
    },
  })
  private closed: Promise<void> | undefined
  private readonly reconnect: Required<ReconnectOptions> | undefined
  /** Set by authenticate(): the token for this and later connections. */
  private tokenNow: string | null | undefined
  /** Live subscriptions: subscribed, resumed after a reconnect, given their pushes. */
  private readonly subscriptions = new ClientSubscriptions((label, build, retrySafe, onOk) => this.enqueue(label, false, build, undefined, retrySafe, onOk))

  /** Use `connect()`. */
  constructor(readonly url: string, private readonly o: ConnectOptions, private readonly WS: WebSocketConstructor) {
    this.reconnect = o.reconnect === false ? undefined : { ...DEFAULT_RECONNECT, ...(typeof o.reconnect === 'object' ? o.reconnect : {}) }
    this.calls = new CallTable(o, {
      socket: () => this.socket !== undefined && (this.stateNow === 'open' || this.stateNow === 'closing') ? this.socket : undefined,
      limits: () => this.limitsNow,
      sent: () => { this.keepAlive.lastSentMs = Date.now() },
      backoffMs: (attempt) => this.backoffMs(attempt),
    })
  }

  get state(): ClientState { return this.stateNow }
  /** The limits the server announced in WELCOME (undefined before the first connection). */
  get limits(): ServerLimits | undefined { return this.limitsNow }
  get protocolVersion(): number { return this.versionNow }
  /** Calls not yet settled (in flight, waiting, or waiting to retry). */
  get pending(): number { return this.calls.size }

  // ---- calls ------------------------------------------------------------------------------

  command<R = Row>(name: string, args: Record<string, unknown> = {}, opts: CommandOptions = {}): Promise<CommandResult<R>> {
    const body: Record<string, unknown> = { args }
    if (opts.unloggedArgs !== undefined) body.unloggedArgs = opts.unloggedArgs
    if (opts.cuds !== undefined) body.cuds = opts.cuds
    return this.request({ ...opts, op: WireOp.COMMAND, qname: name, body }) as Promise<CommandResult<R>>
  }

  /** A query; `args` are the query's arguments, `opts` may add Parse-style constraints. */
  query<T = Row>(name: string, args: Record<string, unknown> = {}, opts: ReadOptions = {}): Promise<ReadResult<T>> {
    return this.request({ ...opts, op: WireOp.QUERY, qname: name, body: args, params: readParams(opts) }) as Promise<ReadResult<T>>
  }

  /** Rows of a view; `where` must give the view's partition key fields. */
  view<T = Row>(name: string, opts: ReadOptions = {}): Promise<ReadResult<T>> {
    return this.request({ ...opts, op: WireOp.VIEW, qname: name, params: readParams(opts) }) as Promise<ReadResult<T>>
  }

  readonly docs = {
    get: <T = Row>(table: string, id: number, opts: CallOptions = {}): Promise<T> =>
      this.request({ ...opts, op: WireOp.DOC_GET, qname: table, docId: id }) as Promise<T>,
    create: (table: string, fields: Record<string, unknown>, opts: WriteOptions = {}): Promise<CommandResult<Record<string, never>>> =>
      this.request({ ...opts, op: WireOp.DOC_CREATE, qname: table, body: fields }) as Promise<CommandResult<Record<string, never>>>,
    update: (table: string, id: number, fields: Record<string, unknown>, opts: WriteOptions = {}): Promise<CommandResult<Record<string, never>>> =>
      this.request({ ...opts, op: WireOp.DOC_UPDATE, qname: table, docId: id, body: fields }) as Promise<CommandResult<Record<string, never>>>,
    deactivate: (table: string, id: number, opts: WriteOptions = {}): Promise<CommandResult<Record<string, never>>> =>
      this.request({ ...opts, op: WireOp.DOC_DEACTIVATE, qname: table, docId: id }) as Promise<CommandResult<Record<string, never>>>,
    /** Records of a table in the workspace (the HTTP API's `cdocs`). */
    list: <T = Row>(table: string, opts: ReadOptions = {}): Promise<ReadResult<T>> =>
      this.request({ ...opts, op: WireOp.CDOCS, qname: table, params: readParams(opts) }) as Promise<ReadResult<T>>,
  }

  /**
   * Subscribes to a view range, a cdocs collection, one doc or a query (docs/subscriptions.md).
   * Resolves once the server accepted it; iterate it for the snapshot and the diffs that follow.
   * Needs protocol version 2.
   */
  subscribe(target: SubscribeTarget, opts: SubscribeOptions = {}): Promise<Subscription> {
    const app = opts.app ?? this.o.app
    const wsid = opts.wsid ?? this.o.wsid
    if (app === undefined || wsid === undefined) return Promise.reject(new TypeError('app and wsid are needed: pass them in the subscribe options or in connect() options'))
    return this.subscriptions.subscribe(app, wsid, target, opts)
  }

  /** A materialized copy of a subscription's result, current with every diff; resolves at its first snapshot. */
  async live(target: SubscribeTarget, opts: SubscribeOptions = {}): Promise<Live> {
    const l = new Live(await this.subscribe(target, opts))
    await l.ready
    return l
  }

  /** Any operation, as its frame carries it; resolves with the reply body. */
  request(r: RawRequest): Promise<unknown> {
    const app = r.app ?? this.o.app
    const wsid = r.wsid ?? this.o.wsid
    if (app === undefined || wsid === undefined) {
      return Promise.reject(new TypeError('app and wsid are needed: pass them in the call options or in connect() options'))
    }
    const rule = OP_RULES[r.op]
    if (rule === undefined) return Promise.reject(new TypeError(`op ${r.op} is not served`))
    const key = rule.write && r.idempotencyKey !== false ? (r.idempotencyKey ?? this.newIdempotencyKey()) : null
    const build = (reqId: number): Uint8Array => encodeRequest({
      reqId, op: r.op, app, wsid, qname: r.qname, docId: r.docId ?? 0, body: r.body ?? null, params: r.params ?? null, idempotencyKey: key,
    })
    return this.enqueue(`${WIRE_OP_NAMES[r.op]} ${r.qname}`, rule.write, build, r.timeoutMs, !rule.write || key !== null)
  }

  /** A call through the call table, while the client is not closing. */
  private enqueue(
    label: string, write: boolean, build: (reqId: number) => Uint8Array, timeoutMs = this.o.timeoutMs ?? DEFAULT_TIMEOUT_MS, retrySafe = true,
    onOk?: (body: unknown) => void,
  ): Promise<unknown> {
    if (this.stateNow === 'closing' || this.stateNow === 'closed') return Promise.reject(new ConnectionError('CONNECTION_CLOSED', 'the client is closed'))
    return this.calls.add(label, write, build, timeoutMs, retrySafe, onOk)
  }

  /**
   * Replaces the connection's token (re-auth, e.g. before the old one expires); null: none.
   * Resolves once the server accepted it; later reconnects use it too.
   */
  authenticate(token: string | null, opts: { timeoutMs?: number } = {}): Promise<void> {
    const options = this.o.app === undefined ? {} : { app: this.o.app }
    return this.enqueue('auth', false, (reqId) => encodeAuth(reqId, token, options), opts.timeoutMs).then(() => {
      this.tokenNow = token
    })
  }

  /** Round trip to the server in milliseconds. */
  ping(timeoutMs = this.o.timeoutMs ?? DEFAULT_TIMEOUT_MS): Promise<number> {
    return new Promise((resolve, reject) => {
      const socket = this.socket
      if (this.stateNow !== 'open' || socket === undefined) {
        reject(new ConnectionError('CONNECTION_LOST', `not connected (state ${this.stateNow})`))
        return
      }
      const pingId = this.nextPingId
      this.nextPingId = pingId >= REQUEST_ID_MAX ? 1 : pingId + 1
      const timer = setTimeout(() => {
        this.pings.delete(pingId)
        reject(new TimeoutError(`no PONG within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pings.set(pingId, { startedMs: performance.now(), timer, resolve, reject })
      socket.send(encodePing(pingId))
      this.keepAlive.lastSentMs = Date.now()
    })
  }

  /**
   * Stops taking calls, waits up to `drainTimeoutMs` for those under way, fails the rest with
   * CONNECTION_CLOSED and closes the connection (code 1000).
   */
  close(opts: { drainTimeoutMs?: number } = {}): Promise<void> {
    if (this.closed !== undefined) return this.closed
    this.closed = (async () => {
      if (this.stateNow !== 'closed') {
        this.setState('closing', {})
        if (this.calls.liveCalls() > 0) await this.calls.drained(opts.drainTimeoutMs ?? 5_000)
      }
      await this.shutDown(new ConnectionError('CONNECTION_CLOSED', 'the client was closed'), CloseCode.NORMAL, 'client closing')
    })()
    return this.closed
  }

  // ---- connection -------------------------------------------------------------------------

  /** First connection: `connect()` fails when it fails. */
  async start(): Promise<void> {
    try {
      await this.openConnection()
    } catch (err) {
      await this.shutDown(err as Error, CloseCode.NORMAL, '')
      throw err
    }
  }

  private async openConnection(): Promise<void> {
    const t = this.o.token
    const token = this.tokenNow !== undefined ? this.tokenNow : typeof t === 'function' ? await t() : (t ?? null)
    // Naming the app lets the server check the token at hello.
    const options: Record<string, unknown> = { client: 'vvm-js' }
    if (this.o.app !== undefined) options.app = this.o.app
    await openConnection(this.WS, this.url, { token, options, timeoutMs: this.o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS }, {
      welcomed: (socket, version, limits) => this.onOpen(socket, version, limits),
      abandoned: () => this.stateNow === 'closed',
      frame: (socket, f) => { if (socket === this.socket) this.onFrame(f) },
      closed: (socket, code, reason) => this.onSocketClosed(socket, code, reason),
      error: (err) => this.o.onError?.(err),
    })
  }

  private onOpen(socket: WebSocketLike, version: number, limits: ServerLimits): void {
    this.socket = socket
    this.versionNow = version
    this.limitsNow = limits
    this.reconnectAttempt = 0
    if (this.stateNow !== 'closing') this.setState('open', {})
    this.keepAlive.start(this.o.keepAliveMs, limits.idleTimeoutS ?? 0)
    this.subscriptions.resume()
    this.calls.pump()
  }

  private onFrame(f: ServerFrame): void {
    this.keepAlive.lastFrameMs = Date.now()
    switch (f.type) {
      case FrameType.REPLY:
        if (f.reqId === 0) this.o.onError?.(new ReplyError(f.status, f.body, f.retryAfterS))
        else this.calls.onReply(f.reqId, f.status, f.retryAfterS, f.body)
        return
      case FrameType.PONG: {
        const w = this.pings.get(f.pingId)
        if (w === undefined) return
        this.pings.delete(f.pingId)
        clearTimeout(w.timer)
        w.resolve(performance.now() - w.startedMs)
        return
      }
      case FrameType.PUSH: {
        this.subscriptions.onPush(f.subscriptionId, f.seq, f.body)
        this.o.onPush?.(f.subscriptionId, f.seq, f.body)
        return
      }
      default:
        // WELCOME again or a frame type of a later version: ignored.
        return
    }
  }

  private onSocketClosed(socket: WebSocketLike, code: number, reason: string): void {
    if (socket !== this.socket) return
    this.socket = undefined
    this.keepAlive.stop()
    this.subscriptions.connectionLost()
    for (const [id, w] of this.pings) {
      clearTimeout(w.timer)
      w.reject(new ConnectionError('CONNECTION_LOST', `the connection closed (${code}) before PONG`, code, reason))
      this.pings.delete(id)
    }
    this.calls.connectionLost(code, reason)
    if (this.stateNow === 'closed') return
    if (this.isFatal(code) || this.reconnect === undefined) {
      void this.shutDown(new ConnectionError('CONNECTION_CLOSED', `the server closed the connection (${code}${reason ? ': ' + reason : ''})`, code, reason), code, reason)
      return
    }
    if (this.stateNow !== 'closing') this.setState('reconnecting', { closeCode: code, closeReason: reason })
    this.scheduleReconnect()
  }

  private scheduleReconnect(): void {
    const r = this.reconnect!
    if (this.reconnectAttempt >= r.attemptsMax) {
      void this.shutDown(new ConnectionError('CONNECTION_CLOSED', `gave up after ${r.attemptsMax} reconnect attempts`), CloseCode.NORMAL, '')
      return
    }
    const delayMs = this.backoffMs(this.reconnectAttempt++)
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined
      this.openConnection().catch((err: unknown) => {
        if (this.stateNow === 'closed') return
        const e = err as ConnectionError
        if (e.closeCode !== undefined && this.isFatal(e.closeCode)) void this.shutDown(e, CloseCode.NORMAL, '')
        else this.scheduleReconnect()
      })
    }, delayMs)
  }

  /** Exponential backoff with "equal jitter": half the step fixed, half random. */
  private backoffMs(attempt: number): number {
    const r = this.reconnect ?? DEFAULT_RECONNECT
    const step = Math.min(r.delayMaxMs, r.delayMinMs * 2 ** Math.min(attempt, 30))
    return step / 2 + Math.random() * (step / 2)
  }

  /** Ends the client: every unsettled call fails with `error`, the socket is closed. */
  private async shutDown(error: Error, code: number, reason: string): Promise<void> {
    if (this.stateNow === 'closed') return
    clearTimeout(this.reconnectTimer)
    this.keepAlive.stop()
    this.calls.failAll(error)
    for (const w of this.pings.values()) {
      clearTimeout(w.timer)
      w.reject(error)
    }
    this.pings.clear()
    this.subscriptions.failAll(error)
    this.setState('closed', { closeCode: code, closeReason: reason, error })
    const socket = this.socket
    this.socket = undefined
    if (socket !== undefined) await closeAndWait(socket, code === CloseCode.NORMAL || (code >= 3000 && code <= 4999) ? code : CloseCode.NORMAL, reason)
  }

  // ---- helpers ----------------------------------------------------------------------------

  /** A close after which connecting again cannot help; 4401 can, when the token is asked for anew. */
  private isFatal(code: number): boolean {
    if (code === CloseCode.UNAUTHORIZED && typeof this.o.token === 'function' && this.tokenNow === undefined) return false
    return FATAL_CLOSE_CODES.has(code)
  }

  private newIdempotencyKey(): string {
    // 22 printable characters, cut to the server's limit if smaller.
    const key = randomIdempotencyKey()
    const max = this.limitsNow?.idempotencyKeyBytesMax
    return max === undefined || max >= key.length ? key : key.slice(0, max)
  }

  private setState(state: ClientState, detail: { closeCode?: number; closeReason?: string; error?: Error }): void {
    if (this.stateNow === state) return
    this.stateNow = state
    this.o.onStateChange?.(state, detail)
  }
}

function readParams(o: ReadOptions): WireParams | undefined {
  const p: WireParams = {}
  let any = false
  if (o.where !== undefined) { p.where = o.where; any = true }
  if (o.order !== undefined) { p.order = o.order; any = true }
  if (o.limit !== undefined) { p.limit = o.limit; any = true }
  if (o.skip !== undefined) { p.skip = o.skip; any = true }
  if (o.keys !== undefined) { p.keys = o.keys; any = true }
  return any ? p : undefined
}
