// View rows ↔ storage keys and values. The partition key fields form `pk` (after the view's
// prefix), clustering columns form `cc` with an order-preserving tuple encoding, so a range of
// clustering values is a byte range.

import { ValidationError } from './errors.js'
import { beginViewPk, encodeStored, decodeStored } from './layout.js'
import { beginKeyTuple, decodeKeyTuple, encodeKeyTuple, type KeyPart, type KeyPartType, type KeyWriter } from './storage/keys.js'
import { checkValue, validateFields } from './appdef/validate.js'
import type { FieldType, ResolvedField, ResolvedView } from './appdef/types.js'

type Row = Record<string, unknown>

export function keyPartType(t: FieldType): KeyPartType {
  switch (t) {
    case 'int32': case 'int64': case 'money': case 'ref': return 'int'
    case 'float32': case 'float64': return 'float'
    case 'bool': return 'bool'
    case 'varchar': case 'qname': return 'string'
    case 'bytes': return 'bytes'
  }
}

function part(f: ResolvedField, v: unknown, view: string): KeyPart {
  if (v === undefined || v === null) throw new ValidationError(`view ${view}: key field '${f.name}' is required`, view)
  checkValue(f, v, view, 'key')
  const type = keyPartType(f.type)
  return { type, value: v } as KeyPart
}

export function encodePkTuple(view: ResolvedView, key: Row): Uint8Array {
  return encodeKeyTuple(view.pk.map((f) => part(f, key[f.name], view.qname)))
}

/** The first `count` clustering columns (all when omitted) of `key`. */
export function encodeCcTuple(view: ResolvedView, key: Row, count = view.cc.length): Uint8Array {
  return encodeKeyTuple(view.cc.slice(0, count).map((f) => part(f, key[f.name], view.qname)))
}

/** How many leading clustering columns `key` gives, stopping at the first missing one. */
export function ccPrefixLength(view: ResolvedView, key: Row): number {
  let n = 0
  while (n < view.cc.length && key[view.cc[n]!.name] !== undefined) n++
  return n
}

export function viewRowKeys(view: ResolvedView, wsid: number, key: Row): { pk: Uint8Array; cc: Uint8Array } {
  // Parts written straight into the key writers: no KeyPart objects, no intermediate tuple.
  const pkWriter = beginViewPk(wsid, view.qname)
  for (let i = 0; i < view.pk.length; i++) writePart(pkWriter, view.pk[i]!, key, i, view.qname)
  const pk = pkWriter.end()
  const ccWriter = beginKeyTuple()
  for (let i = 0; i < view.cc.length; i++) writePart(ccWriter, view.cc[i]!, key, i, view.qname)
  return { pk, cc: ccWriter.end() }
}

function writePart(w: KeyWriter, f: ResolvedField, key: Row, index: number, view: string): void {
  const v = key[f.name]
  if (v === undefined || v === null) throw new ValidationError(`view ${view}: key field '${f.name}' is required`, view)
  checkValue(f, v, view, 'key')
  w.part(keyPartType(f.type), v, index)
}

export function encodeViewValue(view: ResolvedView, value: Row): Uint8Array {
  return encodeStored(validateFields(view.value, value, 'full', view.qname, 'value'))
}

/** A full row: the pk fields the reader asked for, the decoded clustering columns, the value. */
export function decodeViewRow(view: ResolvedView, pkRow: Row, cc: Uint8Array, value: Uint8Array): Row {
  const row: Row = {}
  for (const f of view.pk) row[f.name] = pkRow[f.name]
  const parts = decodeKeyTuple(cc, view.cc.map((f) => keyPartType(f.type)))
  view.cc.forEach((f, i) => {
    const v = parts[i]!.value
    row[f.name] = typeof v === 'bigint' ? Number(v) : v
  })
  Object.assign(row, decodeStored<Row>(value))
  return row
}
