// Dynamic values as they cross the host ABI: what a MessagePack value can be (nil, bool, integer,
// float, string, bytes, array, map with string keys). `Obj` keeps insertion order and looks keys
// up linearly: rows, args and records have a handful of fields, where a scan beats hashing.

export enum Kind { Nil, Bool, Int, Float, Str, Bin, Arr, Obj }

export class Value {
  kind: Kind = Kind.Nil
  i: i64 = 0
  f: f64 = 0
  s: string = ''
  bin: Uint8Array | null = null
  arr: Array<Value> | null = null
  obj: Obj | null = null

  static nil(): Value { return new Value() }
  static bool(b: bool): Value { const v = new Value(); v.kind = Kind.Bool; v.i = b ? 1 : 0; return v }
  static int(i: i64): Value { const v = new Value(); v.kind = Kind.Int; v.i = i; return v }
  static float(f: f64): Value { const v = new Value(); v.kind = Kind.Float; v.f = f; return v }
  static str(s: string): Value { const v = new Value(); v.kind = Kind.Str; v.s = s; return v }
  static bytes(b: Uint8Array): Value { const v = new Value(); v.kind = Kind.Bin; v.bin = b; return v }
  static array(a: Array<Value>): Value { const v = new Value(); v.kind = Kind.Arr; v.arr = a; return v }
  static object(o: Obj): Value { const v = new Value(); v.kind = Kind.Obj; v.obj = o; return v }

  get isNil(): bool { return this.kind == Kind.Nil }

  /** Integers as they are; floats with an integral value too (the host sends numbers past 2^32 as float64). */
  asInt(fallback: i64 = 0): i64 {
    if (this.kind == Kind.Int) return this.i
    if (this.kind == Kind.Float && Math.floor(this.f) == this.f && Math.abs(this.f) <= 9007199254740991.0) return <i64>this.f
    return fallback
  }

  asFloat(fallback: f64 = 0): f64 {
    if (this.kind == Kind.Float) return this.f
    if (this.kind == Kind.Int) return <f64>this.i
    return fallback
  }

  asBool(fallback: bool = false): bool { return this.kind == Kind.Bool ? this.i != 0 : fallback }
  asStr(fallback: string = ''): string { return this.kind == Kind.Str ? this.s : fallback }
  asObj(): Obj | null { return this.kind == Kind.Obj ? this.obj : null }
  asArr(): Array<Value> | null { return this.kind == Kind.Arr ? this.arr : null }
}

export class Obj {
  keys: Array<string> = []
  vals: Array<Value> = []

  get size(): i32 { return this.keys.length }

  indexOf(key: string): i32 {
    const keys = this.keys
    for (let i = 0, n = keys.length; i < n; i++) if (unchecked(keys[i]) == key) return i
    return -1
  }

  has(key: string): bool { return this.indexOf(key) >= 0 }

  get(key: string): Value | null {
    const i = this.indexOf(key)
    return i < 0 ? null : unchecked(this.vals[i])
  }

  int(key: string, fallback: i64 = 0): i64 { const v = this.get(key); return v == null ? fallback : v.asInt(fallback) }
  float(key: string, fallback: f64 = 0): f64 { const v = this.get(key); return v == null ? fallback : v.asFloat(fallback) }
  bool(key: string, fallback: bool = false): bool { const v = this.get(key); return v == null ? fallback : v.asBool(fallback) }
  str(key: string, fallback: string = ''): string { const v = this.get(key); return v == null ? fallback : v.asStr(fallback) }
  obj(key: string): Obj | null { const v = this.get(key); return v == null ? null : v.asObj() }
  arr(key: string): Array<Value> | null { const v = this.get(key); return v == null ? null : v.asArr() }

  /** Sets (replaces or appends) a field; returns this for chaining. */
  set(key: string, v: Value): Obj {
    const i = this.indexOf(key)
    if (i >= 0) unchecked(this.vals[i] = v)
    else {
      this.keys.push(key)
      this.vals.push(v)
    }
    return this
  }

  setNil(key: string): Obj { return this.set(key, Value.nil()) }
  setBool(key: string, b: bool): Obj { return this.set(key, Value.bool(b)) }
  setInt(key: string, i: i64): Obj { return this.set(key, Value.int(i)) }
  setFloat(key: string, f: f64): Obj { return this.set(key, Value.float(f)) }
  setStr(key: string, s: string): Obj { return this.set(key, Value.str(s)) }
  setObj(key: string, o: Obj): Obj { return this.set(key, Value.object(o)) }
  setArr(key: string, a: Array<Value>): Obj { return this.set(key, Value.array(a)) }
}
