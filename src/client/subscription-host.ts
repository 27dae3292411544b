// The subscriptions of one SDK client (src/client/client.ts) on its connection: SUBSCRIBE and
// UNSUBSCRIBE sent as the client's calls, PUSH frames handed to their subscription by the
// server's id, and after a lost connection every live subscription subscribed again from the
// last offset it saw (src/client/subscription.ts decides what a subscription does with each).

import { WireOp, encodeRequest } from '../shared/protocol/index.js'
import { Subscription, targetRequest, type SubscribeOptions, type SubscribeReply, type SubscribeTarget, type SubscriptionHost } from './subscription.js'

/**
 * A call on the client's connection, through its queue: `build` makes the frame for a request
 * id, `onOk` runs with a successful reply's body before anything else is handled.
 */
export type SendCall = (label: string, build: (reqId: number) => Uint8Array, retrySafe: boolean, onOk?: (body: unknown) => void) => Promise<unknown>

export class ClientSubscriptions implements SubscriptionHost {
  /** Live subscriptions, and those of the current connection by the server's id. */
  private readonly subs = new Set<Subscription>()
  private readonly subsById = new Map<number, Subscription>()
  private readonly subscribing = new Set<Subscription>()

  constructor(private readonly send: SendCall) {}

  /** A new subscription, resolved once the server accepted it; a refused one is not kept. */
  async subscribe(app: string, wsid: number, target: SubscribeTarget, opts: SubscribeOptions): Promise<Subscription> {
    targetRequest(target)
    const s = new Subscription(this, app, wsid, target, opts)
    this.subs.add(s)
    try {
      await s.start()
    } catch (err) {
      this.subs.delete(s)
      throw err
    }
    return s
  }

  sendSubscribe(s: Subscription, resumeFrom: number | undefined, onOk: (body: SubscribeReply) => void): Promise<unknown> {
    const t = targetRequest(s.target)
    const body = resumeFrom === undefined ? null : { resumeFrom }
    this.subscribing.add(s)
    const build = (reqId: number): Uint8Array => encodeRequest({
      reqId, op: WireOp.SUBSCRIBE, app: s.app, wsid: s.wsid, qname: t.qname, docId: t.docId, body, params: t.params ?? null, idempotencyKey: null,
    })
    return this.send(`subscribe ${t.qname}`, build, true, (reply) => {
      const r = reply as SubscribeReply
      this.subscribing.delete(s)
      this.subsById.set(r.subscription, s)
      onOk(r)
    }).catch((err: unknown) => {
      this.subscribing.delete(s)
      throw err
    })
  }

  sendUnsubscribe(s: Subscription, serverId: number): Promise<unknown> {
    this.subsById.delete(serverId)
    const t = targetRequest(s.target)
    // Never sent again on another connection, where the id may name another subscription.
    const build = (reqId: number): Uint8Array => encodeRequest({
      reqId, op: WireOp.UNSUBSCRIBE, app: s.app, wsid: s.wsid, qname: t.qname, docId: serverId, body: null, params: null, idempotencyKey: null,
    })
    return this.send(`unsubscribe ${t.qname}`, build, false)
  }

  forget(s: Subscription): void {
    this.subs.delete(s)
    if (s.serverId !== undefined) this.subsById.delete(s.serverId)
  }

  /** A new connection is open. */
  resume(): void {
    // Subscriptions of the lost connection subscribe again, from the last offset they saw.
    for (const s of this.subs) if (s.serverId === undefined && !this.subscribing.has(s)) s.start().catch((err: unknown) => s.fail(err as Error))
  }

  /** A PUSH frame: to its subscription, if it is still one of this connection's. */
  onPush(subscriptionId: number, seq: number, body: unknown): void {
    const s = this.subsById.get(subscriptionId)
    if (s !== undefined) {
      s.onPush(seq, body)
      if (s.serverId !== subscriptionId) this.subsById.delete(subscriptionId)
    }
  }

  /** The connection closed: the server's ids are void. */
  connectionLost(): void {
    this.subsById.clear()
    for (const s of this.subs) s.connectionLost()
  }

  /** The client is closed: every subscription fails with `error`. */
  failAll(error: Error): void {
    for (const s of [...this.subs]) s.fail(error)
  }
}
