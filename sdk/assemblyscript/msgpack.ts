// MessagePack, the encoding of every payload of the host ABI (docs/extensions.md). The writer
// fills an unmanaged buffer (heap.alloc) so that its bytes can be handed to the host or returned
// as a result without a copy; the reader decodes straight from guest memory.

import { Kind, Obj, Value } from './value'

/** Why 64: rows and args are flat; deeper nesting is a malformed or hostile payload. */
const DEPTH_MAX = 64

export class Writer {
  ptr: usize
  len: u32 = 0
  cap: u32

  constructor(capacity: u32 = 128) {
    this.cap = capacity
    this.ptr = heap.alloc(capacity)
  }

  /** Room for `n` more bytes; returns where they go. */
  reserve(n: u32): usize {
    const need = this.len + n
    if (need > this.cap) {
      let cap = this.cap << 1
      while (cap < need) cap <<= 1
      this.ptr = heap.realloc(this.ptr, cap)
      this.cap = cap
    }
    const at = this.ptr + this.len
    this.len = need
    return at
  }

  free(): void {
    if (this.ptr != 0) heap.free(this.ptr)
    this.ptr = 0
  }

  u8(b: u32): void { store<u8>(this.reserve(1), <u8>b) }
  tag16(tag: u32, v: u32): void { const at = this.reserve(3); store<u8>(at, <u8>tag); store<u16>(at + 1, bswap<u16>(<u16>v)) }
  tag32(tag: u32, v: u32): void { const at = this.reserve(5); store<u8>(at, <u8>tag); store<u32>(at + 1, bswap<u32>(v)) }
  tag64(tag: u32, v: u64): void { const at = this.reserve(9); store<u8>(at, <u8>tag); store<u64>(at + 1, bswap<u64>(v)) }

  nil(): void { this.u8(0xc0) }
  bool(b: bool): void { this.u8(b ? 0xc3 : 0xc2) }

  int(v: i64): void {
    if (v >= 0) {
      if (v < 128) this.u8(<u32>v)
      else if (v <= 0xff) { this.u8(0xcc); this.u8(<u32>v) }
      else if (v <= 0xffff) this.tag16(0xcd, <u32>v)
      else if (v <= 0xffffffff) this.tag32(0xce, <u32>v)
      else this.tag64(0xcf, <u64>v)
    } else {
      if (v >= -32) this.u8(<u32>(<u8>v))
      else if (v >= -128) { this.u8(0xd0); this.u8(<u32>(<u8>v)) }
      else if (v >= -32768) this.tag16(0xd1, <u32>(<u16>v))
      else if (v >= -2147483648) this.tag32(0xd2, <u32>v)
      else this.tag64(0xd3, <u64>v)
    }
  }

  float(f: f64): void { this.tag64(0xcb, reinterpret<u64>(f)) }

  str(s: string): void {
    const n = <u32>String.UTF8.byteLength(s)
    if (n < 32) this.u8(0xa0 | n)
    else if (n <= 0xff) { this.u8(0xd9); this.u8(n) }
    else if (n <= 0xffff) this.tag16(0xda, n)
    else this.tag32(0xdb, n)
    String.UTF8.encodeUnsafe(changetype<usize>(s), s.length, this.reserve(n))
  }

  bytes(b: Uint8Array): void {
    const n = <u32>b.length
    if (n <= 0xff) { this.u8(0xc4); this.u8(n) }
    else if (n <= 0xffff) this.tag16(0xc5, n)
    else this.tag32(0xc6, n)
    memory.copy(this.reserve(n), b.dataStart, n)
  }

  arrayHeader(n: u32): void {
    if (n < 16) this.u8(0x90 | n)
    else if (n <= 0xffff) this.tag16(0xdc, n)
    else this.tag32(0xdd, n)
  }

  mapHeader(n: u32): void {
    if (n < 16) this.u8(0x80 | n)
    else if (n <= 0xffff) this.tag16(0xde, n)
    else this.tag32(0xdf, n)
  }

  obj(o: Obj): void {
    const n = o.keys.length
    this.mapHeader(<u32>n)
    for (let i = 0; i < n; i++) {
      this.str(unchecked(o.keys[i]))
      this.value(unchecked(o.vals[i]))
    }
  }

  array(a: Array<Value>): void {
    const n = a.length
    this.arrayHeader(<u32>n)
    for (let i = 0; i < n; i++) this.value(unchecked(a[i]))
  }

  value(v: Value): void {
    switch (v.kind) {
      case Kind.Nil: this.nil(); break
      case Kind.Bool: this.bool(v.i != 0); break
      case Kind.Int: this.int(v.i); break
      case Kind.Float: this.float(v.f); break
      case Kind.Str: this.str(v.s); break
      case Kind.Bin: this.bytes(v.bin!); break
      case Kind.Arr: this.array(v.arr!); break
      case Kind.Obj: this.obj(v.obj!); break
    }
  }
}

export class Reader {
  constructor(public at: usize, public end: usize) {}

  private need(n: usize): usize {
    if (this.end - this.at < n) throw new Error('msgpack: truncated payload')
    const p = this.at
    this.at += n
    return p
  }

  private u8(): u32 { return <u32>load<u8>(this.need(1)) }
  private be16(): u32 { return <u32>bswap<u16>(load<u16>(this.need(2))) }
  private be32(): u32 { return bswap<u32>(load<u32>(this.need(4))) }
  private be64(): u64 { return bswap<u64>(load<u64>(this.need(8))) }

  private str(n: u32): Value { return Value.str(String.UTF8.decodeUnsafe(this.need(n), n)) }

  private bin(n: u32): Value {
    const b = new Uint8Array(n)
    memory.copy(b.dataStart, this.need(n), n)
    return Value.bytes(b)
  }

  private array(n: u32, depth: i32): Value {
    const a = new Array<Value>()
    for (let i: u32 = 0; i < n; i++) a.push(this.value(depth + 1))
    return Value.array(a)
  }

  private map(n: u32, depth: i32): Value {
    const o = new Obj()
    for (let i: u32 = 0; i < n; i++) {
      const k = this.value(depth + 1)
      if (k.kind != Kind.Str) throw new Error('msgpack: a map key is not a string')
      // Appends without a lookup: keys of a map the host encoded are distinct.
      o.keys.push(k.s)
      o.vals.push(this.value(depth + 1))
    }
    return Value.object(o)
  }

  private ext(n: u32): Value {
    this.need(n + 1) // type byte + data: extensions are not used by the ABI; read as nil
    return Value.nil()
  }

  value(depth: i32 = 0): Value {
    if (depth > DEPTH_MAX) throw new Error('msgpack: nested too deep')
    const b = this.u8()
    if (b < 0x80) return Value.int(<i64>b)
    if (b >= 0xe0) return Value.int(<i64>(<i8>b))
    if (b < 0x90) return this.map(b & 0x0f, depth)
    if (b < 0xa0) return this.array(b & 0x0f, depth)
    if (b < 0xc0) return this.str(b & 0x1f)
    switch (b) {
      case 0xc0: return Value.nil()
      case 0xc2: return Value.bool(false)
      case 0xc3: return Value.bool(true)
      case 0xc4: return this.bin(this.u8())
      case 0xc5: return this.bin(this.be16())
      case 0xc6: return this.bin(this.be32())
      case 0xc7: return this.ext(this.u8())
      case 0xc8: return this.ext(this.be16())
      case 0xc9: return this.ext(this.be32())
      case 0xca: return Value.float(<f64>reinterpret<f32>(this.be32()))
      case 0xcb: return Value.float(reinterpret<f64>(this.be64()))
      case 0xcc: return Value.int(<i64>this.u8())
      case 0xcd: return Value.int(<i64>this.be16())
      case 0xce: return Value.int(<i64>this.be32())
      case 0xcf: return Value.int(<i64>this.be64())
      case 0xd0: return Value.int(<i64>(<i8>this.u8()))
      case 0xd1: return Value.int(<i64>(<i16>this.be16()))
      case 0xd2: return Value.int(<i64>(<i32>this.be32()))
      case 0xd3: return Value.int(<i64>this.be64())
      case 0xd4: return this.ext(1)
      case 0xd5: return this.ext(2)
      case 0xd6: return this.ext(4)
      case 0xd7: return this.ext(8)
      case 0xd8: return this.ext(16)
      case 0xd9: return this.str(this.u8())
      case 0xda: return this.str(this.be16())
      case 0xdb: return this.str(this.be32())
      case 0xdc: return this.array(this.be16(), depth)
      case 0xdd: return this.array(this.be32(), depth)
      case 0xde: return this.map(this.be16(), depth)
      case 0xdf: return this.map(this.be32(), depth)
    }
    throw new Error('msgpack: invalid type byte')
    return Value.nil()
  }
}
