// One command's transaction: staged writes on top of its batch, and the state API that its
// extension and the sync projectors see (CommandState, ProjectorState).

import type { AppDef, ResolvedTable, ResolvedView } from '../../shared/appdef/types.js'
import type { CommandState, ProjectorState, RecordRow, Row, ViewRange } from '../../shared/appdef/state.js'
import { validateFields } from '../../shared/appdef/validate.js'
import { NotFoundError, ValidationError, VvmError } from '../../shared/errors.js'
import { toRecordRow, viewPk, type StoredRecord, type StoredWsHead } from '../../shared/layout.js'
import { ccPrefixLength, decodeViewRow, encodeCcTuple, encodePkTuple, encodeViewValue, viewRowKeys } from '../../shared/view-codec.js'
import { compareBytes } from '../../shared/storage/keys.js'
import { recordKey, type PartitionState } from './partition-state.js'
import { Staging, viewRowKey } from './staging.js'
import { readViewRange } from '../read-views.js'

/** Why 100: a command creating more records than this is a bulk import, not a command. */
export const RECORDS_PER_COMMAND_MAX = 100
export const VIEW_READ_ROWS_MAX = 10_000

export class CommandTx implements CommandState, ProjectorState {
  readonly staged = new Staging()
  private head: StoredWsHead | undefined
  createdCount = 0

  constructor(
    readonly app: AppDef,
    readonly part: PartitionState,
    readonly batch: Staging,
    readonly wsid: number,
  ) {}

  async loadWorkspace(): Promise<StoredWsHead> {
    if (this.head === undefined) {
      const h = this.batch.wsHeads.get(this.wsid) ?? (await this.part.wsHead(this.wsid))
      this.head = { ...h }
    }
    return this.head
  }

  /** The workspace head as this command leaves it; staged on success. */
  get wsHeadStaged(): StoredWsHead {
    if (this.head === undefined) throw new VvmError('INTERNAL', 'workspace not loaded')
    return this.head
  }

  async storedRecord(id: number): Promise<StoredRecord | undefined> {
    const k = recordKey(this.wsid, id)
    const staged = this.staged.records.get(k) ?? this.batch.records.get(k)
    if (staged !== undefined) return staged.rec
    return this.part.record(this.wsid, id)
  }

  async record(id: number): Promise<RecordRow | undefined> {
    if (!Number.isSafeInteger(id) || id <= 0) return undefined
    const rec = await this.storedRecord(id)
    return rec === undefined ? undefined : toRecordRow(id, rec)
  }

  create(table: string, fields: Row): number {
    const t = this.table(table)
    if (++this.createdCount > RECORDS_PER_COMMAND_MAX) throw new ValidationError(`a command may create at most ${RECORDS_PER_COMMAND_MAX} records`)
    const f = validateFields(t.fields, fields, 'full', t.qname, 'fields')
    const head = this.wsHeadStaged
    const id = head.id++
    this.staged.records.set(recordKey(this.wsid, id), { wsid: this.wsid, id, rec: { q: t.qname, a: true, f }, isNew: true })
    return id
  }

  async update(id: number, fields: Row): Promise<void> {
    const prev = await this.storedRecord(id)
    if (prev === undefined) throw new NotFoundError(`record ${id} not found in workspace ${this.wsid}`)
    const t = this.table(prev.q)
    const f = validateFields(t.fields, fields, 'partial', t.qname, 'fields')
    this.stageRecord(id, { q: prev.q, a: prev.a, f: { ...prev.f, ...f } })
  }

  /** Activation flag changes (deactivate through DELETE). */
  async setActive(id: number, active: boolean): Promise<void> {
    const prev = await this.storedRecord(id)
    if (prev === undefined) throw new NotFoundError(`record ${id} not found in workspace ${this.wsid}`)
    this.stageRecord(id, { q: prev.q, a: active, f: prev.f })
  }

  private stageRecord(id: number, rec: StoredRecord): void {
    const k = recordKey(this.wsid, id)
    const isNew = this.staged.records.get(k)?.isNew ?? false
    this.staged.records.set(k, { wsid: this.wsid, id, rec, isNew })
  }

  async viewGet(view: string, key: Row): Promise<Row | undefined> {
    const v = this.view(view)
    const { pk, cc } = viewRowKeys(v, this.wsid, key)
    const rk = viewRowKey(pk, cc)
    const staged = this.staged.views.get(rk) ?? this.batch.views.get(rk)
    if (staged !== undefined) return decodeViewRow(v, key, cc, staged.value)
    const bytes = await this.part.storage.get(pk, cc)
    return bytes === undefined ? undefined : decodeViewRow(v, key, cc, bytes)
  }

  async *viewRead(view: string, pkRow: Row, range: ViewRange = {}): AsyncIterable<Row> {
    const v = this.view(view)
    const limit = Math.min(range.limit ?? VIEW_READ_ROWS_MAX, VIEW_READ_ROWS_MAX)
    const pk = viewPk(this.wsid, v.qname, encodePkTuple(v, pkRow))
    const from = range.from ? encodeCcTuple(v, range.from, ccPrefixLength(v, range.from)) : undefined
    const toPrefix = range.to ? encodeCcTuple(v, range.to, ccPrefixLength(v, range.to)) : undefined
    // Rows from storage, then staged rows of the same pk in range replace or join them.
    const rows = new Map<string, { cc: Uint8Array; value: Uint8Array }>()
    for await (const r of readViewRange(this.part.storage, pk, from, toPrefix, limit, range.reverse === true)) rows.set(viewRowKey(pk, r.cc), r)
    for (const staging of [this.batch, this.staged]) {
      for (const [k, s] of staging.views) {
        if (compareBytes(s.pk, pk) !== 0) continue
        if (from && compareBytes(s.cc, from) < 0) continue
        if (toPrefix && compareBytes(s.cc, toPrefix) >= 0) continue
        rows.set(k, { cc: s.cc, value: s.value })
      }
    }
    const sorted = [...rows.values()].sort((a, b) => compareBytes(a.cc, b.cc) * (range.reverse ? -1 : 1))
    for (const r of sorted.slice(0, limit)) yield decodeViewRow(v, pkRow, r.cc, r.value)
  }

  viewPut(view: string, key: Row, value: Row): void {
    const v = this.view(view)
    const { pk, cc } = viewRowKeys(v, this.wsid, key)
    this.staged.views.set(viewRowKey(pk, cc), { pk, cc, value: encodeViewValue(v, value) })
  }

  table(qname: string): ResolvedTable {
    const t = this.app.tables.get(qname)
    if (t === undefined) throw new NotFoundError(`table ${qname} is not defined in app ${this.app.qname}`, qname)
    return t
  }

  private view(qname: string): ResolvedView {
    const v = this.app.views.get(qname)
    if (v === undefined) throw new NotFoundError(`view ${qname} is not defined in app ${this.app.qname}`, qname)
    return v
  }
}
