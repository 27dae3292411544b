// What a command processor knows about its partition between batches: the committed PLog
// offset and bounded caches of workspace heads and records. The processor is the only writer
// of its workspaces, so a write-through cache of committed state is always current.

import type { IAppStorage } from '../../shared/storage/types.js'
import {
  FIRST_RECORD_ID, decodeStored, grantsKey, partitionHeadKey, recordCc, recordsPk, wsHeadKey,
  type StoredGrants, type StoredPartitionHead, type StoredRecord, type StoredWsHead,
} from '../../shared/layout.js'

/**
 * A bounded cache that keeps recently used entries: two generations of at most `max / 2`
 * entries each. Entries are set into the young one; when it is full it becomes the old one and
 * the previous old one is dropped; a hit in the old generation moves the entry to the young
 * one. So at most `max` entries are kept (2 when `max` is 1), every entry used within the last
 * `max / 2` insertions survives, and a hit in the young generation (the common case) is one Map
 * lookup — an exact LRU moved every hit to the end of a Map (a delete and a set each time).
 */
export class LruMap<K, V> {
  private young = new Map<K, V>()
  private old = new Map<K, V>()
  private readonly generationMax: number
  constructor(readonly max: number) {
    this.generationMax = Math.max(1, Math.floor(max / 2))
  }

  get(k: K): V | undefined {
    const v = this.young.get(k)
    if (v !== undefined) return v
    const o = this.old.get(k)
    if (o !== undefined) {
      this.old.delete(k)
      this.putYoung(k, o)
    }
    return o
  }

  set(k: K, v: V): void {
    this.old.delete(k)
    this.putYoung(k, v)
  }

  clear(): void {
    this.young.clear()
    this.old.clear()
  }

  get size(): number {
    return this.young.size + this.old.size
  }

  private putYoung(k: K, v: V): void {
    if (!this.young.has(k) && this.young.size >= this.generationMax) {
      this.old = this.young
      this.young = new Map()
    }
    this.young.set(k, v)
  }
}

export const recordKey = (wsid: number, id: number): string => `${wsid}/${id}`
export const grantKey = (wsid: number, login: string): string => `${wsid}/${login}`

/** Why 100,000: (workspace, login) pairs a partition serves between restarts; a miss is one read. */
const GRANTS_CACHED_MAX = 100_000
const NO_ROLES: readonly string[] = Object.freeze([])

export interface PartitionStateOptions {
  /** Workspace heads kept in memory; a miss costs one storage read. */
  wsHeadsCachedMax: number
  /** Records kept in memory; a miss costs one storage read. */
  recordsCachedMax: number
}

export class PartitionState {
  plogOffset = 0
  private readonly wsHeads: LruMap<number, StoredWsHead>
  private readonly records: LruMap<string, StoredRecord>
  /** Stored grants by grantKey(wsid, login); exact, as this partition is their only writer. */
  private readonly grants = new LruMap<string, readonly string[]>(GRANTS_CACHED_MAX)

  constructor(readonly storage: IAppStorage, readonly partition: number, opts: PartitionStateOptions) {
    this.wsHeads = new LruMap(opts.wsHeadsCachedMax)
    this.records = new LruMap(opts.recordsCachedMax)
  }

  /** Restart reads the partition head, not the log. */
  async load(): Promise<void> {
    const k = partitionHeadKey(this.partition)
    const bytes = await this.storage.get(k.pk, k.cc)
    this.plogOffset = bytes === undefined ? 0 : decodeStored<StoredPartitionHead>(bytes).po
  }

  async wsHead(wsid: number): Promise<StoredWsHead> {
    const cached = this.wsHeads.get(wsid)
    if (cached !== undefined) return cached
    const k = wsHeadKey(wsid)
    const bytes = await this.storage.get(k.pk, k.cc)
    const head = bytes === undefined ? { wo: 0, id: FIRST_RECORD_ID } : decodeStored<StoredWsHead>(bytes)
    this.wsHeads.set(wsid, head)
    return head
  }

  /** The committed head if it is cached, without I/O. */
  cachedWsHead(wsid: number): StoredWsHead | undefined {
    return this.wsHeads.get(wsid)
  }

  async record(wsid: number, id: number): Promise<StoredRecord | undefined> {
    const key = recordKey(wsid, id)
    const cached = this.records.get(key)
    if (cached !== undefined) return cached
    const bytes = await this.storage.get(recordsPk(wsid), recordCc(id))
    if (bytes === undefined) return undefined
    const rec = decodeStored<StoredRecord>(bytes)
    this.records.set(key, rec)
    return rec
  }

  /** The committed record if it is cached, without I/O; undefined when only storage can tell. */
  cachedRecord(wsid: number, id: number, key: string = recordKey(wsid, id)): StoredRecord | undefined {
    return this.records.get(key)
  }

  /** The roles sys.GrantRole stored for a login in a workspace (committed). */
  async storedRoles(wsid: number, login: string): Promise<readonly string[]> {
    const key = grantKey(wsid, login)
    const cached = this.grants.get(key)
    if (cached !== undefined) return cached
    const k = grantsKey(wsid, login)
    const bytes = await this.storage.get(k.pk, k.cc)
    const roles = bytes === undefined ? NO_ROLES : decodeStored<StoredGrants>(bytes).r
    this.grants.set(key, roles)
    return roles
  }

  /** After a durable commit: the batch's state becomes the committed state. */
  applyCommitted(
    plogOffset: number, wsHeads: ReadonlyMap<number, StoredWsHead>, records: ReadonlyMap<string, StoredRecord>,
    grants: ReadonlyMap<string, { roles: readonly string[] }> = new Map(),
  ): void {
    this.plogOffset = plogOffset
    for (const [wsid, h] of wsHeads) this.wsHeads.set(wsid, h)
    for (const [k, r] of records) this.records.set(k, r)
    for (const [k, g] of grants) this.grants.set(k, g.roles)
  }

  /** After a failed commit nothing staged may survive in memory: forget every cached value. */
  resetCaches(): void {
    this.wsHeads.clear()
    this.records.clear()
    this.grants.clear()
  }
}
