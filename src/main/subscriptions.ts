// The main thread's side of subscriptions (docs/subscriptions.md): which subscribers share each
// partition's subscription groups, the fan-out of a group's push to all of them, and the release
// of group references when subscribers go. Groups themselves (evaluation, diffs, history) live in
// the partition workers; a push arrives here once per group and is delivered to each subscriber
// as the same encoded body under the subscriber's own header.
//
// Bounds: subscribers per server (`subscriptionsMax`, 503 past it); per connection and pending
// diffs per subscriber are the transports' (ws-api, SSE), with the coalescing of PendingDiff.

import type { EnginePush, EngineRequest } from '../shared/engine-messages.js'
import { Op, ReplyFormat } from '../shared/engine-messages.js'
import { BusyError, VvmError } from '../shared/errors.js'
import { appendOrder, encodeEnd, unpackFrame, type Diff, type DiffOp, type End, type RowKey } from '../shared/protocol/index.js'

/** One push of a group, shared by its subscribers; decoded and transcoded at most once. */
export class Push {
  private decodedValue: Diff | End | undefined
  private jsonValue: string | undefined

  constructor(readonly end: boolean, readonly body: Uint8Array) {}

  get decoded(): Diff | End {
    return (this.decodedValue ??= unpackFrame(this.body) as Diff | End)
  }

  get json(): string {
    return (this.jsonValue ??= JSON.stringify(this.decoded))
  }
}

export interface Subscriber {
  /** A diff of its group, or the group's end (the subscriber is then gone from the hub). */
  deliver(p: Push): void
}

/** Where releases go: the partition worker of (app, partition). Throws BusyError when its ring is full. */
export type SubmitToPartition = (app: string, partition: number, req: EngineRequest, onReply: (status: number) => void) => void

export interface SubscriptionHubOptions {
  subscriptionsMax: number
  submit: SubmitToPartition
  log: (level: 'warn' | 'error', msg: string) => void
}

/** Why 100 ms: a partition whose ring was full a moment ago has drained by then. */
const RELEASE_RETRY_MS = 100

const groupRef = (app: string, partition: number, groupId: number): string => `${app}\u0000${partition}\u0000${groupId}`

export class SubscriptionHub {
  private readonly groups = new Map<string, Set<Subscriber>>()
  /** Subscribers plus subscribes under way. */
  private taken = 0
  private readonly releases = new Map<string, { app: string; partition: number; ids: number[] }>()
  private releaseTimer: NodeJS.Timeout | undefined
  /** Pushes delivered to subscribers (one group push counts once per subscriber). */
  delivered = 0

  constructor(private readonly o: SubscriptionHubOptions) {}

  get subscribers(): number {
    return this.taken
  }

  /** A place for one more subscriber, or 503 at `subscriptionsMax`. Give it back with `unreserve` or use it in `add`. */
  reserve(): void {
    if (this.taken >= this.o.subscriptionsMax) throw new BusyError(`the server has ${this.o.subscriptionsMax} subscriptions (subscriptionsMax)`)
    this.taken++
  }

  unreserve(): void {
    this.taken--
  }

  /** A reserved place becomes a subscriber of a group. */
  add(app: string, partition: number, groupId: number, s: Subscriber): void {
    const ref = groupRef(app, partition, groupId)
    let set = this.groups.get(ref)
    if (set === undefined) this.groups.set(ref, (set = new Set()))
    set.add(s)
  }

  /** A subscriber leaves: its reference to the group is released in the worker. */
  remove(app: string, partition: number, groupId: number, s: Subscriber): void {
    const ref = groupRef(app, partition, groupId)
    const set = this.groups.get(ref)
    if (set === undefined || !set.delete(s)) return
    if (set.size === 0) this.groups.delete(ref)
    this.taken--
    this.release(app, partition, groupId)
  }

  /** A group reference nobody will use (the subscriber left before its reply). */
  release(app: string, partition: number, groupId: number): void {
    const k = `${app}\u0000${partition}`
    let r = this.releases.get(k)
    if (r === undefined) this.releases.set(k, (r = { app, partition, ids: [] }))
    r.ids.push(groupId)
    this.releaseTimer ??= setTimeout(() => this.flushReleases(), 0)
  }

  /** A push from a partition worker: to every subscriber of the group. */
  onPush(app: string, partition: number, p: EnginePush): void {
    const ref = groupRef(app, partition, p.groupId)
    const set = this.groups.get(ref)
    if (set === undefined) return
    const push = new Push(p.end, p.body)
    if (p.end) {
      this.groups.delete(ref)
      this.taken -= set.size
    }
    for (const s of set) {
      this.delivered++
      s.deliver(push)
    }
  }

  /** A partition stopped (shutdown, crash, handed over): its groups are gone; subscribers get an end. */
  partitionGone(app: string, partition: number, e: VvmError): void {
    const prefix = `${app}\u0000${partition}\u0000`
    const push = new Push(true, encodeEnd(e))
    for (const [ref, set] of this.groups) {
      if (!ref.startsWith(prefix)) continue
      this.groups.delete(ref)
      this.taken -= set.size
      for (const s of set) s.deliver(push)
    }
    this.releases.delete(`${app}\u0000${partition}`)
  }

  groupsServed(): number {
    return this.groups.size
  }

  private flushReleases(): void {
    this.releaseTimer = undefined
    for (const [k, r] of this.releases) {
      const req: EngineRequest = {
        reqId: 0, op: Op.UNSUBSCRIBE, format: ReplyFormat.MSGPACK, app: r.app, wsid: 0, qname: '', id: 0,
        idempotencyKey: null, body: r.ids, params: null,
      }
      try {
        this.o.submit(r.app, r.partition, req, (status) => {
          if (status >= 300 && status !== 503) this.o.log('warn', `subscriptions: releasing groups of ${r.app} p${r.partition} answered ${status}`)
        })
        this.releases.delete(k)
      } catch (err) {
        if (!(err instanceof BusyError)) {
          // The partition is not here any more: its groups went with it.
          this.releases.delete(k)
          continue
        }
        this.releaseTimer ??= setTimeout(() => this.flushReleases(), RELEASE_RETRY_MS)
      }
    }
  }
}

/**
 * The diffs a slow subscriber has not been sent, composed into one: per key the later op wins
 * (put then update is a put, put then delete is nothing, update then delete is a delete). The
 * order composes too: a diff's `order` replaces it, a diff without one removes its deleted keys
 * and appends its put keys. One case cannot be composed without the rows it does not hold — a
 * key deleted and put again while unknown order is pending moves to the end — and makes the
 * pending diff `broken`: the subscriber is then resynced rather than sent a wrong order.
 * Its size is the number of keys it changes.
 */
export class PendingDiff {
  fromOffset = -1
  toOffset = -1
  broken = false
  private readonly ops = new Map<RowKey, DiffOp>()
  /** The full order once a diff carried one (kept current by later diffs). */
  private order: RowKey[] | undefined

  constructor(readonly opsMax: number) {}

  get size(): number {
    return this.ops.size
  }

  /** Composes `d` in; false when the subscriber must be resynced instead (past opsMax, or broken). */
  add(d: Diff): boolean {
    if (this.fromOffset < 0) this.fromOffset = d.fromOffset
    this.toOffset = d.toOffset
    for (const op of d.ops) {
      const prev = this.ops.get(op.key)
      if (prev === undefined) {
        this.ops.set(op.key, op)
      } else if (prev.op === 'put') {
        if (op.op === 'delete') this.ops.delete(op.key)
        else this.ops.set(op.key, { op: 'put', key: op.key, row: op.row })
      } else if (prev.op === 'delete') {
        if (op.op === 'put' && this.order === undefined && d.order === undefined) this.broken = true
        // Still a delete then a put in the pending order: re-inserted after the other puts.
        this.ops.delete(op.key)
        this.ops.set(op.key, op.op === 'delete' ? op : { op: 'update', key: op.key, row: op.row })
      } else {
        this.ops.set(op.key, op.op === 'delete' ? op : { op: 'update', key: op.key, row: op.row })
      }
    }
    if (d.order !== undefined) this.order = [...d.order]
    else if (this.order !== undefined) this.order = appendOrder(this.order, d.ops)
    return this.ops.size <= this.opsMax && !this.broken
  }

  toDiff(): Diff {
    const d: Diff = { type: 'diff', fromOffset: this.fromOffset, toOffset: this.toOffset, ops: [...this.ops.values()] }
    if (this.order !== undefined) d.order = this.order
    return d
  }
}

/** Errors that end a subscription, each with one meaning (docs/subscriptions.md). */
export const resyncError = (pendingMax: number): VvmError =>
  new VvmError('RESYNC', `the subscriber did not read its diffs: they changed more than ${pendingMax} rows (subscriptionPendingOpsMax) or could not be combined; subscribe again for a fresh snapshot`)
