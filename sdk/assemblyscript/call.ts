// One invocation of an entry point: its decoded input and the ways to end it. An entry point is
// `export function name(ptr: usize, len: u32): i64` and starts with `Call.begin(ptr, len)`.
//
//   commands, queries: input {qname, wsid, args}
//   projectors:        input {qname, wsid, plogOffset, wlogOffset, registeredAtMs, args, cuds}

import { beginCall, decodeInput, finishError, finishOk } from './abi'
import { jsonObj, jsonString } from './json'
import { Writer } from './msgpack'
import { Obj } from './value'

export class Call {
  /** The whole input map (projectors read the event's fields here). */
  input: Obj = new Obj()
  /** The function (commands, queries) or the event (projectors). */
  qname: string = ''
  wsid: i64 = 0
  args: Obj = new Obj()

  static begin(ptr: usize, len: u32): Call {
    beginCall()
    const c = new Call()
    const input = decodeInput(ptr, len).asObj()
    if (input != null) {
      c.input = input
      c.qname = input.str('qname')
      c.wsid = input.int('wsid')
      const args = input.obj('args')
      if (args != null) c.args = args
    }
    return c
  }

  /** Projectors: the event's CUDs, each {id, table, isNew, fields}. */
  cuds(): Array<Obj> {
    const out = new Array<Obj>()
    const a = this.input.arr('cuds')
    if (a != null) for (let i = 0; i < a.length; i++) {
      const o = unchecked(a[i]).asObj()
      if (o != null) out.push(o)
    }
    return out
  }

  /** Commands: succeed with a result object (or none). Projectors: succeed. */
  ok(result: Obj | null = null): i64 {
    const w = new Writer()
    if (result == null) w.nil()
    else w.obj(result)
    return finishOk(w)
  }

  /** Queries: succeed with these rows (`{"results": [...]}`). */
  rows(rows: Array<Obj>): i64 {
    const w = new Writer(256)
    w.arrayHeader(<u32>rows.length)
    for (let i = 0; i < rows.length; i++) w.obj(unchecked(rows[i]))
    return finishOk(w)
  }

  /**
   * Fails the call with a status of the extension's choice (400..599; anything else is 500),
   * as `throw new ExtensionError(status, message, data)` does in a builtin. Nothing the call
   * wrote is applied.
   */
  fail(status: i32, message: string, data: Obj | null = null): i64 {
    const w = new Writer()
    const head = '{"status":' + status.toString() + ',"message":'
    for (let i = 0; i < head.length; i++) w.u8(head.charCodeAt(i))
    jsonString(w, message)
    if (data != null) {
      const d = ',"data":'
      for (let i = 0; i < d.length; i++) w.u8(d.charCodeAt(i))
      jsonObj(w, data)
    }
    w.u8(0x7d)
    return finishError(w)
  }
}

/** Shorthand for building objects: `obj().setInt('a', 1)`. */
export function obj(): Obj {
  return new Obj()
}
