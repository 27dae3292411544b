// The calls of one SDK client (src/client/client.ts) under way: their request ids, the queue of
// those waiting to be sent and the set of those on the current connection, each call's timeout,
// a reply matched to its call, a 503 retried later, and after a lost connection the calls that
// are safe to repeat sent again while the others fail. The connection itself is the client's:
// it is reached through hooks.
//
// Bounds: at most the server's `inflightMax` calls are on the wire; up to `pendingMax` more wait
// here (more are refused at once with code BUSY); each call is sent at most `retriesMax + 1` times.

import { REQUEST_ID_MAX, type ServerLimits } from '../shared/protocol/index.js'
import { ConnectionError, ReplyError, TimeoutError, VvmClientError } from './errors.js'
import type { ConnectOptions } from './options.js'
import { OPEN, sendInBurst, type WebSocketLike } from './websocket.js'

const DEFAULT_RETRIES_MAX = 10
const DEFAULT_PENDING_MAX = 100_000

interface Call {
  reqId: number
  frame: Uint8Array
  label: string
  write: boolean
  /** Reads, and writes with an idempotency key: sending again cannot apply anything twice. */
  retrySafe: boolean
  attempts: number
  /** abandoned: timed out while on the wire; its id stays reserved until its reply or the connection's end. */
  where: 'waiting' | 'sent' | 'retrying' | 'abandoned' | 'done'
  timer: ReturnType<typeof setTimeout> | undefined
  retryTimer: ReturnType<typeof setTimeout> | undefined
  resolve: (v: unknown) => void
  reject: (e: Error) => void
  /** Runs with a successful reply's body before anything else is handled (SUBSCRIBE registers its id). */
  onOk?: (body: unknown) => void
}

export interface CallTableHooks {
  /** The socket to send calls on: only while connected, and open or closing. */
  socket(): WebSocketLike | undefined
  /** The limits of the server last connected to (undefined before the first connection). */
  limits(): ServerLimits | undefined
  /** A call's frame was sent. */
  sent(): void
  /** The delay before the given retry of a call the server answered with 503. */
  backoffMs(attempt: number): number
}

export class CallTable {
  /** Every call not yet settled, by request id (also the abandoned ones still on the wire). */
  private readonly calls = new Map<number, Call>()
  private waiting = new Set<Call>()
  /** Calls on the current connection, in the order they were sent. */
  private readonly sent = new Set<Call>()
  private nextReqId = 1
  private drainedNow: (() => void) | undefined

  constructor(private readonly o: Pick<ConnectOptions, 'pendingMax' | 'retriesMax'>, private readonly hooks: CallTableHooks) {}

  /** Calls not yet settled, the abandoned ones still on the wire included. */
  get size(): number { return this.calls.size }

  /** A call: an id, its frame (built once, sent again as is), a timeout; sent when the window allows. */
  add(label: string, write: boolean, build: (reqId: number) => Uint8Array, timeoutMs: number, retrySafe: boolean, onOk?: (body: unknown) => void): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.waiting.size >= (this.o.pendingMax ?? DEFAULT_PENDING_MAX)) {
        reject(new VvmClientError('BUSY', 503, `${this.waiting.size} calls already wait to be sent (pendingMax)`))
        return
      }
      const reqId = this.allocateReqId()
      let frame: Uint8Array
      try {
        frame = build(reqId)
      } catch (err) {
        reject(new TypeError(`${label}: the request cannot be encoded: ${(err as Error).message}`))
        return
      }
      const call: Call = { reqId, frame, label, write, retrySafe, attempts: 0, where: 'waiting', timer: undefined, retryTimer: undefined, resolve, reject, onOk }
      const tooBig = this.tooBig(call)
      if (tooBig !== undefined) {
        reject(tooBig)
        return
      }
      call.timer = setTimeout(() => this.onTimeout(call, timeoutMs), timeoutMs)
      this.calls.set(reqId, call)
      this.waiting.add(call)
      this.pump()
    })
  }

  onReply(reqId: number, status: number, retryAfterS: number, body: unknown): void {
    const call = this.calls.get(reqId)
    if (call === undefined || (call.where !== 'sent' && call.where !== 'abandoned')) return
    this.sent.delete(call)
    if (call.where === 'abandoned') {
      this.calls.delete(reqId)
    } else if (status < 300) {
      this.settle(call)
      call.onOk?.(body)
      call.resolve(body)
    } else if (status === 503 && this.mayRetry(call)) {
      // Busy or shutting down: the server asks to come back later; the key makes it safe.
      call.attempts++
      call.where = 'retrying'
      const delayMs = Math.max(retryAfterS * 1000, this.hooks.backoffMs(call.attempts - 1)) * (1 + Math.random() / 2)
      call.retryTimer = setTimeout(() => {
        call.retryTimer = undefined
        call.where = 'waiting'
        this.waiting.add(call)
        this.pump()
      }, delayMs)
    } else {
      this.settle(call)
      call.reject(new ReplyError(status, body, retryAfterS))
    }
    this.pump()
  }

  /** Sends waiting calls while the server's in-flight bound allows. */
  pump(): void {
    const socket = this.hooks.socket()
    const limits = this.hooks.limits()
    if (socket === undefined || limits === undefined || socket.readyState !== OPEN) return
    for (const call of this.waiting) {
      if (this.sent.size >= limits.inflightMax) break
      this.waiting.delete(call)
      const tooBig = this.tooBig(call)
      if (tooBig !== undefined) {
        this.settle(call)
        call.reject(tooBig)
        continue
      }
      call.where = 'sent'
      this.sent.add(call)
      sendInBurst(socket, call.frame)
      this.hooks.sent()
    }
  }

  /** The connection closed: its calls that are safe to repeat wait to be sent again, the others fail. */
  connectionLost(code: number, reason: string): void {
    const again: Call[] = []
    for (const call of this.sent) {
      if (call.where === 'abandoned') {
        this.calls.delete(call.reqId)
      } else if (this.mayRetry(call)) {
        call.attempts++
        call.where = 'waiting'
        again.push(call)
      } else {
        this.settle(call)
        call.reject(new ConnectionError(
          'CONNECTION_LOST',
          `${call.label}: the connection closed (${code}${reason ? ': ' + reason : ''}) while it was in flight${call.write ? '; it may or may not have been applied' : ''}`,
          code, reason,
        ))
      }
    }
    this.sent.clear()
    // Calls that were on the wire go first, in their order.
    this.waiting = new Set([...again, ...this.waiting])
  }

  /** Every unsettled call fails with `error` (the abandoned ones were rejected already). */
  failAll(error: Error): void {
    for (const call of [...this.calls.values()]) {
      const live = call.where !== 'abandoned'
      this.settle(call)
      if (live) call.reject(error)
    }
    this.waiting.clear()
    this.sent.clear()
  }

  /** Calls still to be answered to their caller: all but the abandoned ones. */
  liveCalls(): number {
    let n = 0
    for (const c of this.calls.values()) if (c.where !== 'abandoned') n++
    return n
  }

  /** Resolves once liveCalls() is 0, or after `timeoutMs`. */
  drained(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.drainedNow = undefined
        resolve()
      }
      const timer = setTimeout(done, timeoutMs)
      this.drainedNow = done
    })
  }

  private onTimeout(call: Call, timeoutMs: number): void {
    call.timer = undefined
    const err = new TimeoutError(`${call.label}: no reply within ${timeoutMs} ms${call.write ? '; it may have been applied: send it again with the same idempotency key' : ''}`)
    if (call.where === 'sent') {
      call.where = 'abandoned'
    } else {
      this.waiting.delete(call)
      this.settle(call)
    }
    call.reject(err)
    this.checkDrained()
  }

  /** The call gets no further attention: timers off, id free. */
  private settle(call: Call): void {
    clearTimeout(call.timer)
    clearTimeout(call.retryTimer)
    call.timer = undefined
    call.retryTimer = undefined
    call.where = 'done'
    this.calls.delete(call.reqId)
    this.checkDrained()
  }

  private checkDrained(): void {
    if (this.drainedNow !== undefined && this.liveCalls() === 0) this.drainedNow()
  }

  private mayRetry(call: Call): boolean {
    return call.retrySafe && call.attempts < (this.o.retriesMax ?? DEFAULT_RETRIES_MAX)
  }

  private tooBig(call: Call): VvmClientError | undefined {
    const max = this.hooks.limits()?.frameBytesMax
    if (max === undefined || call.frame.byteLength <= max) return undefined
    return new VvmClientError('TOO_LARGE', 413, `${call.label}: the request frame of ${call.frame.byteLength} bytes exceeds the server's frameBytesMax ${max}`)
  }

  private allocateReqId(): number {
    for (;;) {
      const id = this.nextReqId
      this.nextReqId = id >= REQUEST_ID_MAX ? 1 : id + 1
      if (!this.calls.has(id)) return id
    }
  }
}
