// How the engine lays out an application's data on the storage interface (one app storage per
// app). Each key space starts with one tag byte; integers are big-endian so byte order is
// numeric order.
//
// | space      | pk                                   | cc                | value                    |
// |------------|--------------------------------------|-------------------|--------------------------|
// | meta       | [META]                               | []                | {partitions}             |
// | part head  | [PART_HEAD, u16 partition]           | []                | {plogOffset}             |
// | PLog       | [PLOG, u16 partition, u64 chunk]     | [u64 offset]      | event                    |
// | ws head    | [WS_HEAD, u64 wsid]                  | []                | {wlogOffset, nextId}     |
// | WLog       | [WLOG, u64 wsid, u64 chunk]          | [u64 offset]      | [partition, plogOffset]  |
// | records    | [RECORD, u64 wsid]                   | [u64 id]          | {q, a, f}                |
// | collection | [COLLECTION, u64 wsid, qname]        | [u64 id]          | empty                    |
// | views      | [VIEW, u64 wsid, qname 0, pk tuple]  | [cc tuple]        | value fields             |
// | idempot.   | [IDEMPOTENCY, u64 wsid]              | [key utf8]        | stored reply (TTL)       |
// | offsets    | [ACT_OFFSET, u16 partition]          | [projector qname] | {plogOffset}             |
// | intent     | [COMMIT_INTENT, u16 partition]       | []                | {po, items} (cassandra)  |
// | grants     | [GRANTS, u64 wsid]                   | [login utf8]      | {r: roles}               |
// | logins     | [LOGIN, login utf8]                  | []                | {s, h, n, r, p, t}       |
//
// Logs are chunked by 4096 offsets so that no storage partition (Cassandra) grows without
// bound; records are one partition per workspace so a collection can be fetched with one
// `getBatch`.

import { Packr } from 'msgpackr'
import { keyWriter as kw, readU64be } from './storage/keys.js'
import type { PartitionRouting } from './storage/types.js'

const META = 0x00
const PART_HEAD = 0x01
const PLOG = 0x02
const WS_HEAD = 0x03
const WLOG = 0x04
const RECORD = 0x05
const COLLECTION = 0x06
const VIEW = 0x07
const IDEMPOTENCY = 0x08
const ACT_OFFSET = 0x09
const COMMIT_INTENT = 0x0a
const GRANTS = 0x0b
const LOGIN = 0x0c

export const LOG_CHUNK_OFFSETS = 4096
/** Raw ids (< 2^16) name records created in the same request; real ids start above them. */
export const RAW_ID_MAX = 65535
export const FIRST_RECORD_ID = 65536
/** App workspaces (one per partition, where jobs write) are numbered from here. */
export const APP_WORKSPACE_BASE = 2 ** 40

/** The app workspace of a partition: the first id >= APP_WORKSPACE_BASE with wsid % partitions === partition. */
export function appWorkspaceOf(partition: number, partitions: number): number {
  return APP_WORKSPACE_BASE - (APP_WORKSPACE_BASE % partitions) + partition
}

const EMPTY = new Uint8Array(0)
const utf8 = new TextEncoder()

export const metaKey = { pk: new Uint8Array([META]), cc: EMPTY }

export const partitionHeadKey = (partition: number) => ({ pk: kw.begin().u8(PART_HEAD).u16(partition).end(), cc: EMPTY })

export const plogKey = (partition: number, offset: number) => ({
  pk: kw.begin().u8(PLOG).u16(partition).u64(Math.floor(offset / LOG_CHUNK_OFFSETS)).end(),
  cc: kw.begin().u64(offset).end(),
})

export const wsHeadKey = (wsid: number) => ({ pk: kw.begin().u8(WS_HEAD).u64(wsid).end(), cc: EMPTY })

export const wlogKey = (wsid: number, offset: number) => ({
  pk: kw.begin().u8(WLOG).u64(wsid).u64(Math.floor(offset / LOG_CHUNK_OFFSETS)).end(),
  cc: kw.begin().u64(offset).end(),
})

export const recordsPk = (wsid: number) => kw.begin().u8(RECORD).u64(wsid).end()
export const recordCc = (id: number) => kw.begin().u64(id).end()

export const collectionPk = (wsid: number, table: string) => kw.begin().u8(COLLECTION).u64(wsid).utf8String(table).end()

export const viewPk = (wsid: number, view: string, pkTuple: Uint8Array) => beginViewPk(wsid, view).bytes(pkTuple).end()

/** The shared key writer begun with a view row's pk prefix: the pk tuple's parts follow, then `end()`. */
export const beginViewPk = (wsid: number, view: string) => kw.begin().u8(VIEW).u64(wsid).utf8String(view).u8(0)

export const idempotencyKey = (wsid: number, key: string) => ({ pk: kw.begin().u8(IDEMPOTENCY).u64(wsid).end(), cc: utf8.encode(key) })

/** The last group commit's full write set, written first where batches are not atomic. */
export const commitIntentKey = (partition: number) => ({ pk: kw.begin().u8(COMMIT_INTENT).u16(partition).end(), cc: EMPTY })

export const actualizerOffsetKey = (partition: number, projector: string) => ({
  pk: kw.begin().u8(ACT_OFFSET).u16(partition).end(),
  cc: utf8.encode(projector),
})

/** Roles granted in a workspace by sys.GrantRole; written by the workspace's command processor only. */
export const grantsKey = (wsid: number, login: string) => ({ pk: kw.begin().u8(GRANTS).u64(wsid).end(), cc: utf8.encode(login) })

/** A login of the app (password hash); written and read by the main thread only (src/main/auth). */
export const loginKey = (login: string) => ({ pk: kw.begin().u8(LOGIN).utf8String(login).end(), cc: EMPTY })

/**
 * The partition of each key space's rows, for backends that keep partitions apart: the rows of
 * a workspace go with `wsid % partitions` (as its commands do), the logs, heads, offsets and
 * intents with the partition in their key; the app's meta and logins are partition-independent.
 * Every batch the engine writes stays within one partition: a command processor's commits and
 * an actualizer's batches touch only their partition's workspaces and keys.
 */
/** `writer`: the partition whose command processor opens this routing (PartitionRouting.writer). */
export function partitionRouting(partitions: number, writer?: number): PartitionRouting {
  return {
    partitions,
    writer,
    partitionOf(pk: Uint8Array): number | undefined {
      switch (pk[0]) {
        case PART_HEAD: case PLOG: case ACT_OFFSET: case COMMIT_INTENT: {
          if (pk.length < 3) return undefined
          const p = (pk[1]! << 8) | pk[2]!
          return p < partitions ? p : undefined
        }
        case WS_HEAD: case WLOG: case RECORD: case COLLECTION: case VIEW: case IDEMPOTENCY: case GRANTS: {
          return pk.length < 9 ? undefined : readU64be(pk, 1) % partitions
        }
        default:
          return undefined
      }
    },
    committedProbes: Array.from({ length: partitions }, (_, p) => partitionHeadKey(p)),
  }
}

/** Stored shapes. Short property names: they are written once per event or record. */
export interface StoredRecord { q: string; a: boolean; f: Record<string, unknown> }
export interface StoredCud { id: number; t: string; n: boolean; f: Record<string, unknown> }
export interface StoredEvent { q: string; ws: number; wo: number; t: number; a: Record<string, unknown>; c: StoredCud[] }
export interface StoredWsHead { wo: number; id: number }
export interface StoredPartitionHead { po: number }
export interface StoredMeta { partitions: number }
export interface StoredGrants { r: string[] }
/** scrypt parameters with the salt `s` and hash `h`; `t` the creation time (ms). */
export interface StoredLogin { s: Uint8Array; h: Uint8Array; n: number; r: number; p: number; t: number }
export interface StoredIntent { po: number; items: { pk: Uint8Array; cc: Uint8Array; value: Uint8Array; ttlSeconds?: number }[] }

/**
 * The storage codec. `useRecords: false` keeps the encoding plain MessagePack so that stored
 * bytes never depend on a structure table held in one thread's memory.
 */
export const storedCodec = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true })

export function encodeStored(v: unknown): Uint8Array {
  return storedCodec.pack(v)
}

export function decodeStored<T>(bytes: Uint8Array): T {
  return storedCodec.unpack(bytes) as T
}

/** A record as extensions and readers see it: its fields plus the system fields. */
export function toRecordRow(id: number, rec: StoredRecord): { 'sys.ID': number; 'sys.QName': string; 'sys.IsActive': boolean } & Record<string, unknown> {
  return { 'sys.ID': id, 'sys.QName': rec.q, 'sys.IsActive': rec.a, ...rec.f }
}
