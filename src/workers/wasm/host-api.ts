// The state API of a WASM extension: the host side of `vvm.host(op, payload)` for one
// extension call (docs/extensions.md, "Host operations").
//
// Host calls are synchronous (the guest waits inside `invoke`) while the state API may need
// storage (`record()` is a Promise). A read the host can answer without I/O (this call's own
// writes, the command's staging, the partition's record cache, or a value read earlier in the
// same call) is answered at once; any other read throws NEEDS_READ, which unwinds the guest.
// The runner then awaits that read, caches it, and runs the call again from the start. That
// is safe because guests are deterministic (their only inputs are the call's input and the
// host's replies; the ABI offers no clock and no randomness) and because nothing a run
// writes leaves this session before the whole call succeeds: writes are buffered here and
// applied to the processor's state by `apply()`, after the last run returned.

import assert from 'node:assert/strict'
import { Packr } from 'msgpackr'
import type { AppDef, ResolvedView } from '../../shared/appdef/types.js'
import type { Principal, RecordRow, Row, ViewRange } from '../../shared/appdef/state.js'
import type { CommandState, ProjectorState, QueryState } from '../../shared/appdef/state.js'
import { validateFields } from '../../shared/appdef/validate.js'
import { NotFoundError, VvmError } from '../../shared/errors.js'
import { compareBytes, hexOf } from '../../shared/storage/keys.js'
import { viewPk } from '../../shared/layout.js'
import { ccPrefixLength, decodeViewRow, encodeCcTuple, encodePkTuple, encodeViewValue } from '../../shared/view-codec.js'
import { CommandTx, NOT_CACHED } from '../command/command-tx.js'
import type { ProcessorKind } from '../extensions.js'
import { VIEW_READ_ROWS_MAX, rowKeysOf } from '../read-views.js'

/** Host operations: the `op` of `vvm.host(op, ptr, len)`. Payloads and replies are MessagePack. */
export const HostOp = {
  /** `id` → record | absent; `[id, ...]` → `[record | nil, ...]` */
  RECORD_GET: 1,
  /** `[view, key]` → row | absent */
  VIEW_GET: 2,
  /** `[view, pk, range | nil]` → `[row, ...]` (at most VIEW_READ_ROWS_MAX) */
  VIEW_READ: 3,
  /** commands: `[table, fields]` → new id */
  RECORD_CREATE: 4,
  /** commands: `[id, fields]` → absent */
  RECORD_UPDATE: 5,
  /** projectors: `[view, key, value]` → absent */
  VIEW_PUT: 6,
  /** commands, queries: nothing → `{login, roles}`; projectors: absent */
  PRINCIPAL: 7,
  /** UTF-8 text (not MessagePack) → absent; the guest traps next and the text is in the error */
  ABORT: 8,
  /** `[[op, payload], ...]` of RECORD_UPDATE / VIEW_PUT → absent */
  WRITES: 9,
} as const

/** The ABI's codec: plain MessagePack, integers past 32 bits decoded as numbers. */
export const abiCodec = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true, int64AsType: 'number' })

/** Thrown from a host call whose read needs storage; never leaves the runner. */
export const NEEDS_READ = new Error('a host call needs a storage read: the call runs again')

/** Why 1000: an extension writing more per call is a bulk job; the bound keeps a call's buffer small. */
export const WRITES_PER_CALL_MAX = 1000
/** Why 1000: as many as WRITES_PER_CALL_MAX; fetched at once when they need storage. */
export const RECORDS_PER_GET_MAX = 1000
/** Why 1024: the text is for a log line and an error message, not a dump. */
const ABORT_TEXT_MAX = 1024

type AnyState = CommandState | QueryState | ProjectorState

type Write =
  | { op: typeof HostOp.RECORD_CREATE; id: number; table: string; fields: Row }
  | { op: typeof HostOp.RECORD_UPDATE; id: number; fields: Row }
  | { op: typeof HostOp.VIEW_PUT; view: string; key: Row; value: Row }

interface ViewPut {
  view: ResolvedView
  key: Row
  pk: Uint8Array
  cc: Uint8Array
  value: Uint8Array
}

/** The host side of one extension call, across its runs. */
export class HostSession {
  /** Values as they were before the call (kept across runs: each was read once). */
  private readonly records = new Map<number, RecordRow | undefined>()
  private readonly views = new Map<string, Row | undefined>()
  private readonly ranges = new Map<string, Row[]>()
  /** Set with NEEDS_READ: the read to await before the next run. */
  pending: (() => Promise<void>) | undefined
  /** What the guest reported through ABORT in this run. */
  abortText: string | undefined

  // This run's writes, in order, and their overlays for reads.
  private writes: Write[] = []
  private readonly created = new Map<number, { table: string; fields: Row }>()
  private readonly updated = new Map<number, Row>()
  private readonly viewPuts = new Map<string, ViewPut>()

  constructor(readonly app: AppDef, readonly kind: ProcessorKind, readonly qname: string, readonly state: AnyState) {}

  get wsid(): number {
    return this.state.wsid
  }

  beginRun(): void {
    this.pending = undefined
    this.abortText = undefined
    this.writes = []
    this.created.clear()
    this.updated.clear()
    this.viewPuts.clear()
  }

  /** The `host` callback of `invoke`; a bound arrow so that it is made once per call. */
  readonly callback = (op: number, payload: Buffer): Uint8Array | null => {
    if (op === HostOp.ABORT) {
      this.abortText = payload.toString('utf8', 0, Math.min(payload.length, ABORT_TEXT_MAX))
      return null
    }
    const reply = this.answer(op, decodePayload(payload, op, this.qname))
    return reply === undefined ? null : abiCodec.pack(reply)
  }

  /** One host operation; undefined means "absent" (the guest gets -1). */
  private answer(op: number, a: unknown): unknown {
    switch (op) {
      case HostOp.RECORD_GET:
        if (Array.isArray(a)) {
          if (a.length > RECORDS_PER_GET_MAX) throw new VvmError('EXTENSION_LIMIT', `${this.qname}: more than ${RECORDS_PER_GET_MAX} records in one RECORD_GET`, { qname: this.qname })
          this.prefetchRecords(a.map((id) => asInt(id, 'id', this.qname)))
          return a.map((id) => this.record(id as number) ?? null)
        }
        return this.record(asInt(a, 'id', this.qname))
      case HostOp.VIEW_GET: {
        const [view, key] = tuple(a, 2, 'VIEW_GET [view, key]', this.qname)
        return this.viewGet(asString(view, 'view', this.qname), asRow(key, 'key', this.qname))
      }
      case HostOp.VIEW_READ: {
        const [view, pk, range] = tuple(a, 3, 'VIEW_READ [view, pk, range]', this.qname)
        return this.viewRead(asString(view, 'view', this.qname), asRow(pk, 'pk', this.qname), asRange(range, this.qname))
      }
      case HostOp.RECORD_CREATE: {
        const [table, fields] = tuple(a, 2, 'RECORD_CREATE [table, fields]', this.qname)
        return this.create(asString(table, 'table', this.qname), asRow(fields, 'fields', this.qname))
      }
      case HostOp.RECORD_UPDATE:
      case HostOp.VIEW_PUT:
        this.write(op, a)
        return undefined
      case HostOp.WRITES:
        this.writeAll(a)
        return undefined
      case HostOp.PRINCIPAL:
        // A sync projector's state is its command's transaction; projectors get no principal all the same.
        return this.kind !== 'projector' && 'principal' in this.state ? principalOf(this.state.principal) : undefined
      default:
        throw abiError(this.qname, `unknown host operation ${op}`)
    }
  }

  /** A list of writes `[[op, payload], ...]` (WRITES, or the call's output). */
  writeAll(list: unknown): void {
    if (!Array.isArray(list)) throw abiError(this.qname, 'writes must be an array of [op, payload]')
    for (const w of list) {
      const [op, payload] = tuple(w, 2, 'a write [op, payload]', this.qname)
      this.write(op, payload)
    }
  }

  /** A deferred write (a host call, WRITES, or the call's output): checked now, applied by `apply`. */
  write(op: unknown, a: unknown): void {
    if (this.writes.length >= WRITES_PER_CALL_MAX) throw new VvmError('EXTENSION_LIMIT', `${this.qname}: more than ${WRITES_PER_CALL_MAX} writes in one call`, { qname: this.qname })
    if (op === HostOp.RECORD_UPDATE) {
      if (this.kind !== 'command') throw abiError(this.qname, `a ${this.kind} cannot update records`)
      const [id, fields] = tuple(a, 2, 'RECORD_UPDATE [id, fields]', this.qname)
      const n = asInt(id, 'id', this.qname)
      const f = asRow(fields, 'fields', this.qname)
      // Validated against the record's table when applied (tx.update), as for a builtin.
      this.updated.set(n, { ...this.updated.get(n), ...f })
      this.writes.push({ op, id: n, fields: f })
    } else if (op === HostOp.VIEW_PUT) {
      if (this.kind !== 'projector') throw abiError(this.qname, `a ${this.kind} cannot write views`)
      const [view, key, value] = tuple(a, 3, 'VIEW_PUT [view, key, value]', this.qname)
      const v = this.view(asString(view, 'view', this.qname))
      const k = asRow(key, 'key', this.qname)
      const val = asRow(value, 'value', this.qname)
      const { pk, cc, mapKey } = rowKeysOf(v, this.wsid, k)
      this.viewPuts.set(mapKey, { view: v, key: k, pk, cc, value: encodeViewValue(v, val) })
      this.writes.push({ op, view: v.qname, key: k, value: val })
    } else {
      throw abiError(this.qname, `operation ${String(op)} is not a write`)
    }
  }

  private create(table: string, fields: Row): number {
    if (this.kind !== 'command' || !(this.state instanceof CommandTx)) throw abiError(this.qname, `a ${this.kind} cannot create records`)
    const t = this.state.table(table)
    const f = validateFields(t.fields, fields, 'full', t.qname, 'fields')
    // The id tx.create will give when applied: creates are applied in order, nothing else
    // allocates ids in between (asserted in apply).
    const id = this.state.wsHeadStaged.id + this.created.size
    this.created.set(id, { table: t.qname, fields: f })
    if (this.writes.length >= WRITES_PER_CALL_MAX) throw new VvmError('EXTENSION_LIMIT', `${this.qname}: more than ${WRITES_PER_CALL_MAX} writes in one call`, { qname: this.qname })
    this.writes.push({ op: HostOp.RECORD_CREATE, id, table: t.qname, fields: f })
    return id
  }

  /** After a successful run: this run's writes into the processor's state, in order. */
  async apply(): Promise<void> {
    for (const w of this.writes) {
      switch (w.op) {
        case HostOp.RECORD_CREATE: {
          const id = (this.state as CommandState).create(w.table, w.fields)
          assert.equal(id, w.id, 'a WASM create got another id than the one predicted')
          break
        }
        case HostOp.RECORD_UPDATE:
          await (this.state as CommandState).update(w.id, w.fields)
          break
        case HostOp.VIEW_PUT:
          (this.state as ProjectorState).viewPut(w.view, w.key, w.value)
          break
      }
    }
  }

  // Reads: this run's writes over the values before the call.

  private record(id: number): RecordRow | undefined {
    if (!Number.isSafeInteger(id) || id <= 0) return undefined
    const c = this.created.get(id)
    const base: RecordRow | undefined = c !== undefined
      ? { 'sys.ID': id, 'sys.QName': c.table, 'sys.IsActive': true, ...c.fields }
      : this.baseRecord(id)
    const u = this.updated.get(id)
    return base === undefined || u === undefined ? base : { ...base, ...u }
  }

  private baseRecord(id: number): RecordRow | undefined {
    if (this.records.has(id)) return this.records.get(id)
    if (this.state instanceof CommandTx) {
      const now = this.state.recordNow(id)
      if (now !== NOT_CACHED) {
        this.records.set(id, now)
        return now
      }
    }
    return this.needs(async () => { this.records.set(id, await this.state.record(id)) })
  }

  /** Several records: fetched together if any needs storage (one run more, not one per record). */
  private prefetchRecords(ids: readonly number[]): void {
    const missing = ids.filter((id) => Number.isSafeInteger(id) && id > 0 && !this.created.has(id) && !this.records.has(id)
      && !(this.state instanceof CommandTx && this.cacheNow(this.state, id)))
    if (missing.length === 0) return
    this.needs(async () => {
      const rows = await Promise.all(missing.map((id) => this.state.record(id)))
      missing.forEach((id, i) => this.records.set(id, rows[i]))
    })
  }

  private cacheNow(tx: CommandTx, id: number): boolean {
    const now = tx.recordNow(id)
    if (now === NOT_CACHED) return false
    this.records.set(id, now)
    return true
  }

  private viewGet(view: string, key: Row): Row | undefined {
    const v = this.view(view)
    const { cc, mapKey: k } = rowKeysOf(v, this.wsid, key)
    const put = this.viewPuts.get(k)
    if (put !== undefined) return decodeViewRow(v, key, cc, put.value)
    if (this.views.has(k)) return this.views.get(k)
    if (this.state instanceof CommandTx) {
      const now = this.state.viewNow(view, key)
      if (now !== NOT_CACHED) {
        this.views.set(k, now)
        return now
      }
    }
    return this.needs(async () => { this.views.set(k, await this.state.viewGet(view, key)) })
  }

  private viewRead(view: string, pkRow: Row, range: ViewRange): Row[] {
    const v = this.view(view)
    const rangeKey = `${v.qname}\u0000${JSON.stringify([pkRow, range])}`
    const base = this.ranges.get(rangeKey)
    if (base === undefined) {
      return this.needs(async () => {
        const rows: Row[] = []
        for await (const r of this.state.viewRead(view, pkRow, range)) rows.push(r)
        this.ranges.set(rangeKey, rows)
      })
    }
    if (this.viewPuts.size === 0) return base
    return this.mergeRange(v, pkRow, range, base)
  }

  /** The base rows with this run's puts of the same partition key in the range (as readMergedView). */
  private mergeRange(v: ResolvedView, pkRow: Row, range: ViewRange, base: readonly Row[]): Row[] {
    const pk = viewPk(this.wsid, v.qname, encodePkTuple(v, pkRow))
    const from = range.from ? encodeCcTuple(v, range.from, ccPrefixLength(v, range.from)) : undefined
    const to = range.to ? encodeCcTuple(v, range.to, ccPrefixLength(v, range.to)) : undefined
    const rows = new Map<string, { cc: Uint8Array; row: Row }>()
    for (const row of base) {
      const cc = encodeCcTuple(v, row)
      rows.set(hexOf(cc), { cc, row })
    }
    for (const p of this.viewPuts.values()) {
      if (p.view !== v || compareBytes(p.pk, pk) !== 0) continue
      if (from !== undefined && compareBytes(p.cc, from) < 0) continue
      if (to !== undefined && compareBytes(p.cc, to) >= 0) continue
      rows.set(hexOf(p.cc), { cc: p.cc, row: decodeViewRow(v, pkRow, p.cc, p.value) })
    }
    const sign = range.reverse === true ? -1 : 1
    const limit = Math.min(range.limit ?? VIEW_READ_ROWS_MAX, VIEW_READ_ROWS_MAX)
    return [...rows.values()].sort((a, b) => compareBytes(a.cc, b.cc) * sign).slice(0, limit).map((r) => r.row)
  }

  private view(qname: string): ResolvedView {
    const v = this.app.views.get(qname)
    if (v === undefined) throw new NotFoundError(`view ${qname} is not defined in app ${this.app.qname}`, qname)
    return v
  }

  private needs(read: () => Promise<void>): never {
    this.pending = read
    throw NEEDS_READ
  }
}

function principalOf(p: Principal): Row {
  return { login: p.login, roles: [...p.roles] }
}

function decodePayload(payload: Buffer, op: number, qname: string): unknown {
  if (payload.length === 0) return undefined
  try {
    return abiCodec.unpack(payload)
  } catch (err) {
    throw abiError(qname, `the payload of host operation ${op} is not MessagePack: ${(err as Error).message}`)
  }
}

export function abiError(qname: string, message: string): VvmError {
  return new VvmError('EXTENSION_ABI', `${qname}: ${message}`, { qname })
}

function tuple(a: unknown, n: number, what: string, qname: string): unknown[] {
  if (!Array.isArray(a) || a.length < n - 1 || a.length > n) throw abiError(qname, `expected ${what}`)
  return a
}

function asInt(v: unknown, what: string, qname: string): number {
  if (!Number.isSafeInteger(v)) throw abiError(qname, `${what} must be an integer, got ${typeof v}`)
  return v as number
}

function asString(v: unknown, what: string, qname: string): string {
  if (typeof v !== 'string') throw abiError(qname, `${what} must be a string, got ${typeof v}`)
  return v
}

function asRow(v: unknown, what: string, qname: string): Row {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) throw abiError(qname, `${what} must be a map`)
  return v as Row
}

function asRange(v: unknown, qname: string): ViewRange {
  if (v === undefined || v === null) return {}
  const r = asRow(v, 'range', qname)
  const out: { from?: Row; to?: Row; limit?: number; reverse?: boolean } = {}
  if (r.from !== undefined && r.from !== null) out.from = asRow(r.from, 'range.from', qname)
  if (r.to !== undefined && r.to !== null) out.to = asRow(r.to, 'range.to', qname)
  if (r.limit !== undefined && r.limit !== null) {
    const limit = asInt(r.limit, 'range.limit', qname)
    if (limit < 1) throw abiError(qname, `range.limit must be positive, got ${limit}`)
    out.limit = limit
  }
  if (r.reverse !== undefined && r.reverse !== null) {
    if (typeof r.reverse !== 'boolean') throw abiError(qname, 'range.reverse must be a bool')
    out.reverse = r.reverse
  }
  return out
}
