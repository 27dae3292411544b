// One connection of the binary protocol (src/main/ws-api.ts): its requests in flight (a WsSink
// each), its replies and pushes gathered and written once per burst inside `cork`, the check of
// its buffer bound after each send (close 4008), its deferred pushes and its subscriptions.
// The server (WsServer) owns the connections; the subscriptions are in ws-subscriptions.ts.

import type { WebSocket } from 'uWebSockets.js'
import type { VvmError } from '../shared/errors.js'
import { CloseCode, encodeEnd, encodePush, encodeReply, packValue } from '../shared/protocol/index.js'
import type { ReplySink } from './partitions.js'
import type { Push } from './subscriptions.js'
import type { WsServer } from './ws-api.js'
import type { WsSubscription } from './ws-subscriptions.js'

/** A JSON error body from a layer that rendered before knowing the format starts with '{'. */
const JSON_OPEN_BRACE = 0x7b

export interface UserData {
  conn: Connection
}

/** The reply of one request of one connection; dropped if the connection is gone. */
export class WsSink implements ReplySink {
  constructor(readonly conn: Connection, readonly reqId: number, readonly route: string, readonly startedMs: number) {}

  reply(status: number, body: Uint8Array, retryAfterS: number, _groupId?: number): void {
    this.conn.finish(this, status, body, retryAfterS)
  }
}

export class Connection {
  ws: WebSocket<UserData> | undefined
  helloDone = false
  /** HELLO received, its token being verified: WELCOME not yet sent. */
  helloPending = false
  closed = false
  /** The bearer token of this connection (HELLO, replaced by AUTH); undefined: anonymous. */
  token: string | undefined
  lastFrameMs: number
  readonly openedMs: number
  readonly inflight = new Map<number, WsSink>()
  /** The negotiated protocol version (0 before WELCOME). */
  version = 0
  readonly subs = new Map<number, WsSubscription>()
  /** Subscriptions with diffs held back. */
  holding = 0
  /** SUBSCRIBEs sent to a partition and not answered yet. */
  subscribing = 0
  nextSubscriptionId = 1
  /** Pushes not yet sent, as pairs (subscription, push): the fan-out is spread over ticks. */
  private readonly deferred: (WsSubscription | Push)[] = []
  private deferredHead = 0
  private outbox: Uint8Array[] = []
  private outboxBytes = 0
  private flushScheduled = false
  private readonly flushBound = (): void => this.flush()

  constructor(readonly api: WsServer, readonly address: string) {
    this.openedMs = Date.now()
    this.lastFrameMs = this.openedMs
  }

  /** A reply from a processor (or from this layer): queued, written with the others of its burst. */
  finish(sink: WsSink, status: number, body: Uint8Array, retryAfterS: number): void {
    if (this.inflight.get(sink.reqId) === sink) this.inflight.delete(sink.reqId)
    this.api.inflightTotal--
    const bytes = toMsgpackBody(body)
    this.api.record(sink.route, status, sink.startedMs, bytes)
    if (this.closed) return
    // The diffs of a batch come before its replies: those still deferred go first.
    this.sendDeferred(Infinity)
    this.queue(encodeReply(sink.reqId, status, retryAfterS, bytes))
  }

  /** A push of one of this connection's subscriptions, sent by the server's fan-out drain. */
  defer(sub: WsSubscription, p: Push): void {
    this.deferred.push(sub, p)
    this.api.scheduleDeferred(this)
  }

  /** Sends up to `max` deferred pushes in order; returns how many it took. */
  sendDeferred(max: number): number {
    const d = this.deferred
    let n = 0
    while (this.deferredHead < d.length && n < max) {
      const sub = d[this.deferredHead] as WsSubscription
      const p = d[this.deferredHead + 1] as Push
      this.deferredHead += 2
      sub.deliverNow(p)
      n++
    }
    if (this.deferredHead >= d.length) {
      d.length = 0
      this.deferredHead = 0
    }
    return n
  }

  get hasDeferred(): boolean {
    return this.deferredHead < this.deferred.length
  }

  queue(frame: Uint8Array): void {
    this.outbox.push(frame)
    this.outboxBytes += frame.byteLength
    if (!this.flushScheduled) {
      this.flushScheduled = true
      queueMicrotask(this.flushBound)
    }
  }

  flush(): void {
    this.flushScheduled = false
    const ws = this.ws
    if (this.closed || ws === undefined) {
      this.outbox = []
      return
    }
    const frames = this.outbox
    this.outbox = []
    this.outboxBytes = 0
    ws.cork(() => {
      for (const f of frames) if (!this.sendNow(f)) return
    })
    // Diffs held back while the queue of this burst counted against the bound: uWS's drain
    // comes only after real backpressure, so what is free now is sent now.
    this.onDrain()
  }

  /** Sends one frame; false when the connection was closed for being over its buffer bound. */
  sendNow(frame: Uint8Array): boolean {
    const ws = this.ws
    if (this.closed || ws === undefined) return false
    const result = ws.send(frame, true)
    // 2: dropped by uWS; cannot happen below UWS_BACKPRESSURE_BYTES (ws-api.ts), and a drop is still a slow reader.
    if (result === 2 || ws.getBufferedAmount() > this.api.o.bufferedBytesMax) {
      this.api.log?.warn({ address: this.address, bufferedBytes: ws.getBufferedAmount(), bufferedBytesMax: this.api.o.bufferedBytesMax }, 'ws: slow reader closed')
      this.end(CloseCode.SLOW_READER, `slow reader: more than ${this.api.o.bufferedBytesMax} bytes of replies unread`)
      return false
    }
    return true
  }

  /** More than half of bufferedBytesMax waits (written or queued): pushes are held back. */
  congested(): boolean {
    return this.ws === undefined || this.ws.getBufferedAmount() + this.outboxBytes > this.api.o.bufferedBytesMax / 2
  }

  /** Ends a subscription here (unsubscribe, resync, expired token); with an error, the client gets an end push. */
  endSubscription(sub: WsSubscription, e: VvmError | undefined): void {
    if (sub.ended) return
    sub.ended = true
    sub.dropPending()
    this.subs.delete(sub.id)
    this.api.o.subscriptions!.hub.remove(sub.app, sub.partition, sub.groupId, sub)
    if (e !== undefined) this.queue(encodePush(sub.id, ++sub.seq, encodeEnd(e)))
  }

  /** The socket drained: subscriptions with held-back diffs send them. */
  onDrain(): void {
    if (this.holding === 0) return
    for (const sub of this.subs.values()) {
      if (this.congested()) return
      sub.flushPending()
    }
  }

  /** Closed: every subscription is released (the groups wait out their grace for a resume). */
  releaseSubscriptions(): void {
    const hub = this.api.o.subscriptions?.hub
    if (hub === undefined) return
    for (const sub of this.subs.values()) {
      sub.ended = true
      sub.dropPending()
      hub.remove(sub.app, sub.partition, sub.groupId, sub)
    }
    this.subs.clear()
  }

  /** Closes with a code and a reason. */
  end(code: number, reason: string): void {
    if (this.closed || this.ws === undefined) return
    this.api.countClose(code)
    this.ws.end(code, closeReason(reason))
  }
}

/**
 * Reply bodies reach this layer as MessagePack, except error bodies that a layer rendered as
 * JSON before the request's format mattered (a stopped partition fails its pending requests,
 * a query worker crashes): those are converted here, on the error path only.
 */
function toMsgpackBody(body: Uint8Array): Uint8Array {
  if (body.byteLength < 2 || body[0] !== JSON_OPEN_BRACE) return body
  try {
    return packValue(JSON.parse(Buffer.from(body).toString('utf8')))
  } catch {
    // Not JSON after all: a MessagePack body that starts with the integer 123 is passed on as is.
    return body
  }
}

/** Why 123: a close frame's payload is at most 125 bytes, 2 of them the code. Cut on a character boundary. */
const CLOSE_REASON_BYTES_MAX = 123

function closeReason(reason: string): Buffer {
  let b = Buffer.from(reason)
  for (let chars = reason.length; b.byteLength > CLOSE_REASON_BYTES_MAX; chars--) b = Buffer.from(reason.slice(0, chars - 1) + '…')
  return b
}
