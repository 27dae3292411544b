// Staged writes. A batch stages on top of the committed state, or on top of the batch whose
// commit is still under way (its `parent`: the commit is pipelined); each command stages on top
// of its batch and is merged into it only when the command succeeds, so a failed command leaves
// nothing behind. Reads look through command → batch → parent → committed (cache, then storage).

import type { BatchItem } from '../../shared/storage/types.js'
import {
  collectionPk, encodeStored, grantsKey, idempotencyKey, partitionHeadKey, plogKey, recordCc, recordsPk, wlogKey, wsHeadKey,
  type StoredEvent, type StoredRecord, type StoredWsHead,
} from '../../shared/layout.js'
import { recordKey } from './partition-state.js'
import type { CommandOutcome } from '../../shared/reply.js'
import type { StagedViewRow, ViewStaging } from '../read-views.js'

export interface StagedRecord {
  wsid: number
  id: number
  rec: StoredRecord
  isNew: boolean
}


export interface StagedGrants {
  wsid: number
  login: string
  roles: readonly string[]
}

export interface StagedEvent {
  partition: number
  plogOffset: number
  event: StoredEvent
}

/** What a stored idempotency entry holds: enough to render the first reply in any format. */
export interface IdempotentReply {
  status: number
  outcome: CommandOutcome
}

export class Staging {
  constructor(
    /** The batch being committed while this one executes; undefined for a command's own staging. */
    readonly parent?: Staging,
    /** The PLog offset this batch's first event follows. */
    readonly baseOffset = 0,
  ) {}

  readonly wsHeads = new Map<number, StoredWsHead>()
  readonly records = new Map<string, StagedRecord>()
  /** Keyed by `viewRowKey(pk, cc)`. */
  readonly views: ViewStaging = new Map()
  readonly events: StagedEvent[] = []
  readonly idempotent = new Map<string, { wsid: number; key: string; reply: IdempotentReply }>()
  /** Roles stored by sys.GrantRole / sys.RevokeRole, keyed by `grantKey(wsid, login)`. */
  readonly grants = new Map<string, StagedGrants>()

  mergeFrom(child: Staging): void {
    for (const [k, v] of child.wsHeads) this.wsHeads.set(k, v)
    for (const [k, v] of child.records) {
      const prev = this.records.get(k)
      // A record created earlier in the batch stays "new" for the collection index.
      this.records.set(k, prev?.isNew ? { ...v, isNew: true } : v)
    }
    for (const [k, v] of child.views) this.views.set(k, v)
    for (const e of child.events) this.events.push(e)
    for (const [k, v] of child.idempotent) this.idempotent.set(k, v)
    for (const [k, v] of child.grants) this.grants.set(k, v)
  }

  /** The PLog offset of the next event staged here. */
  get nextOffset(): number {
    return this.baseOffset + this.events.length + 1
  }

  /** The PLog offset of the last event staged here (the base when none is). */
  get lastOffset(): number {
    return this.baseOffset + this.events.length
  }

  wsHeadOf(wsid: number): StoredWsHead | undefined {
    return this.wsHeads.get(wsid) ?? this.parent?.wsHeads.get(wsid)
  }

  recordOf(key: string): StagedRecord | undefined {
    return this.records.get(key) ?? this.parent?.records.get(key)
  }

  idempotentOf(key: string): IdempotentReply | undefined {
    return (this.idempotent.get(key) ?? this.parent?.idempotent.get(key))?.reply
  }

  viewOf(key: string): StagedViewRow | undefined {
    return this.views.get(key) ?? this.parent?.views.get(key)
  }

  grantOf(key: string): StagedGrants | undefined {
    return this.grants.get(key) ?? this.parent?.grants.get(key)
  }

  /** View rows staged here and in the parent, oldest layer first. */
  viewLayers(): ViewStaging[] {
    return this.parent === undefined ? [this.views] : [this.parent.views, this.views]
  }

  get empty(): boolean {
    return this.events.length === 0 && this.idempotent.size === 0
  }

  /** The storage batch: events, WLog refs, records, collection entries, views, heads. */
  toBatchItems(partition: number, plogOffset: number, idempotencyTtlSeconds: number): BatchItem[] {
    const items: BatchItem[] = []
    for (const e of this.events) {
      const p = plogKey(partition, e.plogOffset)
      items.push({ pk: p.pk, cc: p.cc, value: encodeStored(e.event) })
      const w = wlogKey(e.event.ws, e.event.wo)
      items.push({ pk: w.pk, cc: w.cc, value: encodeStored([partition, e.plogOffset]) })
    }
    for (const r of this.records.values()) {
      items.push({ pk: recordsPk(r.wsid), cc: recordCc(r.id), value: encodeStored(r.rec) })
      if (r.isNew) items.push({ pk: collectionPk(r.wsid, r.rec.q), cc: recordCc(r.id), value: EMPTY })
    }
    for (const v of this.views.values()) items.push({ pk: v.pk, cc: v.cc, value: v.value })
    for (const [wsid, h] of this.wsHeads) {
      const k = wsHeadKey(wsid)
      items.push({ pk: k.pk, cc: k.cc, value: encodeStored(h) })
    }
    for (const { wsid, key, reply } of this.idempotent.values()) {
      const k = idempotencyKey(wsid, key)
      items.push({ pk: k.pk, cc: k.cc, value: encodeStored(reply), ttlSeconds: idempotencyTtlSeconds })
    }
    for (const g of this.grants.values()) {
      const k = grantsKey(g.wsid, g.login)
      items.push({ pk: k.pk, cc: k.cc, value: encodeStored({ r: [...g.roles] }) })
    }
    const h = partitionHeadKey(partition)
    items.push({ pk: h.pk, cc: h.cc, value: encodeStored({ po: plogOffset }) })
    return items
  }

  committedRecords(): Map<string, StoredRecord> {
    const out = new Map<string, StoredRecord>()
    for (const [k, r] of this.records) out.set(k, r.rec)
    return out
  }
}

const EMPTY = new Uint8Array(0)

export const stagedRecordKey = recordKey


export const idempotentKey = (wsid: number, key: string): string => `${wsid}/${key}`
