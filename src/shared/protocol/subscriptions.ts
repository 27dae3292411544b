// The bodies of subscription messages (docs/subscriptions.md): what a PUSH carries and what a
// resume reply lists. Part of the wire contract, shared by the partition workers that make
// diffs, the main thread that coalesces them and the SDK that applies them.

import { packValue } from './codec.js'

export type RowKey = string | number

export interface DiffOp {
  op: 'put' | 'update' | 'delete'
  key: RowKey
  row?: Record<string, unknown>
}

/** `{type: "diff", …}`: what changed in a subscription's result between two offsets. */
export interface Diff {
  type: 'diff'
  fromOffset: number
  toOffset: number
  ops: DiffOp[]
  /**
   * The result's keys in order, present only when it is not `appendOrder` of the previous
   * order: the previous keys without the deleted ones, then the put keys in the order of `ops`.
   */
  order?: RowKey[]
}

/** `{type: "end", …}`: the subscription is over, with the error that ended it. */
export interface End {
  type: 'end'
  status: number
  code: string
  message: string
}

/** The end of a subscription, from the error that ended it. */
export function endOf(e: { status: number; code: string; message: string }): End {
  return { type: 'end', status: e.status, code: e.code, message: e.message }
}

/** The MessagePack body of an end PUSH. */
export function encodeEnd(e: { status: number; code: string; message: string }): Uint8Array {
  return packValue(endOf(e))
}

/** The order a diff without `order` leaves: deleted keys out, put keys appended in op order. */
export function appendOrder(prev: readonly RowKey[], ops: readonly DiffOp[]): RowKey[] {
  const deleted = new Set<RowKey>()
  const put: RowKey[] = []
  for (const op of ops) {
    if (op.op === 'delete') deleted.add(op.key)
    else if (op.op === 'put') put.push(op.key)
  }
  const out = deleted.size === 0 ? [...prev] : prev.filter((k) => !deleted.has(k))
  for (const k of put) out.push(k)
  return out
}
