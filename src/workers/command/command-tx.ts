// One command's transaction: staged writes on top of its batch, and the state API that its
// extension and the sync projectors see (CommandState, ProjectorState).

import type { AppDef, ResolvedTable, ResolvedView } from '../../shared/appdef/types.js'
import type { CommandState, Principal, ProjectorState, RecordRow, Row, ViewRange } from '../../shared/appdef/state.js'
import { ANONYMOUS } from '../../shared/authz.js'
import { validateFields } from '../../shared/appdef/validate.js'
import { NotFoundError, ValidationError, VvmError } from '../../shared/errors.js'
import { toRecordRow, type StoredRecord, type StoredWsHead } from '../../shared/layout.js'
import { decodeViewRow, encodeViewValue } from '../../shared/view-codec.js'
import { recordKey, type PartitionState } from './partition-state.js'
import { Staging } from './staging.js'
import { RowKeyMemo, getMergedView, readMergedView, rowKeysOf } from '../read-views.js'

/** What `recordNow` / `viewNow` answer when only storage can tell. */
export const NOT_CACHED: unique symbol = Symbol('not cached')

/** Why 100: a command creating more records than this is a bulk import, not a command. */
export const RECORDS_PER_COMMAND_MAX = 100

export class CommandTx implements CommandState, ProjectorState {
  readonly staged = new Staging()
  private head: StoredWsHead | undefined
  createdCount = 0
  /** Made by the first viewGet: a read-modify-write of one row then builds its keys once. */
  private keys: RowKeyMemo | undefined
  /** The caller with its roles in this workspace, as the authorize stage resolved them. */
  principal: Principal = ANONYMOUS

  constructor(
    readonly app: AppDef,
    readonly part: PartitionState,
    readonly batch: Staging,
    readonly wsid: number,
  ) {}

  async loadWorkspace(): Promise<StoredWsHead> {
    if (!this.workspaceLoaded()) {
      const h = this.batch.wsHeadOf(this.wsid) ?? (await this.part.wsHead(this.wsid))
      this.head = { ...h }
    }
    return this.head!
  }

  /** Loads the workspace head if no storage read is needed (staged in the batch, or cached); true when loaded. */
  workspaceLoaded(): boolean {
    if (this.head !== undefined) return true
    const h = this.batch.wsHeadOf(this.wsid) ?? this.part.cachedWsHead(this.wsid)
    if (h !== undefined) this.head = { ...h }
    return h !== undefined
  }

  /** The workspace head as this command leaves it; staged on success. */
  get wsHeadStaged(): StoredWsHead {
    if (this.head === undefined) throw new VvmError('INTERNAL', 'workspace not loaded')
    return this.head
  }

  // The record reads answer from the staged and cached records without awaiting anything, and
  // await storage only when they must: an await costs ~600 instructions (bench/instructions.ts).

  async storedRecord(id: number): Promise<StoredRecord | undefined> {
    return this.storedRecordNow(id) ?? (await this.part.record(this.wsid, id))
  }

  /** The staged or cached record, without I/O; undefined when absent or only storage can tell. */
  private storedRecordNow(id: number): StoredRecord | undefined {
    const k = recordKey(this.wsid, id)
    return this.staged.records.get(k)?.rec ?? this.batch.recordOf(k)?.rec ?? this.part.cachedRecord(this.wsid, id, k)
  }

  /**
   * `record` without I/O, for the synchronous host calls of WASM extensions: the staged or
   * cached record, undefined for an invalid id, NOT_CACHED when only storage can tell.
   */
  recordNow(id: number): RecordRow | undefined | typeof NOT_CACHED {
    if (!Number.isSafeInteger(id) || id <= 0) return undefined
    const rec = this.storedRecordNow(id)
    return rec === undefined ? NOT_CACHED : toRecordRow(id, rec)
  }

  /** `viewGet` without I/O: a row staged by this command, its batch or the batch in commit, else NOT_CACHED. */
  viewNow(view: string, key: Row): Row | typeof NOT_CACHED {
    const v = this.view(view)
    const { cc, mapKey } = rowKeysOf(v, this.wsid, key)
    const s = this.staged.views.get(mapKey) ?? this.batch.viewOf(mapKey)
    return s === undefined ? NOT_CACHED : decodeViewRow(v, key, cc, s.value)
  }

  async record(id: number): Promise<RecordRow | undefined> {
    if (!Number.isSafeInteger(id) || id <= 0) return undefined
    const rec = this.storedRecordNow(id) ?? (await this.part.record(this.wsid, id))
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
    const prev = this.storedRecordNow(id) ?? (await this.part.record(this.wsid, id))
    if (prev === undefined) throw new NotFoundError(`record ${id} not found in workspace ${this.wsid}`)
    const t = this.table(prev.q)
    const f = validateFields(t.fields, fields, 'partial', t.qname, 'fields')
    this.stageRecord(id, { q: prev.q, a: prev.a, f: { ...prev.f, ...f } })
  }

  /** Activation flag changes (deactivate through DELETE). */
  async setActive(id: number, active: boolean): Promise<void> {
    const prev = this.storedRecordNow(id) ?? (await this.part.record(this.wsid, id))
    if (prev === undefined) throw new NotFoundError(`record ${id} not found in workspace ${this.wsid}`)
    this.stageRecord(id, { q: prev.q, a: active, f: prev.f })
  }

  private stageRecord(id: number, rec: StoredRecord): void {
    const k = recordKey(this.wsid, id)
    const isNew = this.staged.records.get(k)?.isNew ?? false
    this.staged.records.set(k, { wsid: this.wsid, id, rec, isNew })
  }

  async viewGet(view: string, key: Row): Promise<Row | undefined> {
    this.keys ??= new RowKeyMemo()
    return getMergedView(this.part.storage, [...this.batch.viewLayers(), this.staged.views], this.view(view), this.wsid, key, this.keys)
  }

  viewRead(view: string, pkRow: Row, range: ViewRange = {}): AsyncIterable<Row> {
    return readMergedView(this.part.storage, [...this.batch.viewLayers(), this.staged.views], this.view(view), this.wsid, pkRow, range)
  }

  viewPut(view: string, key: Row, value: Row): void {
    const v = this.view(view)
    const { pk, cc, mapKey } = this.keys?.of(v, this.wsid, key) ?? rowKeysOf(v, this.wsid, key)
    this.staged.views.set(mapKey, { pk, cc, value: encodeViewValue(v, value) })
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
