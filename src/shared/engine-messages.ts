// Messages between the main thread and the processors (partition workers through the rings,
// query workers through piscina). Encoded as MessagePack arrays: positional, no field names on
// the wire. HTTP bodies travel as raw bytes and are parsed by the processor, off the main
// thread.

import { Packr } from 'msgpackr'
import type { Principal } from './appdef/state.js'
import { copyBytes } from './storage/keys.js'

export const Op = {
  /** A command; body `{"args", "unloggedArgs", "cuds"}` (v1 clients send `cuds` too). */
  COMMAND: 1,
  DOC_CREATE: 2,
  DOC_UPDATE: 3,
  DOC_DEACTIVATE: 4,
  /** A scheduled job's run, queued by the partition's scheduler (never from clients). */
  JOB: 5,
  QUERY: 10,
  DOC_GET: 11,
  CDOCS: 12,
  VIEW: 13,
  /**
   * Subscribe to a read (docs/subscriptions.md): a view range, a cdocs collection, one doc or a
   * query, by the qname's kind. Served by the workspace's partition worker, between batches.
   */
  SUBSCRIBE: 20,
  /** Release subscription groups: body is an array of group ids, one reference each. */
  UNSUBSCRIBE: 21,
} as const
export type OpCode = (typeof Op)[keyof typeof Op]

export const isWriteOp = (op: number): boolean => op < Op.QUERY
/** Subscription ops go to the partition worker (which sees every commit), never to the query pool. */
export const isSubscriptionOp = (op: number): boolean => op === Op.SUBSCRIBE || op === Op.UNSUBSCRIBE

export const ReplyFormat = {
  /** Voedger API v2 JSON. */
  JSON_V2: 0,
  /** Voedger API v1 JSON. */
  JSON_V1: 1,
  /** MessagePack of the v2 shapes (binary protocol). */
  MSGPACK: 2,
} as const
export type ReplyFormatCode = (typeof ReplyFormat)[keyof typeof ReplyFormat]

/** Parse-style constraints of a read (cdocs, views, queries). */
export interface ReadParams {
  where?: unknown
  order?: string
  limit?: number
  skip?: number
  keys?: string
  /** Query arguments (`?args=`), already parsed. */
  args?: unknown
}

export interface EngineRequest {
  reqId: number
  op: OpCode
  format: ReplyFormatCode
  app: string
  wsid: number
  /** Function or table qname. */
  qname: string
  /** Document id (doc get/update/deactivate), else 0. */
  id: number
  idempotencyKey: string | null
  /** Raw JSON body (HTTP) or a decoded value (binary protocol). */
  body: Uint8Array | unknown
  params: ReadParams | null
  /**
   * Who asks, as the main thread authenticated it: the login and the roles its token signs for
   * this workspace (the processors add the workspace's stored grants and `public`). Set by the
   * HTTP layer; the Dispatcher fills in its default (anonymous, or owner with `--auth off`)
   * for any request without one. Absent in a processor means anonymous; jobs need none.
   */
  principal?: Principal
  /** When the main thread wrote it into a partition's ring (`monotonicMs`), for the stage histograms. */
  enqueuedMs?: number
}

export interface EngineReply {
  reqId: number
  status: number
  /** Rendered body in the request's format. */
  body: Uint8Array
  retryAfterS: number
  /** SUBSCRIBE: the subscription group the request joined (its pushes name it). */
  groupId?: number
}

/**
 * A partition worker's push for one subscription group, on the reply ring: a diff (body is the
 * MessagePack of `{type: "diff", fromOffset, toOffset, ops, order?}`, encoded once for all the
 * group's subscribers) or the group's end (`{type: "end", status, code, message}`).
 */
export interface EnginePush {
  groupId: number
  end: boolean
  body: Uint8Array
}

/** Element 0 of a push on the reply ring: no request id is negative. */
const PUSH_MARK = -1

const codec = new Packr({ useRecords: false, mapsAsObjects: true })

export function encodeRequest(r: EngineRequest): Uint8Array {
  return codec.pack(requestTuple(r))
}

export function decodeRequest(bytes: Uint8Array): EngineRequest {
  return requestOf(codec.unpack(bytes) as unknown[])
}

/**
 * A query pool task: several requests in a buffer of their own, so that the message to a thread
 * (which clones the whole ArrayBuffer under a view) carries these bytes and not msgpackr's 8 KiB
 * (or larger) scratch buffer that its result is a view of.
 */
export function encodeRequests(rs: readonly EngineRequest[]): Uint8Array {
  return copyBytes(codec.pack(rs.map(requestTuple)))
}

export function decodeRequests(bytes: Uint8Array): EngineRequest[] {
  return (codec.unpack(bytes) as unknown[][]).map(requestOf)
}

/** A query task's answers, in the order of its requests: a reply, or the stack of a query that threw. */
export type QueryOutcome = EngineReply | { thrown: string }

export function encodeQueryOutcomes(outcomes: readonly QueryOutcome[]): Uint8Array {
  return copyBytes(codec.pack(outcomes.map((o) => ('thrown' in o ? [o.thrown] : [o.status, o.body, o.retryAfterS]))))
}

export function decodeQueryOutcomes(bytes: Uint8Array): QueryOutcome[] {
  return (codec.unpack(bytes) as unknown[][]).map((a) => (a.length === 1
    ? { thrown: a[0] as string }
    : { reqId: 0, status: a[0] as number, body: a[1] as Uint8Array, retryAfterS: a[2] as number }))
}

const requestTuple = (r: EngineRequest): unknown[] => [
  r.reqId, r.op, r.format, r.app, r.wsid, r.qname, r.id, r.idempotencyKey, r.body, r.params,
  r.principal === undefined ? null : [r.principal.login, r.principal.roles], r.enqueuedMs,
]

function requestOf(a: unknown[]): EngineRequest {
  const r: EngineRequest = {
    reqId: a[0] as number, op: a[1] as OpCode, format: a[2] as ReplyFormatCode, app: a[3] as string, wsid: a[4] as number,
    qname: a[5] as string, id: a[6] as number, idempotencyKey: a[7] as string | null, body: a[8], params: a[9] as ReadParams | null,
    principal: decodePrincipal(a[10]),
  }
  if (typeof a[11] === 'number') r.enqueuedMs = a[11]
  return r
}

function decodePrincipal(v: unknown): Principal | undefined {
  if (!Array.isArray(v)) return undefined
  return { login: v[0] as string, roles: v[1] as string[] }
}

export function encodeReply(r: EngineReply): Uint8Array {
  return codec.pack(r.groupId === undefined ? [r.reqId, r.status, r.body, r.retryAfterS] : [r.reqId, r.status, r.body, r.retryAfterS, r.groupId])
}

export function encodePush(p: EnginePush): Uint8Array {
  return codec.pack([PUSH_MARK, p.groupId, p.end, p.body])
}

/** A frame of the reply ring: a reply to a request, or a subscription push. */
export function decodeReplyFrame(bytes: Uint8Array): EngineReply | EnginePush {
  const a = codec.unpack(bytes) as unknown[]
  if (a[0] === PUSH_MARK) return { groupId: a[1] as number, end: a[2] as boolean, body: a[3] as Uint8Array }
  return { reqId: a[0] as number, status: a[1] as number, body: a[2] as Uint8Array, retryAfterS: a[3] as number, groupId: a[4] as number | undefined }
}

export const isPush = (f: EngineReply | EnginePush): f is EnginePush => !('reqId' in f)
