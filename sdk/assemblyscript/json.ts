// JSON of an extension's error result: the ABI carries it as UTF-8 text (docs/extensions.md,
// "Errors"), `{"status": 409, "message": "...", "data": {...}}`.

import { Writer } from './msgpack'
import { Kind, Obj, Value } from './value'

const HEX = '0123456789abcdef'

export function jsonString(w: Writer, s: string): void {
  w.u8(0x22)
  const n = <u32>String.UTF8.byteLength(s)
  const tmp = heap.alloc(n)
  String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, tmp)
  for (let i: u32 = 0; i < n; i++) {
    const c = <u32>load<u8>(tmp + i)
    if (c == 0x22 || c == 0x5c) { w.u8(0x5c); w.u8(c) }
    else if (c < 0x20) {
      w.u8(0x5c); w.u8(0x75); w.u8(0x30); w.u8(0x30)
      w.u8(HEX.charCodeAt(c >> 4)); w.u8(HEX.charCodeAt(c & 15))
    } else w.u8(c)
  }
  heap.free(tmp)
  w.u8(0x22)
}

function ascii(w: Writer, s: string): void {
  for (let i = 0; i < s.length; i++) w.u8(s.charCodeAt(i))
}

export function jsonValue(w: Writer, v: Value): void {
  switch (v.kind) {
    case Kind.Bool: ascii(w, v.i != 0 ? 'true' : 'false'); break
    case Kind.Int: ascii(w, v.i.toString()); break
    case Kind.Float: ascii(w, isFinite(v.f) ? v.f.toString() : 'null'); break
    case Kind.Str: jsonString(w, v.s); break
    case Kind.Arr: {
      const a = v.arr!
      w.u8(0x5b)
      for (let i = 0; i < a.length; i++) {
        if (i > 0) w.u8(0x2c)
        jsonValue(w, unchecked(a[i]))
      }
      w.u8(0x5d)
      break
    }
    case Kind.Obj: jsonObj(w, v.obj!); break
    default: ascii(w, 'null') // nil, and bytes (errors carry no binary data)
  }
}

export function jsonObj(w: Writer, o: Obj): void {
  w.u8(0x7b)
  for (let i = 0; i < o.keys.length; i++) {
    if (i > 0) w.u8(0x2c)
    jsonString(w, unchecked(o.keys[i]))
    w.u8(0x3a)
    jsonValue(w, unchecked(o.vals[i]))
  }
  w.u8(0x7d)
}
