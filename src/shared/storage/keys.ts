// Order-preserving byte encodings for storage keys. The engine builds `pk` and `cc` from typed
// values (view keys, offsets, ids); every backend compares keys as unsigned bytes, so an
// encoding here must make byte order equal value order. Shared by main and worker threads.

import { StorageError, VvmError } from '../errors.js'

export type KeyPartType = 'int' | 'float' | 'bool' | 'string' | 'bytes'

/**
 * One typed component of a key tuple. `int` is a signed 64-bit integer: a safe-integer number
 * or a bigint in [-2^63, 2^63).
 */
export type KeyPart =
  | { readonly type: 'int'; readonly value: number | bigint }
  | { readonly type: 'float'; readonly value: number }
  | { readonly type: 'bool'; readonly value: boolean }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'bytes'; readonly value: Uint8Array }

/** What `decodeKeyTuple` returns: an int decodes to a number when safe, else to a bigint. */
export type DecodedKeyPart =
  | { readonly type: 'int'; readonly value: number | bigint }
  | { readonly type: 'float'; readonly value: number }
  | { readonly type: 'bool'; readonly value: boolean }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'bytes'; readonly value: Uint8Array }

const U32_RANGE = 0x1_0000_0000
const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n
// A decoded high word inside this range gives |n| <= 2^53, where float arithmetic is exact.
const SAFE_HIGH_WORD_MIN = -0x20_0000
const SAFE_HIGH_WORD_MAX = 0x1f_ffff
// Variable-length parts: 0x00 inside the data is written 0x00 0xff, the end is 0x00 0x01, so
// a shorter value sorts before any longer value it prefixes, and nothing follows ambiguously.
const ESCAPE = 0x00
const ESCAPED_ZERO = 0xff
const TERMINATOR = 0x01
const LONE_SURROGATE = /\p{Cs}/u

const utf8Decoder = new TextDecoder('utf-8', { fatal: true })

export function u16be(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) {
    throw new VvmError('VALIDATION', `u16be: ${n} is not an integer in [0, 65535]`)
  }
  return new Uint8Array([n >>> 8, n & 0xff])
}

/** Big-endian 8 bytes of a non-negative safe integer (offsets, ids). */
export function u64be(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new VvmError('VALIDATION', `u64be: ${n} is not a non-negative safe integer`)
  }
  const out = new Uint8Array(8)
  const view = new DataView(out.buffer)
  view.setUint32(0, Math.floor(n / U32_RANGE))
  view.setUint32(4, n % U32_RANGE)
  return out
}

/** Inverse of `u64be`. */
export function readU64be(bytes: Uint8Array, offset = 0): number {
  if (offset < 0 || offset + 8 > bytes.length) throw new StorageError(`readU64be: need 8 bytes at offset ${offset}, have ${bytes.length}`)
  // By arithmetic, not a DataView per call: the storage routes every row by a u64 of its key.
  const high = ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0
  const low = ((bytes[offset + 4]! << 24) | (bytes[offset + 5]! << 16) | (bytes[offset + 6]! << 8) | bytes[offset + 7]!) >>> 0
  const n = high * U32_RANGE + low
  if (!Number.isSafeInteger(n)) throw new StorageError(`readU64be: value at offset ${offset} exceeds the safe integer range`)
  return n
}

/** Writes `v` as a u32 little-endian at `at` (the packed batch form, the commit log); returns the offset after it. */
export function writeU32le(out: Uint8Array, at: number, v: number): number {
  out[at] = v & 0xff
  out[at + 1] = (v >>> 8) & 0xff
  out[at + 2] = (v >>> 16) & 0xff
  out[at + 3] = v >>> 24
  return at + 4
}

export function readU32le(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0
}

/** Writes a non-negative safe integer as a u64 little-endian at `at`. */
export function writeU64le(out: Uint8Array, at: number, v: number): void {
  writeU32le(out, at, v % U32_RANGE)
  writeU32le(out, at + 4, Math.floor(v / U32_RANGE))
}

export function readU64le(bytes: Uint8Array, at: number): number {
  return readU32le(bytes, at) + readU32le(bytes, at + 4) * U32_RANGE
}

/**
 * Builds a key in a scratch buffer and returns it as one exact-size array: the command path
 * builds several keys per command, and composing them from small arrays (tag, u16, u64, utf8,
 * concat) cost five or six allocations each. Not re-entrant: end one key before beginning
 * another with the same writer. Module state, so one writer per thread.
 */
export class KeyWriter {
  private buf = new Uint8Array(256)
  private view = new DataView(this.buf.buffer)
  private length = 0
  private readonly utf8 = new TextEncoder()

  begin(): this {
    this.length = 0
    return this
  }

  u8(n: number): this {
    this.reserve(1)
    this.buf[this.length++] = n
    return this
  }

  u16(n: number): this {
    if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new VvmError('VALIDATION', `u16be: ${n} is not an integer in [0, 65535]`)
    this.reserve(2)
    this.view.setUint16(this.length, n)
    this.length += 2
    return this
  }

  /** Big-endian 8 bytes of a non-negative safe integer, as `u64be`. */
  u64(n: number): this {
    if (!Number.isSafeInteger(n) || n < 0) throw new VvmError('VALIDATION', `u64be: ${n} is not a non-negative safe integer`)
    this.reserve(8)
    this.view.setUint32(this.length, Math.floor(n / U32_RANGE))
    this.view.setUint32(this.length + 4, n % U32_RANGE)
    this.length += 8
    return this
  }

  /** A signed 64-bit integer in the order-preserving form of `encodeKeyTuple`. */
  int64(value: number | bigint, index: number): this {
    this.reserve(8)
    const at = this.length
    if (typeof value === 'number') {
      if (!Number.isSafeInteger(value)) throw new VvmError('VALIDATION', `encodeKeyTuple: part ${index}: int ${value} is not a safe integer`)
      const high = Math.floor(value / U32_RANGE)
      this.view.setInt32(at, high)
      this.view.setUint32(at + 4, value - high * U32_RANGE)
    } else {
      if (value < INT64_MIN || value > INT64_MAX) throw new VvmError('VALIDATION', `encodeKeyTuple: part ${index}: int ${value} is outside int64`)
      this.view.setBigInt64(at, value)
    }
    this.buf[at] = this.buf[at]! ^ 0x80
    this.length += 8
    return this
  }

  bytes(b: Uint8Array): this {
    this.reserve(b.length)
    this.buf.set(b, this.length)
    this.length += b.length
    return this
  }

  utf8String(s: string): this {
    // Three bytes per UTF-16 unit at most.
    this.reserve(s.length * 3)
    // ASCII (qnames, most names) byte by byte: encodeInto costs a view and a result object.
    const buf = this.buf
    let at = this.length
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i)
      if (c >= 0x80) {
        this.length += this.utf8.encodeInto(s, buf.subarray(this.length)).written
        return this
      }
      buf[at++] = c
    }
    this.length = at
    return this
  }

  /** One part of a key tuple in the order-preserving form of `encodeKeyTuple`; `index` names it in errors. */
  part(type: KeyPartType, value: unknown, index: number): this {
    if (type === 'int') return this.int64(value as number | bigint, index)
    return this.bytes(encodePart({ type, value } as KeyPart, index))
  }

  /** A copy of the key built since `begin`. */
  end(): Uint8Array {
    return this.buf.slice(0, this.length)
  }

  /**
   * The key built since `begin`, in place: valid only until this writer's next `begin`. For a
   * call that copies the bytes before it returns (LevelDB's synchronous get, a batch's put).
   */
  inPlace(): Uint8Array {
    return this.buf.subarray(0, this.length)
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n))
    next.set(this.buf.subarray(0, this.length))
    this.buf = next
    this.view = new DataView(next.buffer)
  }
}

/** The writer of storage keys (layout, backends); not for key tuples, which use their own. */
export const keyWriter = new KeyWriter()
const tupleWriter = new KeyWriter()

export function concatBytes(...parts: readonly Uint8Array[]): Uint8Array {
  let length = 0
  for (const part of parts) length += part.length
  const out = new Uint8Array(length)
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

/**
 * A copy in its own ArrayBuffer of exactly its length. Not `b.slice()`: on a Node Buffer (what
 * msgpackr and the Cassandra driver return) `slice` is a view of the same memory.
 */
export function copyBytes(b: Uint8Array): Uint8Array {
  return new Uint8Array(b)
}

/** Node's native hex encoder, called on the bytes themselves: no Buffer made per call (~35 % faster). */
const hexSlice = (Buffer.prototype as unknown as { hexSlice: (this: Uint8Array, start: number, end: number) => string }).hexSlice

/** Hex of the bytes, read in place (no copy): map keys of byte strings. */
export function hexOf(bytes: Uint8Array): string {
  return hexSlice.call(bytes, 0, bytes.length)
}

const latin1Slice = (Buffer.prototype as unknown as { latin1Slice: (this: Uint8Array, start: number, end: number) => string }).latin1Slice

/** The bytes as a string of one char each (latin1), read in place: compact map keys of byte strings. */
export function latin1Of(bytes: Uint8Array): string {
  return latin1Slice.call(bytes, 0, bytes.length)
}

/** Unsigned lexicographic order, the order every backend uses for keys. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  // Buffer.compare accepts any Uint8Array and runs natively (memcmp).
  return Buffer.compare(a, b)
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0
}

/**
 * The smallest byte string greater than every string starting with `prefix`, i.e. the
 * exclusive upper bound of a prefix range. `undefined` when none exists (empty or all 0xff):
 * the range is then unbounded above.
 */
export function prefixEnd(prefix: Uint8Array): Uint8Array | undefined {
  let end = prefix.length
  while (end > 0 && prefix[end - 1] === 0xff) end--
  if (end === 0) return undefined
  // Uint8Array's slice copies; Buffer's `slice` would return a view of the caller's bytes.
  const out = Uint8Array.prototype.slice.call(prefix, 0, end)
  out[end - 1] = out[end - 1]! + 1
  return out
}

/** Concatenated order-preserving encodings: tuples compare component by component. */
export function encodeKeyTuple(values: readonly KeyPart[]): Uint8Array {
  const w = tupleWriter.begin()
  for (let i = 0; i < values.length; i++) w.part(values[i]!.type, values[i]!.value, i)
  return w.end()
}

/** The writer of key tuples, begun: for callers that write parts one by one (`KeyWriter.part`). */
export function beginKeyTuple(): KeyWriter {
  return tupleWriter.begin()
}

export function decodeKeyTuple(bytes: Uint8Array, types: readonly KeyPartType[]): DecodedKeyPart[] {
  const out: DecodedKeyPart[] = []
  let offset = 0
  for (let i = 0; i < types.length; i++) {
    const type = types[i]!
    switch (type) {
      case 'int':
        need(bytes, offset, 8, i)
        out.push({ type, value: decodeInt64(bytes, offset) })
        offset += 8
        break
      case 'float':
        need(bytes, offset, 8, i)
        out.push({ type, value: decodeFloat64(bytes, offset) })
        offset += 8
        break
      case 'bool': {
        need(bytes, offset, 1, i)
        const byte = bytes[offset]!
        if (byte > 1) throw new StorageError(`decodeKeyTuple: part ${i}: bool byte ${byte} is neither 0 nor 1`)
        out.push({ type, value: byte === 1 })
        offset += 1
        break
      }
      case 'string':
      case 'bytes': {
        const [raw, next] = decodeEscaped(bytes, offset, i)
        offset = next
        if (type === 'bytes') {
          out.push({ type, value: raw })
        } else {
          try {
            out.push({ type, value: utf8Decoder.decode(raw) })
          } catch (err) {
            throw new StorageError(`decodeKeyTuple: part ${i}: invalid UTF-8`, err)
          }
        }
        break
      }
      default: {
        const never: never = type
        throw new VvmError('VALIDATION', `decodeKeyTuple: unknown part type ${String(never)}`)
      }
    }
  }
  if (offset !== bytes.length) {
    throw new StorageError(`decodeKeyTuple: ${bytes.length - offset} trailing bytes after ${types.length} parts`)
  }
  return out
}

function encodePart(part: KeyPart, index: number): Uint8Array {
  switch (part.type) {
    case 'int': return encodeInt64(part.value, index)
    case 'float': return encodeFloat64(part.value)
    case 'bool': return new Uint8Array([part.value ? 1 : 0])
    case 'string':
      if (LONE_SURROGATE.test(part.value)) {
        // UTF-8 cannot carry a lone surrogate; encoding it as U+FFFD would merge distinct keys.
        throw new VvmError('VALIDATION', `encodeKeyTuple: part ${index}: string has a lone surrogate`)
      }
      return encodeEscaped(Buffer.from(part.value, 'utf8'))
    case 'bytes': return encodeEscaped(part.value)
    default: {
      const never: never = part
      throw new VvmError('VALIDATION', `encodeKeyTuple: part ${index}: unknown type ${JSON.stringify(never)}`)
    }
  }
}

// Two's complement with the sign bit flipped: negative numbers then sort below positive ones.
function encodeInt64(value: number | bigint, index: number): Uint8Array {
  const out = new Uint8Array(8)
  const view = new DataView(out.buffer)
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new VvmError('VALIDATION', `encodeKeyTuple: part ${index}: int ${value} is not a safe integer`)
    const high = Math.floor(value / U32_RANGE)
    view.setInt32(0, high)
    view.setUint32(4, value - high * U32_RANGE)
  } else {
    if (value < INT64_MIN || value > INT64_MAX) throw new VvmError('VALIDATION', `encodeKeyTuple: part ${index}: int ${value} is outside int64`)
    view.setBigInt64(0, value)
  }
  out[0] = out[0]! ^ 0x80
  return out
}

function decodeInt64(bytes: Uint8Array, offset: number): number | bigint {
  // From the bytes by arithmetic: a copy with a DataView over its buffer made V8 move the
  // copy's bytes off its heap (an allocation and a free per decoded int).
  const high = ((bytes[offset]! ^ 0x80) << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!
  const low = ((bytes[offset + 4]! << 24) | (bytes[offset + 5]! << 16) | (bytes[offset + 6]! << 8) | bytes[offset + 7]!) >>> 0
  if (high >= SAFE_HIGH_WORD_MIN && high <= SAFE_HIGH_WORD_MAX) {
    const n = high * U32_RANGE + low
    if (Number.isSafeInteger(n)) return n
  }
  return BigInt(high) * BigInt(U32_RANGE) + BigInt(low)
}

// IEEE 754 order trick: positive floats get the sign bit set, negative floats get every bit
// inverted, so -Inf < negatives < -0 < +0 < positives < +Inf < NaN in byte order.
function encodeFloat64(value: number): Uint8Array {
  const out = new Uint8Array(8)
  // One NaN bit pattern, so equal keys have equal bytes.
  new DataView(out.buffer).setFloat64(0, Number.isNaN(value) ? Number.NaN : value)
  if ((out[0]! & 0x80) !== 0) {
    for (let i = 0; i < 8; i++) out[i] = ~out[i]! & 0xff
  } else {
    out[0] = out[0]! | 0x80
  }
  return out
}

function decodeFloat64(bytes: Uint8Array, offset: number): number {
  const copy = Uint8Array.prototype.slice.call(bytes, offset, offset + 8)
  if ((copy[0]! & 0x80) !== 0) {
    copy[0] = copy[0]! & 0x7f
  } else {
    for (let i = 0; i < 8; i++) copy[i] = ~copy[i]! & 0xff
  }
  return new DataView(copy.buffer).getFloat64(0)
}

function encodeEscaped(raw: Uint8Array): Uint8Array {
  let zeros = 0
  for (const byte of raw) if (byte === ESCAPE) zeros++
  const out = new Uint8Array(raw.length + zeros + 2)
  let j = 0
  for (const byte of raw) {
    out[j++] = byte
    if (byte === ESCAPE) out[j++] = ESCAPED_ZERO
  }
  out[j++] = ESCAPE
  out[j] = TERMINATOR
  return out
}

function decodeEscaped(bytes: Uint8Array, start: number, index: number): [Uint8Array, number] {
  const out: number[] = []
  let i = start
  for (;;) {
    if (i >= bytes.length) throw new StorageError(`decodeKeyTuple: part ${index}: missing terminator`)
    const byte = bytes[i]!
    if (byte !== ESCAPE) {
      out.push(byte)
      i++
      continue
    }
    const next = bytes[i + 1]
    if (next === TERMINATOR) return [Uint8Array.from(out), i + 2]
    if (next === ESCAPED_ZERO) {
      out.push(0)
      i += 2
      continue
    }
    throw new StorageError(`decodeKeyTuple: part ${index}: bad escape 0x00 0x${(next ?? 0).toString(16)} at ${i}`)
  }
}

function need(bytes: Uint8Array, offset: number, count: number, index: number): void {
  if (offset + count > bytes.length) {
    throw new StorageError(`decodeKeyTuple: part ${index}: need ${count} bytes at ${offset}, have ${bytes.length - offset}`)
  }
}
