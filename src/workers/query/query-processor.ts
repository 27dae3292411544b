// The query processor: docs, cdocs, views and builtin queries, read-only against storage.
// Runs in the piscina pool (shared storages) or, for the non-shared `mem` storage, inside the
// partition worker that owns the workspace. Its authorize stage resolves the caller's roles in
// the workspace (one storage read of the stored grants, none for owners and anonymous callers)
// and refuses (403) before anything else is read; a field-limited `select` grant cuts the rows
// and refuses filters and sorts by other fields.

import type { AppDef, ResolvedView } from '../../shared/appdef/types.js'
import type { Principal, QueryState, RecordRow, Row, ViewRange } from '../../shared/appdef/state.js'
import type { FieldGrant } from '../../shared/appdef/acl.js'
import { ANONYMOUS, authorize, effectiveRoles, needsStoredGrants, projectRow } from '../../shared/authz.js'
import { validateFields } from '../../shared/appdef/validate.js'
import type { ExtensionRunner } from '../extensions.js'
import { Op, type EngineReply, type EngineRequest } from '../../shared/engine-messages.js'
import { BadRequestError, NotFoundError, VvmError, toVvmError } from '../../shared/errors.js'
import { collectionPk, decodeStored, grantsKey, recordCc, recordsPk, toRecordRow, viewPk, type StoredGrants, type StoredRecord } from '../../shared/layout.js'
import { renderError, renderObject, renderResults } from '../../shared/reply.js'
import { prefixEnd, readU64be } from '../../shared/storage/keys.js'
import type { IAppStorage } from '../../shared/storage/types.js'
import { ccPrefixLength, decodeViewRow, encodeCcTuple, encodePkTuple } from '../../shared/view-codec.js'
import { getMergedView, readMergedView, readViewRange, type ViewStaging } from '../read-views.js'
import { decodeBody } from '../decode-body.js'
import { finishRows, parseConstraints, type Constraints } from './constraints.js'

/** Why 100,000: a filter over more rows than this is a full scan that belongs in a view. */
export const SCAN_ROWS_MAX = 100_000

export type StorageOf = (app: string) => IAppStorage

export class QueryProcessor {
  constructor(readonly apps: ReadonlyMap<string, AppDef>, readonly storageOf: StorageOf, readonly extensions: ExtensionRunner) {}

  async run(req: EngineRequest): Promise<EngineReply> {
    try {
      const app = this.apps.get(req.app)
      if (app === undefined) throw new NotFoundError(`app ${req.app} is not deployed`)
      const storage = this.storageOf(req.app)
      const principal = await this.principalOf(storage, req)
      const body = await this.dispatch(app, storage, req, principal)
      return { reqId: req.reqId, status: 200, body, retryAfterS: 0 }
    } catch (err) {
      const e = toVvmError(err)
      return { reqId: req.reqId, status: e.status, body: renderError(req.format, e), retryAfterS: e.retryAfterS ?? 0 }
    }
  }

  /** The caller's roles in the workspace: its token's, the grants stored here, `public`. */
  private async principalOf(storage: IAppStorage, req: EngineRequest): Promise<Principal> {
    const given = req.principal ?? ANONYMOUS
    if (!needsStoredGrants(given)) return effectiveRoles(given, [])
    const k = grantsKey(req.wsid, given.login)
    const bytes = await storage.get(k.pk, k.cc)
    return effectiveRoles(given, bytes === undefined ? [] : decodeStored<StoredGrants>(bytes).r)
  }

  private async dispatch(app: AppDef, storage: IAppStorage, req: EngineRequest, p: Principal): Promise<Uint8Array> {
    const read = await this.read(app, storage, req, p)
    if (!Array.isArray(read)) {
      if (read === undefined) throw new NotFoundError(`${req.qname} ${req.id} not found in workspace ${req.wsid}`, req.qname)
      return renderObject(req.format, read)
    }
    return renderResults(req.format, read)
  }

  /**
   * What a subscription sees of a read (docs/subscriptions.md): its rows, unrendered, with the
   * caller's rights applied. One doc is a list of zero or one rows (a missing doc is no error).
   * Every storage read goes through `storage`, so a tracking storage learns the read set.
   */
  async rowsOf(storage: IAppStorage, req: EngineRequest): Promise<Row[]> {
    const app = this.apps.get(req.app)
    if (app === undefined) throw new NotFoundError(`app ${req.app} is not deployed`)
    const read = await this.read(app, storage, req, await this.principalOf(storage, req))
    return Array.isArray(read) ? read : read === undefined ? [] : [read]
  }

  /** One doc (undefined: not found) or the rows of a collection, view or query. */
  private async read(app: AppDef, storage: IAppStorage, req: EngineRequest, p: Principal): Promise<Row | undefined | Row[]> {
    const state = new StorageReadState(app, storage, req.wsid, p)
    switch (req.op) {
      case Op.DOC_GET: {
        if (!app.tables.has(req.qname)) throw new NotFoundError(`table ${req.qname} is not defined in app ${app.qname}`, req.qname)
        const allowed = authorize(app, p, 'select', req.qname, req.wsid)
        const row = await state.record(req.id)
        if (row === undefined || row['sys.QName'] !== req.qname) return undefined
        return allowed === null ? row : projectRow(row, allowed)
      }
      case Op.CDOCS: {
        if (!app.tables.has(req.qname)) throw new NotFoundError(`table ${req.qname} is not defined in app ${app.qname}`, req.qname)
        const c = parseConstraints(req.params)
        const allowed = authorize(app, p, 'select', req.qname, req.wsid, fieldsUsed(c))
        return cut(await this.collection(storage, req.wsid, req.qname, c), allowed)
      }
      case Op.VIEW: {
        const view = app.views.get(req.qname)
        if (view === undefined) throw new NotFoundError(`view ${req.qname} is not defined in app ${app.qname}`, req.qname)
        const c = parseConstraints(req.params)
        const allowed = authorize(app, p, 'select', req.qname, req.wsid, fieldsUsed(c))
        return cut(await this.viewRows(storage, view, req.wsid, c), allowed)
      }
      case Op.QUERY: {
        const q = app.queries.get(req.qname)
        if (q === undefined) throw new NotFoundError(`query ${req.qname} is not defined in app ${app.qname}`, req.qname)
        authorize(app, p, 'execute', req.qname, req.wsid)
        const c = parseConstraints(req.params)
        const rawArgs = req.params?.args ?? decodeBody(req.body)
        const args = validateFields(q.args, rawArgs, 'full', req.qname, 'args')
        const rows: Row[] = []
        for await (const r of toAsync(await this.extensions.query(app, q, args, state))) {
          if (typeof r !== 'object' || r === null) throw new VvmError('INTERNAL', `query ${req.qname} yielded a ${typeof r}, not an object`)
          if (c.filter(r)) rows.push(r)
          if (rows.length > SCAN_ROWS_MAX) throw new BadRequestError(`query ${req.qname} yields more than ${SCAN_ROWS_MAX} rows`, req.qname)
        }
        return finishRows(rows, c)
      }
      default:
        throw new BadRequestError(`operation ${req.op} is not a read`)
    }
  }

  private async collection(storage: IAppStorage, wsid: number, table: string, c: Constraints): Promise<Row[]> {
    const needsAll = Object.keys(c.where).length > 0 || c.order.length > 0
    // Without filter or order only the page itself is read.
    const idsMax = needsAll ? SCAN_ROWS_MAX + 1 : c.skip + c.limit
    const ccs: Uint8Array[] = []
    for await (const r of storage.read(collectionPk(wsid, table), { limit: idsMax })) ccs.push(r.cc)
    if (ccs.length > SCAN_ROWS_MAX) throw new BadRequestError(`collection ${table} has more than ${SCAN_ROWS_MAX} records: filter it through a view`, table)
    const page = needsAll ? ccs : ccs.slice(c.skip)
    const values = await storage.getBatch(recordsPk(wsid), page)
    const rows: Row[] = []
    values.forEach((v, i) => {
      if (v === undefined) return
      const row = toRecordRow(readU64be(page[i]!), decodeStored<StoredRecord>(v))
      if (c.filter(row)) rows.push(row)
    })
    return finishRows(rows, needsAll ? c : { ...c, skip: 0 })
  }

  private async viewRows(storage: IAppStorage, view: ResolvedView, wsid: number, c: Constraints): Promise<Row[]> {
    const eq: Row = {}
    for (const [field, ops] of Object.entries(c.where)) if ('$eq' in ops) eq[field] = ops.$eq
    for (const f of view.pk) {
      if (eq[f.name] === undefined) throw new BadRequestError(`view ${view.qname}: where must give every partition key field with a value; missing '${f.name}'`, view.qname)
    }
    const pk = viewPk(wsid, view.qname, encodePkTuple(view, eq))
    // Leading clustering columns given by equality narrow the range to their prefix.
    const n = ccPrefixLength(view, eq)
    const prefix = n > 0 ? encodeCcTuple(view, eq, n) : undefined
    const to = prefix === undefined ? undefined : prefixEnd(prefix)
    const rows: Row[] = []
    let scanned = 0
    for await (const r of readViewRange(storage, pk, prefix, to, SCAN_ROWS_MAX + 1, false)) {
      if (++scanned > SCAN_ROWS_MAX) throw new BadRequestError(`view ${view.qname}: more than ${SCAN_ROWS_MAX} rows match the key; narrow the where`, view.qname)
      const row = decodeViewRow(view, eq, r.cc, r.value)
      if (c.filter(row)) rows.push(row)
      if (c.order.length === 0 && rows.length >= c.skip + c.limit) break
    }
    return finishRows(rows, c)
  }
}

/** QueryState over committed storage; `stagings` add uncommitted view rows (async projectors). */
export class StorageReadState implements QueryState {
  constructor(
    readonly app: AppDef, readonly storage: IAppStorage, readonly wsid: number, readonly principal: Principal,
    protected readonly stagings: readonly ViewStaging[] = [],
  ) {}

  async record(id: number): Promise<RecordRow | undefined> {
    if (!Number.isSafeInteger(id) || id <= 0) return undefined
    const bytes = await this.storage.get(recordsPk(this.wsid), recordCc(id))
    return bytes === undefined ? undefined : toRecordRow(id, decodeStored<StoredRecord>(bytes))
  }

  viewGet(view: string, key: Row): Promise<Row | undefined> {
    return getMergedView(this.storage, this.stagings, this.view(view), this.wsid, key)
  }

  viewRead(view: string, pkRow: Row, range: ViewRange = {}): AsyncIterable<Row> {
    return readMergedView(this.storage, this.stagings, this.view(view), this.wsid, pkRow, range)
  }

  protected view(qname: string): ResolvedView {
    const v = this.app.views.get(qname)
    if (v === undefined) throw new NotFoundError(`view ${qname} is not defined in app ${this.app.qname}`, qname)
    return v
  }
}

/** The fields a read filters, sorts or picks by; the system fields are always readable. */
function fieldsUsed(c: Constraints): string[] {
  const fields = [...Object.keys(c.where), ...c.order.map((o) => o.field), ...(c.keys ?? [])]
  return fields.filter((f) => !f.startsWith('sys.'))
}

function cut(rows: Row[], allowed: FieldGrant): Row[] {
  return allowed === null ? rows : rows.map((r) => projectRow(r, allowed))
}

async function* toAsync<T>(it: Iterable<T> | AsyncIterable<T>): AsyncIterable<T> {
  yield* it
}
