// Subscription groups of one partition (docs/subscriptions.md). A group is one read (a view
// range, a cdocs collection, one doc or a query, with its constraints and the caller's rights)
// that any number of subscribers share: it is evaluated once per change and its diff encoded
// once. The partition worker owns the groups because it sees every commit of its workspaces:
//
//   subscribe  → evaluated (or joined) between batches, so the snapshot is exact at an offset;
//   a write    → the read-set index marks the groups whose read ranges it falls in (dirty);
//   settle     → after a batch is durable (and before its replies are sent), each dirty group
//                is evaluated again; a changed result becomes one diff, pushed on the reply
//                ring ahead of the batch's replies; an unchanged one sends nothing.
//
// Offsets are WLog offsets of the subscription's workspace: the `currentWLogOffset` of command
// replies. A group keeps its last diffs (bounded) so that a subscriber can resume from the last
// offset it saw; the main thread keeps the group's subscribers and releases references.

import type { AppDef } from '../../shared/appdef/types.js'
import type { Principal, Row } from '../../shared/appdef/state.js'
import { ROLE_OWNER } from '../../shared/appdef/acl.js'
import { ANONYMOUS, needsStoredGrants } from '../../shared/authz.js'
import { Op, ReplyFormat, type EnginePush, type EngineReply, type EngineRequest, type OpCode } from '../../shared/engine-messages.js'
import { BadRequestError, BusyError, NotFoundError, VvmError, toVvmError } from '../../shared/errors.js'
import { renderError, renderObject } from '../../shared/reply.js'
import type { Bytes } from '../../shared/storage/types.js'
import type { QueryProcessor } from '../query/query-processor.js'
import type { PartitionState } from '../command/partition-state.js'
import { TrackingStorage, inRange, type ReadSet } from './read-set.js'
import { hexOf } from '../../shared/storage/keys.js'
import { appendOrder, encodeEnd, type Diff, type DiffOp, type RowKey } from '../../shared/protocol/subscriptions.js'
import { packValue } from '../../shared/protocol/codec.js'

export interface SubscriptionGroupsOptions {
  /** Groups a partition keeps at most (live ones and ones in their grace period). */
  groupsMax: number
  /** Rows of one subscription's result at most; a larger result ends it with TOO_LARGE. */
  rowsMax: number
  /** Diffs a group keeps for resuming subscribers. */
  historyDiffsMax: number
  /** Bytes of diffs a group keeps for resuming subscribers. */
  historyBytesMax: number
  /** How long a group without subscribers is kept (evaluated, its history growing) for a resume. */
  graceMs: number
}

interface KeptDiff {
  diff: Diff
  bytes: number
}

interface Group {
  readonly id: number
  readonly key: string
  /** The read to evaluate: a read op, the subscriber's principal. */
  readonly read: EngineRequest
  refs: number
  rows: Map<RowKey, { row: Row; enc: string }>
  order: RowKey[]
  /** The offset since which `rows` is the result. */
  stateSince: number
  /** The latest offset at which a change came without a new event (an async projector's): no resume from there or before. */
  ambiguousUpTo: number
  history: KeptDiff[]
  historyBytes: number
  reads: ReadSet
  /** Set while the group has no subscriber: when it is dropped. */
  idleUntilMs: number
}

export interface SubscriptionStats {
  groups: number
  evaluations: number
  diffs: number
}


export class SubscriptionGroups {
  private readonly groups = new Map<number, Group>()
  private readonly byKey = new Map<string, Group>()
  /** Hex pk → the groups that read it. */
  private readonly index = new Map<string, Set<Group>>()
  private readonly dirty = new Set<Group>()
  /** Groups without subscribers, in the order they became idle (so by `idleUntilMs`: the grace is one constant). */
  private readonly idle = new Set<Group>()
  private nextId = 1
  /** Evaluations (snapshots and re-evaluations) and diffs produced: counted for metrics and tests. */
  evaluations = 0
  diffs = 0

  constructor(
    private readonly part: PartitionState,
    private readonly reads: QueryProcessor,
    private readonly appOf: (qname: string) => AppDef | undefined,
    private readonly opts: SubscriptionGroupsOptions,
  ) {}

  get hasDirty(): boolean {
    return this.dirty.size > 0
  }

  stats(): SubscriptionStats {
    return { groups: this.groups.size, evaluations: this.evaluations, diffs: this.diffs }
  }

  /** Durable writes: marks the groups that read any of their keys. Cheap when nothing is subscribed. */
  noteWrites(items: readonly { pk: Bytes; cc: Bytes }[]): void {
    if (this.index.size === 0) return
    for (const it of items) {
      const pk = hexOf(it.pk)
      const groups = this.index.get(pk)
      if (groups === undefined) continue
      for (const g of groups) {
        if (this.dirty.has(g)) continue
        const ranges = g.reads.get(pk)!
        if (ranges.some((r) => inRange(r, it.cc))) this.dirty.add(g)
      }
    }
  }

  /**
   * Evaluates the dirty groups (between batches: committed state only) and returns their
   * pushes: diffs for changed results, an end for a group whose read now fails.
   */
  async settle(nowMs: number): Promise<EnginePush[]> {
    this.dropIdle(nowMs)
    if (this.dirty.size === 0) return []
    const groups = [...this.dirty]
    this.dirty.clear()
    const out: EnginePush[] = []
    for (const g of groups) {
      if (this.groups.get(g.id) !== g) continue
      try {
        const push = await this.reevaluate(g)
        if (push !== undefined) out.push(push)
      } catch (err) {
        const e = toVvmError(err)
        this.drop(g)
        out.push(endPush(g.id, e))
      }
    }
    return out
  }

  /** SUBSCRIBE: joins or makes the group of the read; the reply is the snapshot or the resumed diffs. */
  async subscribe(req: EngineRequest, nowMs: number): Promise<EngineReply> {
    try {
      const read = this.readOf(req)
      const key = groupKey(read)
      const resumeFrom = resumeOffset(req.body)
      const offset = (await this.part.wsHead(req.wsid)).wo
      let g = this.byKey.get(key)
      if (g !== undefined) {
        g.refs++
        g.idleUntilMs = 0
        this.idle.delete(g)
        const diffs = resumeFrom === undefined ? undefined : this.diffsSince(g, resumeFrom, offset)
        if (diffs !== undefined) return this.reply(req, g, { offset, resumed: true, diffs })
        return this.reply(req, g, { offset, resumed: false, rows: snapshotRows(g) })
      }
      this.makeRoom(nowMs)
      g = await this.create(read, key, offset)
      return this.reply(req, g, { offset, resumed: false, rows: snapshotRows(g) })
    } catch (err) {
      const e = toVvmError(err)
      return { reqId: req.reqId, status: e.status, body: renderError(req.format, e), retryAfterS: e.retryAfterS ?? 0 }
    }
  }

  /** UNSUBSCRIBE: one reference less for each group id; a group left without any waits out its grace. */
  release(req: EngineRequest, nowMs: number): EngineReply {
    const ids = Array.isArray(req.body) ? (req.body as unknown[]) : []
    for (const id of ids) if (typeof id === 'number') this.releaseOne(id, nowMs)
    return { reqId: req.reqId, status: 200, body: renderObject(req.format, {}), retryAfterS: 0 }
  }

  releaseOne(id: number, nowMs: number): void {
    const g = this.groups.get(id)
    if (g === undefined || g.refs === 0) return
    if (--g.refs === 0) {
      g.idleUntilMs = nowMs + this.opts.graceMs
      this.idle.add(g)
    }
  }

  /** Ends one group (its diff could not be delivered): the end push for its subscribers. */
  endGroup(id: number, e: VvmError): EnginePush {
    const g = this.groups.get(id)
    if (g !== undefined) this.drop(g)
    return endPush(id, e)
  }

  /** Drops every group (the app was undeployed): their subscribers get an end. */
  endAll(e: VvmError): EnginePush[] {
    const out: EnginePush[] = []
    for (const g of [...this.groups.values()]) {
      this.drop(g)
      out.push(endPush(g.id, e))
    }
    return out
  }

  /** The read behind a SUBSCRIBE: its op follows the kind of the qname. */
  private readOf(req: EngineRequest): EngineRequest {
    const app = this.appOf(req.app)
    if (app === undefined) throw new NotFoundError(`app ${req.app} is not deployed`)
    let op: OpCode
    if (app.tables.has(req.qname)) op = req.id > 0 ? Op.DOC_GET : Op.CDOCS
    else if (app.views.has(req.qname)) op = Op.VIEW
    else if (app.queries.has(req.qname)) op = Op.QUERY
    else throw new NotFoundError(`${req.qname} is not a table, view or query of app ${req.app}`, req.qname)
    if (req.id > 0 && op !== Op.DOC_GET) throw new BadRequestError(`a docId subscribes to one record of a table; ${req.qname} is not a table`, req.qname)
    return {
      reqId: 0, op, format: ReplyFormat.MSGPACK, app: req.app, wsid: req.wsid, qname: req.qname, id: req.id,
      idempotencyKey: null, body: undefined, params: req.params, principal: req.principal ?? ANONYMOUS,
    }
  }

  private async create(read: EngineRequest, key: string, offset: number): Promise<Group> {
    const { rows, order, reads } = await this.evaluate(read)
    const g: Group = {
      id: this.nextId++, key, read, refs: 1, rows, order, stateSince: offset, ambiguousUpTo: -1, history: [], historyBytes: 0, reads, idleUntilMs: 0,
    }
    this.groups.set(g.id, g)
    this.byKey.set(key, g)
    this.indexReads(g)
    return g
  }

  private async evaluate(read: EngineRequest): Promise<{ rows: Group['rows']; order: RowKey[]; reads: ReadSet }> {
    this.evaluations++
    const tracking = new TrackingStorage(this.part.storage)
    const result = await this.reads.rowsOf(tracking, read)
    if (result.length > this.opts.rowsMax) {
      throw new VvmError('TOO_LARGE', `the subscription's result has ${result.length} rows, more than ${this.opts.rowsMax} (subscriptionRowsMax): narrow it with where/limit`, { qname: read.qname })
    }
    const keys = rowKeys(this.appOf(read.app)!, read, result)
    const rows = new Map<RowKey, { row: Row; enc: string }>()
    result.forEach((row, i) => rows.set(keys[i]!, { row, enc: JSON.stringify(row) }))
    return { rows, order: keys, reads: tracking.reads }
  }

  private async reevaluate(g: Group): Promise<EnginePush | undefined> {
    const next = await this.evaluate(g.read)
    this.unindexReads(g)
    g.reads = next.reads
    this.indexReads(g)
    const ops: DiffOp[] = []
    for (const [k, v] of next.rows) {
      const prev = g.rows.get(k)
      if (prev === undefined) ops.push({ op: 'put', key: k, row: v.row })
      else if (prev.enc !== v.enc) ops.push({ op: 'update', key: k, row: v.row })
    }
    for (const k of g.rows.keys()) if (!next.rows.has(k)) ops.push({ op: 'delete', key: k })
    const orderChanged = !sameKeys(g.order, next.order)
    if (ops.length === 0 && !orderChanged) return undefined
    const offset = (await this.part.wsHead(g.read.wsid)).wo
    const diff: Diff = { type: 'diff', fromOffset: g.stateSince, toOffset: offset, ops }
    // The usual change (rows removed, new rows after the others) needs no order: see appendOrder.
    if (orderChanged && !sameKeys(appendOrder(g.order, ops), next.order)) diff.order = next.order
    if (diff.fromOffset === diff.toOffset) g.ambiguousUpTo = offset
    g.rows = next.rows
    g.order = next.order
    g.stateSince = offset
    const body = packValue(diff)
    this.keep(g, diff, body.byteLength)
    this.diffs++
    return { groupId: g.id, end: false, body }
  }

  private keep(g: Group, diff: Diff, bytes: number): void {
    g.history.push({ diff, bytes })
    g.historyBytes += bytes
    while (g.history.length > this.opts.historyDiffsMax || (g.historyBytes > this.opts.historyBytesMax && g.history.length > 0)) {
      g.historyBytes -= g.history.shift()!.bytes
    }
  }

  /**
   * The diffs that take a subscriber from offset `from` to now, or undefined when they are not
   * known (older than the kept history, in the future, or ambiguous: a change that came with no
   * new event of the workspace, from an async projector, shares its offset with the state before it).
   */
  private diffsSince(g: Group, from: number, now: number): Diff[] | undefined {
    if (from > now || from <= g.ambiguousUpTo) return undefined
    if (from >= g.stateSince) return []
    const i = g.history.findIndex((h) => h.diff.toOffset > from)
    if (i < 0 || g.history[i]!.diff.fromOffset > from) return undefined
    return g.history.slice(i).map((h) => h.diff)
  }

  private reply(req: EngineRequest, g: Group, body: Record<string, unknown>): EngineReply {
    return { reqId: req.reqId, status: 200, body: renderObject(req.format, body), retryAfterS: 0, groupId: g.id }
  }

  /** At the bound, the group idle the longest goes; if every group has subscribers, 503. */
  private makeRoom(nowMs: number): void {
    this.dropIdle(nowMs)
    if (this.groups.size < this.opts.groupsMax) return
    const oldest = this.idle.values().next().value
    if (oldest === undefined) throw new BusyError(`this partition has ${this.opts.groupsMax} subscription groups (subscriptionGroupsMax)`)
    this.drop(oldest)
  }

  /** Drops the groups whose grace has passed; costs only what it drops. */
  dropIdle(nowMs: number): void {
    for (const g of this.idle) {
      if (g.idleUntilMs > nowMs) return
      this.drop(g)
    }
  }

  private drop(g: Group): void {
    this.groups.delete(g.id)
    this.idle.delete(g)
    if (this.byKey.get(g.key) === g) this.byKey.delete(g.key)
    this.dirty.delete(g)
    this.unindexReads(g)
  }

  private indexReads(g: Group): void {
    for (const pk of g.reads.keys()) {
      let set = this.index.get(pk)
      if (set === undefined) this.index.set(pk, (set = new Set()))
      set.add(g)
    }
  }

  private unindexReads(g: Group): void {
    for (const pk of g.reads.keys()) {
      const set = this.index.get(pk)
      if (set === undefined) continue
      set.delete(g)
      if (set.size === 0) this.index.delete(pk)
    }
  }
}

function endPush(groupId: number, e: VvmError): EnginePush {
  return { groupId, end: true, body: encodeEnd(e) }
}

function snapshotRows(g: Group): { key: RowKey; row: Row }[] {
  return g.order.map((key) => ({ key, row: g.rows.get(key)!.row }))
}

function sameKeys(a: readonly RowKey[], b: readonly RowKey[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * Each row's key: the record id for docs and collections, the clustering values for view rows,
 * `sys.ID` for query rows that carry it. When those are missing or repeat (a `keys` cut, a query
 * without ids), the row's position is its key.
 */
function rowKeys(app: AppDef, read: EngineRequest, rows: readonly Row[]): RowKey[] {
  let keyOf: (r: Row) => RowKey | undefined
  const view = read.op === Op.VIEW ? app.views.get(read.qname) : undefined
  if (view !== undefined) {
    keyOf = (r) => {
      const parts = view.cc.map((f) => r[f.name])
      return parts.some((p) => p === undefined) ? undefined : JSON.stringify(parts)
    }
  } else {
    keyOf = (r) => (typeof r['sys.ID'] === 'number' ? r['sys.ID'] : undefined)
  }
  const keys: RowKey[] = []
  const seen = new Set<RowKey>()
  for (const r of rows) {
    const k = keyOf(r)
    if (k === undefined || seen.has(k)) return rows.map((_, i) => i)
    seen.add(k)
    keys.push(k)
  }
  return keys
}

/** Subscriptions are grouped by what they read and by who reads it (docs/subscriptions.md). */
function groupKey(read: EngineRequest): string {
  return JSON.stringify([read.app, read.wsid, read.op, read.qname, read.id, stable(read.params ?? null), principalKey(read.principal ?? ANONYMOUS)])
}

/**
 * Owners read everything; callers whose roles come from their token alone share by roles; a
 * login with stored grants shares only with itself (a grant or revoke changes its rights alone).
 */
function principalKey(p: Principal): string {
  if (p.roles.includes(ROLE_OWNER)) return 'owner'
  const roles = [...p.roles].sort().join(',')
  return needsStoredGrants(p) ? `login:${p.login}:${roles}` : `roles:${roles}`
}

function stable(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stable)
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(v).sort()) out[k] = stable((v as Record<string, unknown>)[k])
    return out
  }
  return v
}

function resumeOffset(body: unknown): number | undefined {
  if (body === undefined || body === null) return undefined
  if (typeof body !== 'object' || Array.isArray(body)) throw new BadRequestError('the body of a subscribe must be a map {resumeFrom?}')
  const r = (body as Record<string, unknown>).resumeFrom
  if (r === undefined || r === null) return undefined
  if (!Number.isSafeInteger(r) || (r as number) < 0) throw new BadRequestError('resumeFrom must be an offset: an integer >= 0')
  return r as number
}
