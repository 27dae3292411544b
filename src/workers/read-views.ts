// View reads for processors: straight from storage (query processors), or storage merged with
// rows staged by the current transaction (command processors, actualizers), so an extension
// reads its own and its predecessors' uncommitted writes.

import type { ResolvedView } from '../shared/appdef/types.js'
import type { Row, ViewRange } from '../shared/appdef/state.js'
import { viewPk } from '../shared/layout.js'
import { compareBytes, latin1Of } from '../shared/storage/keys.js'
import type { IAppStorage, StorageRow } from '../shared/storage/types.js'
import { ccPrefixLength, decodeViewRow, encodeCcTuple, encodePkTuple, viewRowKeys } from '../shared/view-codec.js'

export interface StagedViewRow {
  pk: Uint8Array
  cc: Uint8Array
  value: Uint8Array
}

/** Staged view rows keyed by `viewRowKey(pk, cc)`. */
export type ViewStaging = Map<string, StagedViewRow>

/** Why 10,000: one extension read stays a few MiB; more is a scan that belongs in a query. */
export const VIEW_READ_ROWS_MAX = 10_000

/**
 * A view row's map key: pk's length (one UTF-16 unit: pk has at most 0xffff bytes), then pk's
 * and cc's bytes one char each (latin1). Unique per (pk, cc), opaque, and half as long as hex,
 * so it is cheaper to build and to hash (a staged row is looked up by it on every view read).
 */
export function viewRowKey(pk: Uint8Array, cc: Uint8Array): string {
  return String.fromCharCode(pk.length) + latin1Of(pk) + latin1Of(cc)
}

export function readViewRange(
  storage: IAppStorage, pk: Uint8Array, ccFrom: Uint8Array | undefined, ccTo: Uint8Array | undefined, limit: number, reverse: boolean,
): AsyncIterable<StorageRow> {
  return storage.read(pk, { ccFrom, ccTo, limit, reverse })
}

/** A view row's storage keys and its map key (`viewRowKey`). */
export interface RowKeys {
  readonly pk: Uint8Array
  readonly cc: Uint8Array
  readonly mapKey: string
}

/**
 * The keys of the last view row asked for, kept for the next ask of the same row: a projector's
 * read-modify-write (`viewGet` then `viewPut` of one key) builds and hashes them once. Only keys
 * of plain values are kept (a byte-array key part could change in place between the calls).
 */
export class RowKeyMemo {
  private view: ResolvedView | undefined
  private wsid = 0
  private readonly values: unknown[] = []
  private keys: RowKeys | undefined

  of(view: ResolvedView, wsid: number, key: Row): RowKeys {
    if (this.keys !== undefined && view === this.view && wsid === this.wsid && this.sameValues(view, key)) return this.keys
    const keys = rowKeysOf(view, wsid, key)
    this.keys = undefined
    this.values.length = 0
    for (const f of view.pk) if (!this.keep(key[f.name])) return keys
    for (const f of view.cc) if (!this.keep(key[f.name])) return keys
    this.view = view
    this.wsid = wsid
    this.keys = keys
    return keys
  }

  private keep(v: unknown): boolean {
    if (typeof v === 'object' || typeof v === 'function') return false
    this.values.push(v)
    return true
  }

  private sameValues(view: ResolvedView, key: Row): boolean {
    let i = 0
    for (const f of view.pk) if (key[f.name] !== this.values[i++]) return false
    for (const f of view.cc) if (key[f.name] !== this.values[i++]) return false
    return true
  }
}

/** One row by full key: the newest staging first, then storage. */
export async function getMergedView(
  storage: IAppStorage, stagings: readonly ViewStaging[], view: ResolvedView, wsid: number, key: Row, memo?: RowKeyMemo,
): Promise<Row | undefined> {
  const { pk, cc, mapKey: k } = memo === undefined ? rowKeysOf(view, wsid, key) : memo.of(view, wsid, key)
  for (let i = stagings.length - 1; i >= 0; i--) {
    const s = stagings[i]!.get(k)
    if (s !== undefined) return decodeViewRow(view, key, cc, s.value)
  }
  const bytes = await storage.get(pk, cc)
  return bytes === undefined ? undefined : decodeViewRow(view, key, cc, bytes)
}

/** A view row's keys, built afresh (validating the key). */
export function rowKeysOf(view: ResolvedView, wsid: number, key: Row): RowKeys {
  const { pk, cc } = viewRowKeys(view, wsid, key)
  return { pk, cc, mapKey: viewRowKey(pk, cc) }
}

/** Rows of one partition key in clustering order, storage merged with stagings (oldest first). */
export async function* readMergedView(
  storage: IAppStorage, stagings: readonly ViewStaging[], view: ResolvedView, wsid: number, pkRow: Row, range: ViewRange = {},
): AsyncIterable<Row> {
  const limit = Math.min(range.limit ?? VIEW_READ_ROWS_MAX, VIEW_READ_ROWS_MAX)
  const pk = viewPk(wsid, view.qname, encodePkTuple(view, pkRow))
  const from = range.from ? encodeCcTuple(view, range.from, ccPrefixLength(view, range.from)) : undefined
  const to = range.to ? encodeCcTuple(view, range.to, ccPrefixLength(view, range.to)) : undefined
  const rows = new Map<string, { cc: Uint8Array; value: Uint8Array }>()
  // The top `limit` rows of the merge are among storage's top `limit` and the staged rows.
  for await (const r of readViewRange(storage, pk, from, to, limit, range.reverse === true)) rows.set(viewRowKey(pk, r.cc), r)
  for (const staging of stagings) {
    for (const [k, s] of staging) {
      if (compareBytes(s.pk, pk) !== 0) continue
      if (from && compareBytes(s.cc, from) < 0) continue
      if (to && compareBytes(s.cc, to) >= 0) continue
      rows.set(k, { cc: s.cc, value: s.value })
    }
  }
  const sign = range.reverse ? -1 : 1
  const sorted = [...rows.values()].sort((a, b) => compareBytes(a.cc, b.cc) * sign)
  for (const r of sorted.slice(0, limit)) yield decodeViewRow(view, pkRow, r.cc, r.value)
}
