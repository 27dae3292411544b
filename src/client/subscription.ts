// Subscriptions in the SDK (docs/subscriptions.md): `client.subscribe(target)` yields a snapshot,
// then diffs; after a lost connection it subscribes again from the last offset it saw, and the
// server either replays the missed diffs or sends a fresh snapshot (event `cause` says which).
// `client.live(target)` keeps a materialized copy (`LiveRows`) current from those events.
//
// Bound: events the consumer has not taken yet (`eventsMax`); past it they are dropped and the
// subscription starts over with a fresh snapshot (cause 'resync'), so memory stays bounded
// however slow the consumer.

import { appendOrder, type DiffOp, type RowKey, type WireParams } from '../shared/protocol/index.js'
import { VvmClientError } from './errors.js'

export type Row = Record<string, unknown>
export type { DiffOp, RowKey }

export type SubscriptionEvent =
  /** The whole result at `offset` (a WLog offset of the workspace). */
  | { type: 'snapshot'; offset: number; rows: Row[]; keys: RowKey[]; cause: 'subscribe' | 'reconnect' | 'resync' }
  /**
   * What changed between two offsets: apply `ops`; the rows' order is then `order` when given,
   * else the previous order without the deleted keys, followed by the put keys in op order.
   */
  | { type: 'diff'; fromOffset: number; toOffset: number; ops: DiffOp[]; order?: RowKey[] }

/** What to subscribe to: one of view, cdocs, doc or query. */
export type SubscribeTarget =
  | { view: string; where: Row; order?: string; limit?: number; skip?: number; keys?: string }
  | { cdocs: string; where?: Row; order?: string; limit?: number; skip?: number; keys?: string }
  | { doc: string; id: number }
  | { query: string; args?: Row; where?: Row; order?: string; limit?: number; skip?: number; keys?: string }

export interface SubscribeOptions {
  app?: string
  wsid?: number
  /** Events held for a consumer that does not take them, at most. Default 10,000. */
  eventsMax?: number
}

const DEFAULT_EVENTS_MAX = 10_000
/** Why 1 s: the retry-after the server gives with SHUTTING_DOWN; a handover takes about that. */
const RETRY_AFTER_END_MS = 1000

/** The wire form of a target: qname, docId and params of SUBSCRIBE. */
export function targetRequest(t: SubscribeTarget): { qname: string; docId: number; params: WireParams | undefined } {
  const params: WireParams = {}
  const copy = (o: { where?: Row; order?: string; limit?: number; skip?: number; keys?: string }): void => {
    if (o.where !== undefined) params.where = o.where
    if (o.order !== undefined) params.order = o.order
    if (o.limit !== undefined) params.limit = o.limit
    if (o.skip !== undefined) params.skip = o.skip
    if (o.keys !== undefined) params.keys = o.keys
  }
  let qname: string
  let docId = 0
  if ('view' in t) { qname = t.view; copy(t) }
  else if ('cdocs' in t) { qname = t.cdocs; copy(t) }
  else if ('doc' in t) { qname = t.doc; docId = t.id }
  else if ('query' in t) {
    qname = t.query
    copy(t)
    if (t.args !== undefined) params.args = t.args
  } else throw new TypeError('a subscription target names one of view, cdocs, doc or query')
  return { qname, docId, params: Object.keys(params).length > 0 ? params : undefined }
}

/** The connection side a Subscription needs from the client. */
export interface SubscriptionHost {
  /** Sends SUBSCRIBE; `onOk` runs synchronously with the reply body, before any PUSH of the subscription is handled. */
  sendSubscribe(s: Subscription, resumeFrom: number | undefined, onOk: (body: SubscribeReply) => void): Promise<unknown>
  sendUnsubscribe(s: Subscription, serverId: number): Promise<unknown>
  forget(s: Subscription): void
}

export interface SubscribeReply {
  subscription: number
  offset: number
  resumed: boolean
  rows?: { key: RowKey; row: Row }[]
  diffs?: { fromOffset: number; toOffset: number; ops: DiffOp[]; order?: RowKey[] }[]
}

/** One subscription: an async iterable of its events; `unsubscribe()` ends it. */
export class Subscription implements AsyncIterable<SubscriptionEvent> {
  /** The server's id on the current connection (undefined while (re)subscribing). */
  serverId: number | undefined
  /** The last offset seen (snapshot or diff), -1 before the first. */
  offset = -1
  private readonly queue: SubscriptionEvent[] = []
  private waiter: { resolve: (r: IteratorResult<SubscriptionEvent>) => void; reject: (e: Error) => void } | undefined
  private ended = false
  private error: Error | undefined
  private lastSeq = 0
  private cause: 'subscribe' | 'reconnect' | 'resync' = 'subscribe'
  private readonly eventsMax: number

  constructor(
    private readonly host: SubscriptionHost,
    readonly app: string, readonly wsid: number, readonly target: SubscribeTarget, opts: SubscribeOptions,
  ) {
    this.eventsMax = opts.eventsMax ?? DEFAULT_EVENTS_MAX
  }

  /** Subscribes (first time, after a reconnect, after a resync). */
  start(): Promise<void> {
    const resumeFrom = this.cause === 'reconnect' && this.offset >= 0 ? this.offset : undefined
    return this.host.sendSubscribe(this, resumeFrom, (body) => this.onReply(body)).then(() => undefined)
  }

  /** The connection was lost: on reconnect, subscribe again from the last offset. */
  connectionLost(): void {
    this.serverId = undefined
    this.lastSeq = 0
    if (this.cause !== 'resync') this.cause = 'reconnect'
  }

  /** A PUSH of this subscription. */
  onPush(seq: number, body: unknown): void {
    if (this.ended) return
    const b = body as { type?: string; status?: number; code?: string; message?: string } & Record<string, unknown>
    if (seq !== this.lastSeq + 1) return this.restart()
    this.lastSeq = seq
    if (b.type === 'end') {
      this.serverId = undefined
      // Fallen behind on the server: start over from a fresh snapshot.
      if (b.code === 'RESYNC') return this.restart(true)
      // The partition stopped serving here (shutdown, handover): subscribe again, from the last offset.
      if (b.code === 'SHUTTING_DOWN' || b.code === 'BUSY') {
        this.cause = 'reconnect'
        setTimeout(() => { if (!this.ended) this.start().catch((err: unknown) => this.fail(err as Error)) }, RETRY_AFTER_END_MS)
        return
      }
      return this.fail(new VvmClientError(b.code ?? 'UNKNOWN', b.status ?? 0, b.message ?? 'the subscription ended'))
    }
    const d = b as unknown as { fromOffset: number; toOffset: number; ops: DiffOp[]; order?: RowKey[] }
    this.offset = d.toOffset
    this.push({ type: 'diff', fromOffset: d.fromOffset, toOffset: d.toOffset, ops: d.ops, ...(d.order !== undefined ? { order: d.order } : {}) })
  }

  /** Ends the subscription (and the iteration). */
  async unsubscribe(): Promise<void> {
    if (this.ended) return
    this.end()
    const id = this.serverId
    this.serverId = undefined
    if (id !== undefined) await this.host.sendUnsubscribe(this, id).catch(() => undefined)
  }

  [Symbol.asyncIterator](): AsyncIterator<SubscriptionEvent> {
    return {
      next: () => {
        const e = this.queue.shift()
        if (e !== undefined) return Promise.resolve({ value: e, done: false })
        if (this.error !== undefined) return Promise.reject(this.error)
        if (this.ended) return Promise.resolve({ value: undefined, done: true })
        return new Promise((resolve, reject) => { this.waiter = { resolve, reject } })
      },
      return: async () => {
        await this.unsubscribe()
        return { value: undefined, done: true }
      },
    }
  }

  /** Fails the iteration (the subscribe was refused, or the server ended it with an error). */
  fail(e: Error): void {
    if (this.ended) return
    this.error = e
    this.end()
    const w = this.waiter
    this.waiter = undefined
    if (w !== undefined && this.queue.length === 0) w.reject(e)
  }

  private onReply(r: SubscribeReply): void {
    this.serverId = r.subscription
    this.lastSeq = 0
    if (r.resumed) {
      for (const d of r.diffs ?? []) this.push({ type: 'diff', fromOffset: d.fromOffset, toOffset: d.toOffset, ops: d.ops, ...(d.order !== undefined ? { order: d.order } : {}) })
    } else {
      const rows = r.rows ?? []
      this.push({ type: 'snapshot', offset: r.offset, rows: rows.map((x) => x.row), keys: rows.map((x) => x.key), cause: this.cause })
    }
    this.offset = r.offset
    this.cause = 'reconnect'
  }

  private push(e: SubscriptionEvent): void {
    if (this.queue.length >= this.eventsMax) return this.restart(true)
    const w = this.waiter
    if (w !== undefined && this.queue.length === 0) {
      this.waiter = undefined
      w.resolve({ value: e, done: false })
      return
    }
    this.queue.push(e)
  }

  /** Starts over: a gap in the pushes, a resync, a consumer too slow. The next event is a snapshot. */
  private restart(resync = true): void {
    if (this.ended) return
    this.queue.length = 0
    this.cause = resync ? 'resync' : 'reconnect'
    const id = this.serverId
    this.serverId = undefined
    if (id !== undefined) void this.host.sendUnsubscribe(this, id).catch(() => undefined)
    this.start().catch((err: unknown) => this.fail(err as Error))
  }

  private end(): void {
    this.ended = true
    this.host.forget(this)
    const w = this.waiter
    if (w !== undefined && this.error === undefined) {
      this.waiter = undefined
      w.resolve({ value: undefined, done: true })
    }
  }
}

/**
 * A materialized copy of a subscription's result, kept current by `apply`: rows by key and in
 * the server's order, and the offset they are at.
 */
export class LiveRows {
  readonly byKey = new Map<RowKey, Row>()
  order: RowKey[] = []
  /** The WLog offset the copy is at; -1 before the snapshot. */
  offset = -1

  /** The rows in the server's order. */
  get rows(): Row[] {
    return this.order.map((k) => this.byKey.get(k)!)
  }

  apply(e: SubscriptionEvent): void {
    if (e.type === 'snapshot') {
      this.byKey.clear()
      e.rows.forEach((row, i) => this.byKey.set(e.keys[i]!, row))
      this.order = [...e.keys]
      this.offset = e.offset
      return
    }
    for (const op of e.ops) {
      if (op.op === 'delete') this.byKey.delete(op.key)
      else this.byKey.set(op.key, op.row!)
    }
    // Without `order`: the deleted keys go, the put keys follow the others in op order.
    this.order = e.order !== undefined ? [...e.order] : appendOrder(this.order, e.ops)
    this.offset = e.toOffset
  }
}

/** `client.live(...)`: the copy, a promise of its first snapshot, change callbacks, close. */
export class Live {
  readonly rows = new LiveRows()
  /** Resolves at the first snapshot; rejects if the subscription is refused. */
  readonly ready: Promise<void>
  private readonly listeners = new Set<(rows: LiveRows, e: SubscriptionEvent) => void>()
  /** Set when the subscription ended with an error. */
  error: Error | undefined

  constructor(readonly subscription: Subscription) {
    let ready!: () => void
    let failed!: (e: Error) => void
    this.ready = new Promise((resolve, reject) => { ready = resolve; failed = reject })
    this.ready.catch(() => undefined)
    void (async () => {
      try {
        for await (const e of subscription) {
          this.rows.apply(e)
          if (e.type === 'snapshot') ready()
          for (const l of this.listeners) l(this.rows, e)
        }
      } catch (err) {
        this.error = err as Error
        failed(err as Error)
      }
    })()
  }

  /** Called after each event is applied; returns a function that removes the listener. */
  onChange(listener: (rows: LiveRows, e: SubscriptionEvent) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  close(): Promise<void> {
    return this.subscription.unsubscribe()
  }
}
