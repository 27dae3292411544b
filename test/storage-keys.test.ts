import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { VvmError } from '../src/shared/errors.js'
import { compareBytes, concatBytes, decodeKeyTuple, encodeKeyTuple, hexOf, prefixEnd, readU32le, readU64be, readU64le, u16be, u64be, writeU32le, writeU64le } from '../src/shared/storage/keys.js'
import type { KeyPart, KeyPartType } from '../src/shared/storage/keys.js'
import { KeyWriter } from '../src/shared/storage/keys.js'
import { defineApp, definePackage } from '../src/shared/appdef/define.js'
import { encodeCcTuple, encodePkTuple, viewRowKeys } from '../src/shared/view-codec.js'
import { RowKeyMemo, viewRowKey } from '../src/workers/read-views.js'
import { latin1Of } from '../src/shared/storage/keys.js'
import {
  actualizerOffsetKey, collectionPk, grantsKey, idempotencyKey, loginKey, partitionHeadKey, plogKey, recordCc, recordsPk, viewPk, wlogKey, wsHeadKey,
} from '../src/shared/layout.js'

// Deterministic pseudo-random values (mulberry32), so a failure reproduces.
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')
const sign = (n: number): number => (n < 0 ? -1 : n > 0 ? 1 : 0)

/** Code point order, which is UTF-8 byte order (JS `<` compares UTF-16 units instead). */
function compareStrings(a: string, b: string): number {
  const ca = Array.from(a, (c) => c.codePointAt(0)!)
  const cb = Array.from(b, (c) => c.codePointAt(0)!)
  for (let i = 0; i < Math.min(ca.length, cb.length); i++) if (ca[i] !== cb[i]) return ca[i]! - cb[i]!
  return ca.length - cb.length
}

function comparePart(a: KeyPart, b: KeyPart): number {
  switch (a.type) {
    case 'int': { const x = BigInt(a.value), y = BigInt(b.value as number | bigint); return x < y ? -1 : x > y ? 1 : 0 }
    case 'float': return sign(a.value - (b.value as number))
    case 'bool': return Number(a.value) - Number(b.value as boolean)
    case 'string': return compareStrings(a.value, b.value as string)
    case 'bytes': return compareBytes(a.value, b.value as Uint8Array)
  }
}

function compareTuples(a: readonly KeyPart[], b: readonly KeyPart[]): number {
  for (let i = 0; i < a.length; i++) {
    const c = comparePart(a[i]!, b[i]!)
    if (c !== 0) return sign(c)
  }
  return 0
}

const TUPLE_TYPES: readonly KeyPartType[] = ['string', 'int', 'bytes', 'float', 'bool']

function randomString(next: () => number): string {
  const alphabet = ['\u0000', 'a', 'b', '\u007f', '\u00e9', '\uffff', '\u{1f600}', '\u{10ffff}', '\ue000']
  let out = ''
  const length = Math.floor(next() * 4)
  for (let i = 0; i < length; i++) out += alphabet[Math.floor(next() * alphabet.length)]
  return out
}

function randomTuple(next: () => number): KeyPart[] {
  const ints = [0, 1, -1, 255, 256, -256, 2 ** 32, -(2 ** 32), Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]
  const floats = [0, 1.5, -1.5, 1e-300, -1e-300, 1e300, -1e300, Infinity, -Infinity, 2 ** 53]
  return [
    { type: 'string', value: randomString(next) },
    { type: 'int', value: next() < 0.5 ? ints[Math.floor(next() * ints.length)]! : Math.round((next() - 0.5) * 2e6) },
    { type: 'bytes', value: Uint8Array.from({ length: Math.floor(next() * 3) }, () => [0, 1, 0xfe, 0xff][Math.floor(next() * 4)]!) },
    { type: 'float', value: next() < 0.5 ? floats[Math.floor(next() * floats.length)]! : (next() - 0.5) * 1e6 },
    { type: 'bool', value: next() < 0.5 },
  ]
}

describe('storage keys: fixed-width helpers', () => {
  it('u16be and u64be are big-endian and reject out-of-range input', () => {
    assert.equal(hex(u16be(0x1234)), '1234')
    assert.equal(hex(u64be(0)), '0000000000000000')
    assert.equal(hex(u64be(2 ** 32 + 5)), '0000000100000005')
    assert.equal(hex(u64be(Number.MAX_SAFE_INTEGER)), '001fffffffffffff')
    assert.equal(readU64be(u64be(Number.MAX_SAFE_INTEGER)), Number.MAX_SAFE_INTEGER)
    // At an offset, with the top bit of either word set; refused past the safe range or cut short.
    for (const n of [0, 1, 0x8000_0001, 2 ** 32 + 0x8000_0001, 0x8000_0000 * 2 ** 32 / 2 ** 11 + 0xffff_ffff]) {
      assert.equal(readU64be(concatBytes(new Uint8Array([9]), u64be(n), new Uint8Array([7])), 1), n)
    }
    assert.throws(() => readU64be(new Uint8Array(8).fill(0xff)), /safe integer range/)
    assert.throws(() => readU64be(new Uint8Array(9), 2), /need 8 bytes/)
    // Little-endian (the packed batch form, the commit log), at an offset, top bits set.
    const le = new Uint8Array(13)
    assert.equal(writeU32le(le, 1, 0x8123_4567), 5)
    writeU64le(le, 5, Number.MAX_SAFE_INTEGER)
    assert.equal(hex(le), '0067452381ffffffffffff1f00')
    assert.equal(readU32le(le, 1), 0x8123_4567)
    assert.equal(readU64le(le, 5), Number.MAX_SAFE_INTEGER)
    assert.throws(() => u16be(65536), VvmError)
    assert.throws(() => u64be(-1), VvmError)
    assert.throws(() => u64be(1.5), VvmError)
    assert.throws(() => u64be(2 ** 53), VvmError)
  })
  it('u64be order equals numeric order', () => {
    const next = rng(1)
    const values = Array.from({ length: 500 }, () => Math.floor(next() * Number.MAX_SAFE_INTEGER))
    const byBytes = [...values].sort((x, y) => compareBytes(u64be(x), u64be(y)))
    assert.deepEqual(byBytes, [...values].sort((x, y) => x - y))
  })
  it('concatBytes and compareBytes', () => {
    assert.equal(hex(concatBytes(new Uint8Array([1]), new Uint8Array(0), new Uint8Array([2, 3]))), '010203')
    assert.ok(compareBytes(new Uint8Array([1]), new Uint8Array([1, 0])) < 0)
    assert.ok(compareBytes(new Uint8Array([0x80]), new Uint8Array([0x7f, 0xff])) > 0)
    assert.equal(compareBytes(new Uint8Array([5, 6]), new Uint8Array([5, 6])), 0)
  })
  it('prefixEnd bounds exactly the strings with the prefix', () => {
    assert.equal(hex(prefixEnd(new Uint8Array([1, 2]))!), '0103')
    assert.equal(hex(prefixEnd(new Uint8Array([1, 0xff, 0xff]))!), '02')
    assert.equal(prefixEnd(new Uint8Array([0xff, 0xff])), undefined)
    assert.equal(prefixEnd(new Uint8Array(0)), undefined)
    const prefix = new Uint8Array([7, 0xff])
    const end = prefixEnd(prefix)!
    assert.ok(compareBytes(concatBytes(prefix, new Uint8Array([0xff, 0xff, 0xff])), end) < 0)
    assert.ok(compareBytes(new Uint8Array([8]), end) >= 0)
  })
})

describe('storage keys: tuple encoding', () => {
  it('round-trips every type, including edge values', () => {
    const tuple: KeyPart[] = [
      { type: 'int', value: Number.MIN_SAFE_INTEGER },
      { type: 'int', value: -(2n ** 63n) },
      { type: 'int', value: 2n ** 63n - 1n },
      { type: 'float', value: -0 },
      { type: 'float', value: Number.NaN },
      { type: 'float', value: -Infinity },
      { type: 'bool', value: true },
      { type: 'string', value: 'a\u0000b\u{1f600}' },
      { type: 'string', value: '' },
      { type: 'bytes', value: new Uint8Array([0, 0xff, 0, 1]) },
    ]
    const decoded = decodeKeyTuple(encodeKeyTuple(tuple), tuple.map((p) => p.type))
    assert.equal(decoded[0]!.value, Number.MIN_SAFE_INTEGER)
    assert.equal(decoded[1]!.value, -(2n ** 63n))
    assert.equal(decoded[2]!.value, 2n ** 63n - 1n)
    assert.ok(Object.is(decoded[3]!.value, -0))
    assert.ok(Number.isNaN(decoded[4]!.value))
    assert.equal(decoded[5]!.value, -Infinity)
    assert.equal(decoded[6]!.value, true)
    assert.equal(decoded[7]!.value, 'a\u0000b\u{1f600}')
    assert.equal(decoded[8]!.value, '')
    assert.equal(hex(decoded[9]!.value as Uint8Array), '00ff0001')
  })
  it('ints decode to the number or bigint they were, around every word and safe-integer boundary', () => {
    const edges = [0n, 1n, -1n, 2n ** 31n, -(2n ** 31n), 2n ** 32n - 1n, 2n ** 32n, -(2n ** 32n), 2n ** 53n - 1n, -(2n ** 53n - 1n), 2n ** 53n, -(2n ** 53n), 2n ** 62n, -(2n ** 63n), 2n ** 63n - 1n]
    for (const e of edges) {
      for (const v of [e - 1n, e, e + 1n]) {
        if (v < -(2n ** 63n) || v > 2n ** 63n - 1n) continue
        const [part] = decodeKeyTuple(encodeKeyTuple([{ type: 'int', value: v }]), ['int'])
        const safe = v >= -(2n ** 53n - 1n) && v <= 2n ** 53n - 1n
        assert.equal(part!.value, safe ? Number(v) : v, `${v}`)
      }
    }
  })

  it('ints encode the same from number and bigint; strings escape 0x00 and end with 0x00 0x01', () => {
    assert.equal(hex(encodeKeyTuple([{ type: 'int', value: -1 }])), hex(encodeKeyTuple([{ type: 'int', value: -1n }])))
    assert.equal(hex(encodeKeyTuple([{ type: 'int', value: 0 }])), '8000000000000000')
    assert.equal(hex(encodeKeyTuple([{ type: 'string', value: 'a\u0000' }])), '6100ff0001')
  })
  it('byte order equals value order on random tuples', () => {
    const next = rng(42)
    const tuples = Array.from({ length: 2000 }, () => randomTuple(next))
    const encoded = tuples.map(encodeKeyTuple)
    for (let i = 0; i < 4000; i++) {
      const x = Math.floor(next() * tuples.length)
      const y = Math.floor(next() * tuples.length)
      assert.equal(sign(compareBytes(encoded[x]!, encoded[y]!)), compareTuples(tuples[x]!, tuples[y]!), `tuples ${x} and ${y}`)
    }
    for (let i = 0; i < tuples.length; i++) {
      const decoded = decodeKeyTuple(encoded[i]!, TUPLE_TYPES)
      assert.equal(compareTuples(decoded as KeyPart[], tuples[i]!), 0, `round trip ${i}`)
    }
  })
  it('a shorter string sorts before a longer one it prefixes, whatever follows', () => {
    const short = encodeKeyTuple([{ type: 'string', value: 'ab' }, { type: 'int', value: Number.MAX_SAFE_INTEGER }])
    const long = encodeKeyTuple([{ type: 'string', value: 'ab\u0000' }, { type: 'int', value: Number.MIN_SAFE_INTEGER }])
    assert.ok(compareBytes(short, long) < 0)
  })
  it('rejects bad input and corrupt bytes with coded errors', () => {
    assert.throws(() => encodeKeyTuple([{ type: 'int', value: 1.5 }]), VvmError)
    assert.throws(() => encodeKeyTuple([{ type: 'int', value: 2n ** 63n }]), VvmError)
    assert.throws(() => encodeKeyTuple([{ type: 'string', value: 'x\ud800' }]), VvmError)
    assert.throws(() => decodeKeyTuple(new Uint8Array([0x61]), ['string']), VvmError)
    assert.throws(() => decodeKeyTuple(new Uint8Array([0x61, 0, 7]), ['string']), VvmError)
    assert.throws(() => decodeKeyTuple(new Uint8Array([2]), ['bool']), VvmError)
    assert.throws(() => decodeKeyTuple(new Uint8Array([1, 0]), ['bool']), VvmError)
    assert.throws(() => decodeKeyTuple(new Uint8Array(7), ['int']), VvmError)
  })
})

describe('storage keys: the layout bytes (stored data depends on them)', () => {
  // Written out byte by byte, independently of KeyWriter: a data directory written by an
  // older build must be read by this one.
  it('every key space has its documented bytes', () => {
    assert.equal(hex(partitionHeadKey(3).pk), '010003')
    assert.equal(hex(plogKey(1, 4096 * 2 + 5).pk), '020001' + '0000000000000002')
    assert.equal(hex(plogKey(1, 4096 * 2 + 5).cc), '0000000000002005')
    assert.equal(hex(wsHeadKey(2 ** 40 + 1).pk), '03' + '0000010000000001')
    assert.equal(hex(wlogKey(7, 4095).pk), '04' + '0000000000000007' + '0000000000000000')
    assert.equal(hex(wlogKey(7, 4095).cc), '0000000000000fff')
    assert.equal(hex(recordsPk(9)), '05' + '0000000000000009')
    assert.equal(hex(recordCc(65536)), '0000000000010000')
    assert.equal(hex(collectionPk(9, 'bank.Account')), '06' + '0000000000000009' + Buffer.from('bank.Account').toString('hex'))
    assert.equal(hex(viewPk(9, 'bank.Ö', new Uint8Array([0xaa, 0x00]))), '07' + '0000000000000009' + Buffer.from('bank.Ö').toString('hex') + '00' + 'aa00')
    assert.equal(hex(idempotencyKey(9, 'k').pk), '08' + '0000000000000009')
    assert.equal(hex(actualizerOffsetKey(1, 'bank.P').pk), '090001')
    assert.equal(hex(grantsKey(9, 'alice').pk), '0b' + '0000000000000009')
    assert.equal(hex(loginKey('alice').pk), '0c' + Buffer.from('alice').toString('hex'))
  })

  it('KeyWriter: each key is its own copy, the scratch buffer grows, bad numbers are refused', () => {
    const w = new KeyWriter()
    const a = w.begin().u8(1).u16(2).end()
    const long = 'x'.repeat(1000)
    const b = w.begin().utf8String(long).u64(2 ** 53 - 1).end()
    assert.equal(hex(a), '010002')
    assert.equal(b.length, 1008)
    assert.equal(Buffer.from(b.subarray(0, 1000)).toString(), long)
    assert.equal(hex(b.subarray(1000)), hex(u64be(2 ** 53 - 1)))
    assert.throws(() => w.begin().u16(0x10000), VvmError)
    assert.throws(() => w.begin().u64(-1), VvmError)
    assert.throws(() => w.begin().u64(2 ** 53), VvmError)
  })

  it('KeyWriter.utf8String: the UTF-8 bytes of ASCII, mixed and astral strings', () => {
    const w = new KeyWriter()
    for (const text of ['', 'bank.Movements', 'a.Ö', 'Öa.b', 'x😀y', 'ascii then é and 中文 then ascii', '\u007f\u0080']) {
      assert.equal(hex(w.begin().u8(7).utf8String(text).u8(0).end()), '07' + Buffer.from(text, 'utf8').toString('hex') + '00', JSON.stringify(text))
    }
  })

  it('viewRowKeys writes the same bytes as viewPk of the pk tuple and the cc tuple', () => {
    const app = defineApp('test/keys', {
      packages: [definePackage('k', {
        views: {
          Mixed: {
            key: { pk: ['n', 's'], cc: ['d', 'name', 'on', 'x'] },
            fields: { n: 'int64', s: 'varchar', d: 'int32', name: 'varchar', on: 'bool', x: 'float64', v: 'int64' },
          },
        },
      })],
    })
    const view = app.views.get('k.Mixed')!
    const next = rng(42)
    for (let i = 0; i < 200; i++) {
      const key = {
        n: Math.floor((next() - 0.5) * 2 ** 53), s: ['', 'a', 'é\u0000z', 'x'.repeat(Math.floor(next() * 40))][i % 4]!,
        d: Math.floor((next() - 0.5) * 2 ** 31), name: String(next()), on: next() < 0.5, x: (next() - 0.5) * 1e6,
      }
      const wsid = 1 + Math.floor(next() * 2 ** 40)
      const { pk, cc } = viewRowKeys(view, wsid, key)
      assert.equal(hex(pk), hex(viewPk(wsid, 'k.Mixed', encodePkTuple(view, key))))
      assert.equal(hex(cc), hex(encodeCcTuple(view, key)))
    }
    assert.throws(() => viewRowKeys(view, 1, { n: 1, d: 1, name: 'a', on: true, x: 1 }), /key field 's' is required/)
    assert.throws(() => viewRowKeys(view, 1, { n: 1.5, s: 'a', d: 1, name: 'a', on: true, x: 1 }), VvmError)
  })

  it('viewRowKey: one key per (pk, cc), whatever the bytes and wherever pk ends', () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i)
    assert.equal(latin1Of(all.subarray(250, 256)), String.fromCharCode(250, 251, 252, 253, 254, 255))
    const keys = new Set<string>()
    const bytes = [0x00, 0x2f, 0x61, 0xff]
    // Every split of every byte string up to 4 bytes long into (pk, cc): all distinct.
    let count = 0
    const strings: number[][] = [[]]
    for (let n = 1; n <= 4; n++) for (const s of strings.filter((x) => x.length === n - 1)) for (const b of bytes) strings.push([...s, b])
    for (const s of strings) {
      for (let split = 0; split <= s.length; split++) {
        keys.add(viewRowKey(Uint8Array.from(s.slice(0, split)), Uint8Array.from(s.slice(split))))
        count++
      }
    }
    assert.equal(keys.size, count)
    const big = new Uint8Array(300).fill(7)
    assert.notEqual(viewRowKey(big.subarray(0, 256), big.subarray(256)), viewRowKey(big.subarray(0, 0), big), 'a pk of 256 bytes is not an empty one')
  })

  it('RowKeyMemo: the same keys for the same row asked again, fresh keys for any other', () => {
    const app = defineApp('test/memo', {
      packages: [definePackage('m', {
        views: {
          Totals: { key: { pk: ['account'], cc: ['day'] }, fields: { account: 'ref', day: 'int32', total: 'int64' } },
          Names: { key: { pk: ['name'], cc: [] }, fields: { name: 'varchar', n: 'int64' } },
        },
      })],
    })
    const totals = app.views.get('m.Totals')!
    const memo = new RowKeyMemo()
    const expect = (wsid: number, key: Record<string, unknown>) => {
      const { pk, cc } = viewRowKeys(totals, wsid, key)
      return { pk: hex(pk), cc: hex(cc), mapKey: viewRowKey(pk, cc) }
    }
    const shown = (k: { pk: Uint8Array; cc: Uint8Array; mapKey: string }) => ({ pk: hex(k.pk), cc: hex(k.cc), mapKey: k.mapKey })
    const first = memo.of(totals, 5, { account: 70_000, day: 3 })
    assert.deepEqual(shown(first), expect(5, { account: 70_000, day: 3 }))
    assert.equal(memo.of(totals, 5, { account: 70_000, day: 3 }), first, 'a new key object with the same values: the kept keys')
    for (const [wsid, key] of [[6, { account: 70_000, day: 3 }], [5, { account: 70_001, day: 3 }], [5, { account: 70_000, day: 4 }]] as const) {
      const k = memo.of(totals, wsid, key)
      assert.notEqual(k, first)
      assert.deepEqual(shown(k), expect(wsid, key))
    }
    assert.throws(() => memo.of(totals, 5, { account: 70_000, day: 2 ** 40 }), VvmError, 'a new key is validated')
    // Key parts are validated plain values; a refused ask leaves the kept keys as they were.
    const names = app.views.get('m.Names')!
    const a1 = memo.of(names, 5, { name: 'ann' })
    assert.equal(memo.of(names, 5, { name: 'ann' }), a1)
    assert.throws(() => memo.of(names, 5, { name: { toString: () => 'ann' } }), VvmError)
    assert.equal(memo.of(names, 5, { name: 'ann' }), a1)
    assert.notEqual(memo.of(names, 5, { name: 'bob' }), a1)
  })

  it('hexOf: the hex of exactly the viewed bytes (a view into a larger buffer, empty)', () => {
    const whole = new Uint8Array([0xaa, 0x00, 0x01, 0xff, 0x10, 0xbb])
    assert.equal(hexOf(whole.subarray(1, 5)), '0001ff10')
    assert.equal(hexOf(whole.subarray(3, 3)), '')
    assert.equal(hexOf(whole), 'aa0001ff10bb')
  })
})
