// The state API over host calls: the operations of a builtin extension's `state`
// (src/shared/appdef/state.ts). Reads see committed state, earlier commands of the batch and
// this call's own writes. Writes are deferred: they travel with the next read or with the
// call's output, and the host applies them only if the call succeeds.

import { Op, deferWrite, hostCall } from './abi'
import { Writer } from './msgpack'
import { Obj, Value } from './value'

export class ViewRange {
  /** Clustering-column bounds: from <= cc < to (partial tuples, by cc order). */
  from: Obj | null = null
  to: Obj | null = null
  /** Rows at most; 0: the host's bound. */
  limit: i32 = 0
  reverse: bool = false
}

export class Principal {
  login: string = ''
  roles: Array<string> = []
}

function rowOf(v: Value | null): Obj | null {
  if (v == null) return null
  return v.asObj()
}

function arrayOf(v: Value | null): Array<Value> {
  if (v != null) {
    const a = v.asArr()
    if (a != null) return a
  }
  return new Array<Value>()
}

export namespace State {
  /** A record of the workspace (its fields plus sys.ID, sys.QName, sys.IsActive), or null. */
  export function record(id: i64): Obj | null {
    const w = new Writer(16)
    w.int(id)
    return rowOf(hostCall(Op.RECORD_GET, w))
  }

  /** Several records in one host call: one entry per id, null where there is none. */
  export function records(ids: Array<i64>): Array<Obj | null> {
    const w = new Writer(8 + 9 * <u32>ids.length)
    w.arrayHeader(<u32>ids.length)
    for (let i = 0; i < ids.length; i++) w.int(unchecked(ids[i]))
    const out = new Array<Obj | null>()
    const rows = arrayOf(hostCall(Op.RECORD_GET, w))
    for (let i = 0; i < ids.length; i++) out.push(i < rows.length ? unchecked(rows[i]).asObj() : null)
    return out
  }

  /** One view row by its full key (pk and cc fields), or null. */
  export function viewGet(view: string, key: Obj): Obj | null {
    const w = new Writer()
    w.arrayHeader(2)
    w.str(view)
    w.obj(key)
    return rowOf(hostCall(Op.VIEW_GET, w))
  }

  /** Rows of one partition key (all pk fields), in clustering order; bounded by the host. */
  export function viewRead(view: string, pk: Obj, range: ViewRange | null = null): Array<Obj> {
    const w = new Writer()
    w.arrayHeader(3)
    w.str(view)
    w.obj(pk)
    if (range == null) w.nil()
    else {
      const r = new Obj()
      if (range.from != null) r.setObj('from', range.from!)
      if (range.to != null) r.setObj('to', range.to!)
      if (range.limit > 0) r.setInt('limit', range.limit)
      if (range.reverse) r.setBool('reverse', true)
      w.obj(r)
    }
    const out = new Array<Obj>()
    const rows = arrayOf(hostCall(Op.VIEW_READ, w))
    for (let i = 0; i < rows.length; i++) {
      const o = unchecked(rows[i]).asObj()
      if (o != null) out.push(o)
    }
    return out
  }

  /** Commands: stages a new record; returns its id (a host call: the id comes from the host). */
  export function create(table: string, fields: Obj): i64 {
    const w = new Writer()
    w.arrayHeader(2)
    w.str(table)
    w.obj(fields)
    const v = hostCall(Op.RECORD_CREATE, w)
    return v == null ? 0 : v.asInt()
  }

  /** Commands: new values for some fields of an existing record (deferred). */
  export function update(id: i64, fields: Obj): void {
    const w = deferWrite(Op.RECORD_UPDATE)
    w.arrayHeader(2)
    w.int(id)
    w.obj(fields)
  }

  /** Projectors: writes (inserts or replaces) one view row; `key` holds all pk and cc fields (deferred). */
  export function viewPut(view: string, key: Obj, value: Obj): void {
    const w = deferWrite(Op.VIEW_PUT)
    w.arrayHeader(3)
    w.str(view)
    w.obj(key)
    w.obj(value)
  }

  /** Commands and queries: who called. Null for projectors. */
  export function principal(): Principal | null {
    const o = rowOf(hostCall(Op.PRINCIPAL, null))
    if (o == null) return null
    const p = new Principal()
    p.login = o.str('login')
    const roles = o.arr('roles')
    if (roles != null) for (let i = 0; i < roles.length; i++) p.roles.push(unchecked(roles[i]).asStr())
    return p
  }
}
