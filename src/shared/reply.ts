// Rendering of reply bodies in the three formats (v2 JSON, v1 JSON, MessagePack). The shapes
// are the external contract (docs/http-api.md, docs/protocol.md).

import { Packr } from 'msgpackr'
import { ReplyFormat, type ReplyFormatCode } from './engine-messages.js'
import type { VvmError } from './errors.js'

const utf8 = new TextEncoder()
const msgpack = new Packr({ useRecords: false, mapsAsObjects: true })

export interface CommandOutcome {
  wlogOffset: number
  newIDs: Record<string, number>
  result: Record<string, unknown> | undefined
}

function encode(format: ReplyFormatCode, value: unknown): Uint8Array {
  // Buffer.from takes small strings from Node's pool: cheaper than a fresh array per reply.
  return format === ReplyFormat.MSGPACK ? msgpack.pack(value) : Buffer.from(JSON.stringify(value), 'utf8')
}

export function renderCommand(format: ReplyFormatCode, o: CommandOutcome): Uint8Array {
  if (format === ReplyFormat.JSON_V1) {
    return encode(format, { CurrentWLogOffset: o.wlogOffset, NewIDs: o.newIDs, Result: o.result ?? {} })
  }
  return encode(format, { currentWLogOffset: o.wlogOffset, newIDs: o.newIDs, result: o.result ?? {} })
}

export function renderResults(format: ReplyFormatCode, rows: readonly unknown[]): Uint8Array {
  return encode(format, { results: rows })
}

export function renderObject(format: ReplyFormatCode, value: unknown): Uint8Array {
  return encode(format, value)
}

export function renderError(format: ReplyFormatCode, err: VvmError): Uint8Array {
  if (format === ReplyFormat.JSON_V1) {
    return encode(format, { 'sys.Error': { HTTPStatus: err.status, Message: err.message, QName: err.qname ?? '', Data: err.data ?? '' } })
  }
  const body: Record<string, unknown> = { status: err.status, message: err.message, code: err.code }
  if (err.qname !== undefined) body.qname = err.qname
  if (err.data !== undefined) body.data = err.data
  return encode(format, body)
}
