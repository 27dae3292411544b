// Subscriptions of the binary protocol (version 2, docs/subscriptions.md) on a connection of
// src/main/ws-api.ts. They belong to their connection: they end when it closes (their groups are
// released after the grace period) or when the token they were made with expires and no newer
// token of the connection is valid. Each has its own PUSH sequence; while more than half of
// bufferedBytesMax waits, its diffs are coalesced (PendingDiff) and sent when the socket drains;
// past subscriptionPendingOpsMax changed rows it ends with RESYNC.

import { encodePush, packValue, unpackFrame, type Diff } from '../shared/protocol/index.js'
import { PendingDiff, resyncError, type Push, type Subscriber, type SubscriptionHub } from './subscriptions.js'
import { WsSink, type Connection } from './ws-connection.js'

export interface WsSubscriptionOptions {
  hub: SubscriptionHub
  partitionOf: (app: string, wsid: number) => number
  perConnectionMax: number
  pendingOpsMax: number
}

/** A SUBSCRIBE's reply: on success the connection gets the subscription, the body its id. */
export class SubscribeSink extends WsSink {
  /** When the token the subscription was made with expires, and whose it is. */
  expiresAtMs = Infinity
  login = ''

  constructor(conn: Connection, reqId: number, route: string, startedMs: number, readonly app: string, readonly partition: number, readonly so: WsSubscriptionOptions) {
    super(conn, reqId, route, startedMs)
  }

  override reply(status: number, body: Uint8Array, retryAfterS: number, groupId?: number): void {
    const c = this.conn
    c.subscribing--
    if (status !== 200 || groupId === undefined) {
      this.so.hub.unreserve()
      return super.reply(status, body, retryAfterS)
    }
    if (c.closed) {
      this.so.hub.unreserve()
      this.so.hub.release(this.app, this.partition, groupId)
      return super.reply(status, body, retryAfterS)
    }
    const sub = new WsSubscription(c, c.nextSubscriptionId++, this.app, this.partition, groupId, this.expiresAtMs, this.login, this.so.pendingOpsMax)
    c.subs.set(sub.id, sub)
    this.so.hub.add(this.app, this.partition, groupId, sub)
    super.reply(status, withSubscriptionId(body, sub.id), retryAfterS)
  }
}

/** One subscription of a connection: PUSH frames with its id and sequence. */
export class WsSubscription implements Subscriber {
  seq = 0
  pending: PendingDiff | undefined
  ended = false

  constructor(
    readonly conn: Connection, readonly id: number, readonly app: string, readonly partition: number, readonly groupId: number,
    public expiresAtMs: number, readonly login: string, private readonly pendingOpsMax: number,
  ) {}

  /** From the hub: queued on the connection, sent in a later chunk or before its next reply. */
  deliver(p: Push): void {
    if (this.ended) return
    this.conn.defer(this, p)
  }

  deliverNow(p: Push): void {
    if (this.ended) return
    if (p.end) {
      // The group ended (an error, the partition stopped): nothing to release.
      this.ended = true
      this.dropPending()
      this.conn.subs.delete(this.id)
      this.conn.queue(encodePush(this.id, ++this.seq, p.body))
      return
    }
    if (this.pending === undefined && !this.conn.congested()) {
      this.conn.queue(encodePush(this.id, ++this.seq, p.body))
      return
    }
    if (this.pending === undefined) {
      this.pending = new PendingDiff(this.pendingOpsMax)
      this.conn.holding++
    }
    if (!this.pending.add(p.decoded as Diff)) this.conn.endSubscription(this, resyncError(this.pendingOpsMax))
  }

  /** The coalesced diffs, once the socket has room. */
  flushPending(): void {
    if (this.pending === undefined || this.ended || this.conn.congested()) return
    const d = this.pending.toDiff()
    this.dropPending()
    this.conn.queue(encodePush(this.id, ++this.seq, packValue(d)))
  }

  dropPending(): void {
    if (this.pending === undefined) return
    this.pending = undefined
    this.conn.holding--
  }
}

/**
 * The worker's SUBSCRIBE body `{offset, resumed, rows|diffs}` with `subscription` added: a
 * MessagePack fixmap gets one more entry in front, without decoding the rows.
 */
function withSubscriptionId(body: Uint8Array, id: number): Uint8Array {
  const head = body[0]!
  // fixmap (0x80 | n) or map16 (0xde, n as uint16): the header's count grows by one.
  const headerBytes = head >= 0x80 && head < 0x8f ? 1 : head === 0xde && body.byteLength >= 3 && ((body[1]! << 8) | body[2]!) < 0xffff ? 3 : 0
  if (headerBytes === 0) return packValue({ subscription: id, ...(unpackFrame(body) as Record<string, unknown>) })
  const entry = packValue(['subscription', id]).subarray(1)
  const out = new Uint8Array(body.byteLength + entry.byteLength)
  out.set(body.subarray(0, headerBytes), 0)
  if (headerBytes === 1) out[0] = head + 1
  else {
    const n = ((body[1]! << 8) | body[2]!) + 1
    out[1] = n >> 8
    out[2] = n & 0xff
  }
  out.set(entry, headerBytes)
  out.set(body.subarray(headerBytes), headerBytes + entry.byteLength)
  return out
}
