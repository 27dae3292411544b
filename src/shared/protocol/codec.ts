// Frame codec of the binary protocol, shared by the server (src/main/ws-api.ts) and the SDK
// (src/client). A frame is one binary WebSocket message holding exactly one MessagePack array;
// element 0 is the frame type. The layouts are in docs/protocol.md.
//
// Decoding is strict: trailing bytes, wrong element types and values outside their range are
// a FrameError naming the element, so the server can answer instead of guessing.

import { Packr, Unpackr } from 'msgpackr'
import {
  APP_NAME_BYTES_MAX, BODY_DEPTH_MAX, FrameType, HELLO_VERSIONS_MAX, REQUEST_ID_MAX, TOKEN_BYTES_MAX, WIRE_OP_NAMES, WireOp,
  type ServerLimits, type WireOpCode,
} from './constants.js'

/** A frame that breaks the protocol; `reqId` is 0 when the frame's request id could not be read. */
export class FrameError extends Error {
  constructor(readonly reqId: number, message: string) {
    super(message)
    this.name = 'FrameError'
  }
}

/** Parse-style read constraints, as in the HTTP API (`where` is an object, not JSON text). */
export interface WireParams {
  where?: Record<string, unknown>
  order?: string
  limit?: number
  skip?: number
  keys?: string
  /** A query's arguments where the body is taken (SUBSCRIBE to a query; QUERY prefers them to the body). */
  args?: Record<string, unknown>
}

export interface WireRequest {
  reqId: number
  op: WireOpCode
  app: string
  wsid: number
  qname: string
  /** Document id (doc get/update/deactivate), else 0. */
  docId: number
  body: unknown
  params: WireParams | null
  idempotencyKey: string | null
}

export interface WireHello {
  type: typeof FrameType.HELLO
  versions: number[]
  token: string | null
  options: Record<string, unknown>
}

export interface WireAuth {
  type: typeof FrameType.AUTH
  reqId: number
  token: string | null
  options: Record<string, unknown>
}

export type ClientFrame =
  | WireHello
  | ({ type: typeof FrameType.REQUEST } & WireRequest)
  | { type: typeof FrameType.PING; pingId: number }
  | WireAuth

export type ServerFrame =
  | { type: typeof FrameType.WELCOME; version: number; limits: ServerLimits; options: Record<string, unknown> }
  | { type: typeof FrameType.REPLY; reqId: number; status: number; retryAfterS: number; body: unknown }
  | { type: typeof FrameType.PONG; pingId: number; serverTimeMs: number }
  | { type: typeof FrameType.PUSH; subscriptionId: number; seq: number; body: unknown }
  /** A frame type this build does not know: clients ignore it (forward compatibility). */
  | { type: 'unknown'; code: unknown }

/** What each op carries. The server enforces it; the SDK builds frames that follow it. */
export interface OpRule {
  docId: 'required' | 'none' | 'optional'
  body: 'map' | 'none'
  params: boolean
  idempotencyKey: boolean
  write: boolean
}

export const OP_RULES: Readonly<Record<number, OpRule>> = {
  [WireOp.COMMAND]: { docId: 'none', body: 'map', params: false, idempotencyKey: true, write: true },
  [WireOp.DOC_CREATE]: { docId: 'none', body: 'map', params: false, idempotencyKey: true, write: true },
  [WireOp.DOC_UPDATE]: { docId: 'required', body: 'map', params: false, idempotencyKey: true, write: true },
  [WireOp.DOC_DEACTIVATE]: { docId: 'required', body: 'none', params: false, idempotencyKey: true, write: true },
  [WireOp.QUERY]: { docId: 'none', body: 'map', params: true, idempotencyKey: false, write: false },
  [WireOp.DOC_GET]: { docId: 'required', body: 'none', params: false, idempotencyKey: false, write: false },
  [WireOp.CDOCS]: { docId: 'none', body: 'none', params: true, idempotencyKey: false, write: false },
  [WireOp.VIEW]: { docId: 'none', body: 'none', params: true, idempotencyKey: false, write: false },
  // Version 2: docId subscribes to one doc of a table; body {resumeFrom?}.
  [WireOp.SUBSCRIBE]: { docId: 'optional', body: 'map', params: true, idempotencyKey: false, write: false },
  // Version 2: docId is the subscription id.
  [WireOp.UNSUBSCRIBE]: { docId: 'required', body: 'none', params: false, idempotencyKey: false, write: false },
}

/** The first protocol version that serves an op (older ones answer 400). */
export const OP_SINCE_VERSION: Readonly<Record<number, number>> = { [WireOp.SUBSCRIBE]: 2, [WireOp.UNSUBSCRIBE]: 2 }

const packr = new Packr({ useRecords: false, mapsAsObjects: true, encodeUndefinedAsNil: true })
// int64 values within 2^53 become numbers, larger ones BigInt (refused by checkPlain); binary
// values are copied, since uWS reuses the memory of a message after its callback.
// ('auto' is in msgpackr's code but not in its typings.)
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'auto' as 'number', copyBuffers: true })

export function packValue(value: unknown): Uint8Array {
  return packr.pack(value)
}

/** Decodes one MessagePack value; throws FrameError on bad or trailing bytes. */
export function unpackFrame(bytes: Uint8Array): unknown {
  try {
    return unpackr.unpack(bytes)
  } catch (err) {
    throw new FrameError(0, `the frame is not one MessagePack value: ${(err as Error).message.slice(0, 120)}`)
  }
}

// ---- encoders ---------------------------------------------------------------------------

export function encodeHello(versions: readonly number[], token: string | null, options: Record<string, unknown> = {}): Uint8Array {
  return packr.pack([FrameType.HELLO, versions, token, options])
}

export function encodeWelcome(version: number, limits: ServerLimits, options: Record<string, unknown> = {}): Uint8Array {
  return packr.pack([FrameType.WELCOME, version, limits, options])
}

export function encodeRequest(r: WireRequest): Uint8Array {
  const a: unknown[] = [FrameType.REQUEST, r.reqId, r.op, r.app, r.wsid, r.qname, r.docId === 0 ? null : r.docId, r.body ?? null, r.params, r.idempotencyKey]
  // Trailing nils may be left out (docs/protocol.md); shorter frames for reads.
  while (a.length > 6 && a[a.length - 1] === null) a.pop()
  return packr.pack(a)
}

export function encodeAuth(reqId: number, token: string | null, options: Record<string, unknown> = {}): Uint8Array {
  return packr.pack([FrameType.AUTH, reqId, token, options])
}

export function encodePing(pingId: number): Uint8Array {
  return packr.pack([FrameType.PING, pingId])
}

export function encodePong(pingId: number, serverTimeMs: number): Uint8Array {
  return packr.pack([FrameType.PONG, pingId, serverTimeMs])
}

/**
 * `[4, reqId, status, retryAfterS, body]` where `body` is already MessagePack (as rendered by
 * the processors): a MessagePack array is its header followed by its elements, so the frame is
 * a 5-element array header, four small integers and the body bytes appended, with no decoding
 * or re-encoding of the body. An empty body is written as nil.
 */
export function encodeReply(reqId: number, status: number, retryAfterS: number, body: Uint8Array): Uint8Array {
  return encodeWithRawTail(0x95, FrameType.REPLY, reqId, status, retryAfterS, body)
}

/** `[7, subscriptionId, seq, body]`, body already MessagePack (a subscription's diff or end, version 2). */
export function encodePush(subscriptionId: number, seq: number, body: Uint8Array): Uint8Array {
  return encodeWithRawTail(0x94, FrameType.PUSH, subscriptionId, seq, undefined, body)
}

function encodeWithRawTail(arrayHeader: number, type: number, a: number, b: number, c: number | undefined, body: Uint8Array): Uint8Array {
  const bodyBytes = body.byteLength === 0 ? 1 : body.byteLength
  // 1 array header + 1 type + up to 9 bytes per integer.
  const out = new Uint8Array(2 + 27 + bodyBytes)
  out[0] = arrayHeader
  out[1] = type
  let p = writeUint(out, 2, a)
  p = writeUint(out, p, b)
  if (c !== undefined) p = writeUint(out, p, c)
  if (body.byteLength === 0) out[p++] = 0xc0
  else {
    out.set(body, p)
    p += body.byteLength
  }
  return out.subarray(0, p)
}

/** Writes a non-negative safe integer in MessagePack's shortest uint form; returns the next position. */
function writeUint(out: Uint8Array, p: number, n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${n} is not a non-negative safe integer`)
  if (n < 0x80) {
    out[p] = n
    return p + 1
  }
  if (n < 0x100) {
    out[p] = 0xcc
    out[p + 1] = n
    return p + 2
  }
  if (n < 0x10000) {
    out[p] = 0xcd
    out[p + 1] = n >>> 8
    out[p + 2] = n & 0xff
    return p + 3
  }
  if (n <= 0xffff_ffff) {
    out[p] = 0xce
    out[p + 1] = n >>> 24
    out[p + 2] = (n >>> 16) & 0xff
    out[p + 3] = (n >>> 8) & 0xff
    out[p + 4] = n & 0xff
    return p + 5
  }
  out[p] = 0xcf
  const hi = Math.floor(n / 0x1_0000_0000)
  const lo = n >>> 0
  for (let i = 0; i < 4; i++) out[p + 1 + i] = (hi >>> (24 - 8 * i)) & 0xff
  for (let i = 0; i < 4; i++) out[p + 5 + i] = (lo >>> (24 - 8 * i)) & 0xff
  return p + 9
}

// ---- decoders ---------------------------------------------------------------------------

const QNAME_RE = /^[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*$/
const PRINTABLE_ASCII_RE = /^[\x21-\x7e]+$/
const PARAM_KEYS = new Set(['where', 'order', 'limit', 'skip', 'keys', 'args'])
/** Why 10^9: as the HTTP API, which accepts up to nine digits. */
const PARAM_INT_MAX = 999_999_999

const isUint = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max
const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && Object.getPrototypeOf(v) === Object.prototype

/** Decodes a frame sent by a client; throws FrameError. */
export function decodeClientFrame(bytes: Uint8Array): ClientFrame {
  const a = unpackFrame(bytes)
  if (!Array.isArray(a) || a.length === 0) throw new FrameError(0, 'a frame must be a MessagePack array [type, ...]')
  switch (a[0]) {
    case FrameType.HELLO: return decodeHello(a)
    case FrameType.REQUEST: return { type: FrameType.REQUEST, ...decodeRequest(a) }
    case FrameType.PING: {
      if (a.length !== 2 || !isUint(a[1], REQUEST_ID_MAX)) throw new FrameError(0, 'PING must be [5, pingId] with pingId a uint32')
      return { type: FrameType.PING, pingId: a[1] }
    }
    case FrameType.AUTH: {
      if (!isUint(a[1], REQUEST_ID_MAX) || a[1] === 0) throw new FrameError(0, 'AUTH element 1 (reqId) must be a uint32 other than 0')
      if (a.length < 3 || a.length > 4) throw new FrameError(a[1], 'AUTH must be [8, reqId, token, options?]')
      const token = a[2] ?? null
      if (token !== null && (typeof token !== 'string' || token.length > TOKEN_BYTES_MAX)) throw new FrameError(a[1], `AUTH token must be nil or a string of at most ${TOKEN_BYTES_MAX} characters`)
      const options = a[3] ?? {}
      if (!isMap(options)) throw new FrameError(a[1], 'AUTH options must be a map')
      return { type: FrameType.AUTH, reqId: a[1], token, options }
    }
    default:
      throw new FrameError(0, `unknown frame type ${describe(a[0])} (a client sends HELLO 1, REQUEST 3, PING 5, AUTH 8)`)
  }
}

function decodeHello(a: unknown[]): WireHello {
  if (a.length < 2 || a.length > 4) throw new FrameError(0, 'HELLO must be [1, versions, token?, options?]')
  const versions = a[1]
  if (!Array.isArray(versions) || versions.length === 0 || versions.length > HELLO_VERSIONS_MAX || !versions.every((v) => isUint(v, 0xffff))) {
    throw new FrameError(0, `HELLO versions must be an array of 1..${HELLO_VERSIONS_MAX} version numbers`)
  }
  const token = a[2] ?? null
  if (token !== null && (typeof token !== 'string' || token.length > TOKEN_BYTES_MAX)) throw new FrameError(0, `HELLO token must be nil or a string of at most ${TOKEN_BYTES_MAX} characters`)
  const options = a[3] ?? {}
  if (!isMap(options)) throw new FrameError(0, 'HELLO options must be a map')
  return { type: FrameType.HELLO, versions: versions as number[], token, options }
}

function decodeRequest(a: unknown[]): WireRequest {
  const reqId = a[1]
  if (!isUint(reqId, REQUEST_ID_MAX) || reqId === 0) throw new FrameError(0, 'REQUEST element 1 (reqId) must be a uint32 other than 0')
  const fail = (message: string): never => { throw new FrameError(reqId, message) }
  if (a.length < 6 || a.length > 10) fail('REQUEST must be [3, reqId, op, app, wsid, qname, docId?, body?, params?, idempotencyKey?]')
  const op = a[2]
  if (typeof op !== 'number' || WIRE_OP_NAMES[op] === undefined) fail(`unknown op ${describe(op)}`)
  const rule = OP_RULES[op as number]
  if (rule === undefined) fail(`op ${op as number} (${WIRE_OP_NAMES[op as number]}) is reserved and not served by this protocol version`)
  const app = a[3]
  if (typeof app !== 'string' || app.length === 0 || app.length > APP_NAME_BYTES_MAX) fail('REQUEST element 3 (app) must be a non-empty string like "owner/app"')
  const wsid = a[4]
  if (typeof wsid !== 'number' || !Number.isSafeInteger(wsid) || wsid < 1) fail('REQUEST element 4 (wsid) must be a positive integer')
  const qname = a[5]
  if (typeof qname !== 'string' || !QNAME_RE.test(qname)) fail(`REQUEST element 5 (qname) ${describe(qname)} is not a qualified name pkg.Name`)
  const docId = a[6] ?? 0
  if (typeof docId !== 'number' || !Number.isSafeInteger(docId) || docId < 0) fail('REQUEST element 6 (docId) must be nil or a positive integer')
  if (rule!.docId === 'required' && docId === 0) fail(`op ${WIRE_OP_NAMES[op as number]} needs element 6 (docId)`)
  if (rule!.docId === 'none' && docId !== 0) fail(`op ${WIRE_OP_NAMES[op as number]} takes no docId`)
  const body = a[7] ?? null
  if (body !== null) {
    if (rule!.body === 'none') fail(`op ${WIRE_OP_NAMES[op as number]} takes no body`)
    if (!isMap(body)) fail('REQUEST element 7 (body) must be nil or a map')
    const problem = checkPlain(body, 0)
    if (problem !== undefined) fail(`body: ${problem}`)
  }
  const params = decodeParams(a[8] ?? null, rule!, op as number, fail)
  const key = a[9] ?? null
  if (key !== null) {
    if (!rule!.idempotencyKey) fail(`op ${WIRE_OP_NAMES[op as number]} takes no idempotency key: only writes do`)
    if (typeof key !== 'string' || !PRINTABLE_ASCII_RE.test(key)) fail('REQUEST element 9 (idempotencyKey) must be a string of printable ASCII characters')
  }
  return { reqId, op: op as WireOpCode, app: app as string, wsid: wsid as number, qname: qname as string, docId: docId as number, body, params, idempotencyKey: key as string | null }
}

function decodeParams(params: unknown, rule: OpRule, op: number, fail: (m: string) => never): WireParams | null {
  if (params === null) return null
  if (!rule.params) fail(`op ${WIRE_OP_NAMES[op]} takes no params`)
  if (!isMap(params)) fail('REQUEST element 8 (params) must be nil or a map')
  const p = params as Record<string, unknown>
  for (const k of Object.keys(p)) if (!PARAM_KEYS.has(k)) fail(`params.${k} is unknown (allowed: ${[...PARAM_KEYS].join(', ')})`)
  if (p.where !== undefined && p.where !== null) {
    if (!isMap(p.where)) fail('params.where must be a map')
    const problem = checkPlain(p.where, 0)
    if (problem !== undefined) fail(`params.where: ${problem}`)
  }
  if (p.args !== undefined && p.args !== null) {
    if (!isMap(p.args)) fail('params.args must be a map')
    const problem = checkPlain(p.args, 0)
    if (problem !== undefined) fail(`params.args: ${problem}`)
  }
  for (const k of ['order', 'keys'] as const) if (p[k] !== undefined && p[k] !== null && typeof p[k] !== 'string') fail(`params.${k} must be a string`)
  for (const k of ['limit', 'skip'] as const) if (p[k] !== undefined && p[k] !== null && !isUint(p[k], PARAM_INT_MAX)) fail(`params.${k} must be an integer 0..${PARAM_INT_MAX}`)
  const out: WireParams = {}
  if (p.where !== undefined && p.where !== null) out.where = p.where as Record<string, unknown>
  if (typeof p.order === 'string') out.order = p.order
  if (typeof p.keys === 'string') out.keys = p.keys
  if (typeof p.limit === 'number') out.limit = p.limit
  if (typeof p.skip === 'number') out.skip = p.skip
  if (p.args !== undefined && p.args !== null) out.args = p.args as Record<string, unknown>
  return out
}

/**
 * Bodies are plain data, as JSON would give: nil, booleans, finite numbers, strings, binary,
 * arrays and maps. MessagePack extensions (dates, sets, big integers, …) are refused.
 * Returns what is wrong, or undefined.
 */
export function checkPlain(v: unknown, depth: number): string | undefined {
  if (depth > BODY_DEPTH_MAX) return `nested deeper than ${BODY_DEPTH_MAX} levels`
  switch (typeof v) {
    case 'string': case 'boolean': case 'undefined': return undefined
    case 'number': return Number.isFinite(v) ? undefined : `${v} is not a finite number`
    case 'bigint': return `integer ${v} is outside ±2^53`
    case 'object': {
      if (v === null || v instanceof Uint8Array) return undefined
      if (Array.isArray(v)) {
        for (const x of v) {
          const p = checkPlain(x, depth + 1)
          if (p !== undefined) return p
        }
        return undefined
      }
      if (Object.getPrototypeOf(v) !== Object.prototype) return `a ${(v as object).constructor?.name ?? 'non-plain'} value is not plain data`
      for (const k in v) {
        const p = checkPlain((v as Record<string, unknown>)[k], depth + 1)
        if (p !== undefined) return p
      }
      return undefined
    }
    default: return `a ${typeof v} value is not plain data`
  }
}

/** Decodes a frame sent by the server; throws FrameError on a malformed known frame. */
export function decodeServerFrame(bytes: Uint8Array): ServerFrame {
  const a = unpackFrame(bytes)
  if (!Array.isArray(a) || a.length === 0) throw new FrameError(0, 'a frame must be a MessagePack array [type, ...]')
  switch (a[0]) {
    case FrameType.WELCOME: {
      if (!isUint(a[1], 0xffff) || !isMap(a[2])) throw new FrameError(0, 'WELCOME must be [2, version, limits, options]')
      return { type: FrameType.WELCOME, version: a[1], limits: a[2] as unknown as ServerLimits, options: isMap(a[3]) ? a[3] : {} }
    }
    case FrameType.REPLY: {
      if (a.length !== 5 || !isUint(a[1], REQUEST_ID_MAX) || !isUint(a[2], 999) || !isUint(a[3], Number.MAX_SAFE_INTEGER)) {
        throw new FrameError(0, 'REPLY must be [4, reqId, status, retryAfterS, body]')
      }
      return { type: FrameType.REPLY, reqId: a[1], status: a[2], retryAfterS: a[3], body: a[4] }
    }
    case FrameType.PONG: {
      if (!isUint(a[1], REQUEST_ID_MAX)) throw new FrameError(0, 'PONG must be [6, pingId, serverTimeMs]')
      return { type: FrameType.PONG, pingId: a[1], serverTimeMs: typeof a[2] === 'number' ? a[2] : 0 }
    }
    case FrameType.PUSH: {
      if (a.length !== 4 || !isUint(a[1], Number.MAX_SAFE_INTEGER) || !isUint(a[2], Number.MAX_SAFE_INTEGER)) throw new FrameError(0, 'PUSH must be [7, subscriptionId, seq, body]')
      return { type: FrameType.PUSH, subscriptionId: a[1], seq: a[2], body: a[3] }
    }
    default:
      return { type: 'unknown', code: a[0] }
  }
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v)
  return `(${Array.isArray(v) ? 'array' : typeof v})`
}
