// The storage TCK: the contract of `IAppStorage`, as node:test cases every backend runs.
// Backend-neutral by design: it opens only two app storages (Cassandra creates a keyspace per
// app, which is slow), isolates tests by unique pks with a per-run prefix (so reruns against a
// persistent database do not collide), and uses TTLs of 2 s checked after 3 s, because
// Cassandra's TTL has whole-second granularity and may expire up to a second early.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { compareBytes, concatBytes, u64be } from './keys.js'
import type { IAppStorage, IStorageProvider, ReadRange, StorageRow } from './types.js'

const TTL_SECONDS = 2
/** Cassandra may expire up to 1 s early (whole seconds) and we allow 1 s of slack after. */
const TTL_WAIT_MS = TTL_SECONDS * 1000 + 1000
const EXPIRY_TOLERANCE_MS = 1500
const MANY_ROWS_COUNT = 10_000
/** Small batches keep under Cassandra's batch size limit (50 KiB by default). */
const MANY_ROWS_BATCH_ITEMS = 1000

const b = (text: string): Uint8Array => new TextEncoder().encode(text)
const hex = (bytes: Uint8Array | undefined): string | undefined => (bytes === undefined ? undefined : Buffer.from(bytes).toString('hex'))
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function collect<T>(rows: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const row of rows) out.push(row)
  return out
}

async function readHex(s: IAppStorage, pk: Uint8Array, range?: ReadRange): Promise<string[]> {
  return (await collect(s.read(pk, range))).map((row: StorageRow) => `${hex(row.cc)}=${hex(row.value)}`)
}

export function runStorageTck(name: string, makeProvider: () => Promise<IStorageProvider>): void {
  describe(`storage TCK: ${name}`, () => {
    let provider: IStorageProvider
    let s: IAppStorage
    let other: IAppStorage
    const runId = randomBytes(6).toString('hex')
    let pkCount = 0
    const newPk = (label: string): Uint8Array => b(`tck/${runId}/${label}/${pkCount++}`)

    before(async () => {
      provider = await makeProvider()
      s = await provider.appStorage('tck/app-a')
      other = await provider.appStorage('tck/app-b')
    })
    after(async () => {
      await provider.close()
    })

    describe('put, get, getBatch, putBatch', () => {
      it('get returns what put wrote; put overwrites', async () => {
        const pk = newPk('put')
        await s.put(pk, b('c'), b('v1'))
        assert.equal(hex(await s.get(pk, b('c'))), hex(b('v1')))
        await s.put(pk, b('c'), b('v2'))
        assert.equal(hex(await s.get(pk, b('c'))), hex(b('v2')))
        assert.equal((await collect(s.read(pk))).length, 1)
      })

      it('get of a missing pk or cc is undefined; empty values and empty cc are stored', async () => {
        const pk = newPk('missing')
        assert.equal(await s.get(pk, b('c')), undefined)
        await s.put(pk, b('c'), new Uint8Array(0))
        assert.equal(hex(await s.get(pk, b('c'))), '')
        assert.equal(await s.get(pk, b('d')), undefined)
        await s.put(pk, new Uint8Array(0), b('first'))
        assert.equal(hex(await s.get(pk, new Uint8Array(0))), hex(b('first')))
      })

      it('getBatch answers in the order asked, undefined where missing', async () => {
        const pk = newPk('getBatch')
        await s.putBatch([{ pk, cc: b('1'), value: b('one') }, { pk, cc: b('3'), value: b('three') }])
        const got = await s.getBatch(pk, [b('3'), b('2'), b('1'), b('3')])
        assert.deepEqual(got.map(hex), [hex(b('three')), undefined, hex(b('one')), hex(b('three'))])
        assert.deepEqual(await s.getBatch(pk, []), [])
        assert.deepEqual(await s.getBatch(newPk('getBatch-empty'), [b('1')]), [undefined])
      })

      it('putBatch: every item, across pks, is visible once it resolves', async () => {
        const pk1 = newPk('batch1')
        const pk2 = newPk('batch2')
        await s.putBatch([
          { pk: pk1, cc: b('a'), value: b('1a') },
          { pk: pk2, cc: b('a'), value: b('2a') },
          { pk: pk1, cc: b('b'), value: b('1b') },
        ])
        assert.deepEqual((await s.getBatch(pk1, [b('a'), b('b')])).map(hex), [hex(b('1a')), hex(b('1b'))])
        assert.equal(hex(await s.get(pk2, b('a'))), hex(b('2a')))
        await s.putBatch([])
      })

      it('putBatch with durable: false: the same atomic write, visible once it resolves', async () => {
        const pk = newPk('nosync')
        await s.putBatch([{ pk, cc: b('a'), value: b('x') }, { pk, cc: b('b'), value: b('y') }], { durable: false })
        assert.deepEqual((await s.getBatch(pk, [b('a'), b('b')])).map(hex), [hex(b('x')), hex(b('y'))])
        await assert.rejects(s.putBatch([{ pk, cc: b('c'), value: b('z') }, { pk: new Uint8Array(0), cc: b('c'), value: b('v') }], { durable: false }))
        assert.equal(await s.get(pk, b('c')), undefined)
      })

      it('rejects an empty pk and a bad ttlSeconds', async () => {
        await assert.rejects(s.put(new Uint8Array(0), b('c'), b('v')))
        await assert.rejects(s.insertIfNotExists(newPk('bad'), b('c'), b('v'), -1))
        await assert.rejects(s.putBatch([{ pk: newPk('bad'), cc: b('c'), value: b('v'), ttlSeconds: 1.5 }]))
      })
    })

    describe('read', () => {
      // Byte order with the edge bytes 0x00 and 0xff, including prefixes of each other.
      const ccs = ['', '00', '0000', '00ff', '01', '7f', '80', 'ff', 'ff00', 'ffff'].map((h) => Buffer.from(h, 'hex'))
      const all = ccs.map((cc, i) => `${hex(cc)}=${hex(b(`v${i}`))}`)
      let pk: Uint8Array

      before(async () => {
        pk = newPk('read')
        // Written out of order, to prove the backend sorts.
        const items = ccs.map((cc, i) => ({ pk, cc, value: b(`v${i}`) })).reverse()
        await s.putBatch(items)
      })

      it('whole partition in unsigned byte order of cc', async () => {
        assert.deepEqual(await readHex(s, pk), all)
        assert.deepEqual(await readHex(s, pk, {}), all)
      })
      it('ccFrom is inclusive, ccTo exclusive', async () => {
        assert.deepEqual(await readHex(s, pk, { ccFrom: Buffer.from('00ff', 'hex'), ccTo: Buffer.from('ff', 'hex') }), all.slice(3, 7))
      })
      it('only ccFrom, only ccTo', async () => {
        assert.deepEqual(await readHex(s, pk, { ccFrom: Buffer.from('80', 'hex') }), all.slice(6))
        assert.deepEqual(await readHex(s, pk, { ccTo: Buffer.from('0000', 'hex') }), all.slice(0, 2))
        assert.deepEqual(await readHex(s, pk, { ccFrom: Buffer.from('fe', 'hex') }), all.slice(7))
      })
      it('bounds that are not stored keys', async () => {
        assert.deepEqual(await readHex(s, pk, { ccFrom: Buffer.from('0001', 'hex'), ccTo: Buffer.from('7e', 'hex') }), all.slice(3, 5))
      })
      it('empty and inverted ranges', async () => {
        assert.deepEqual(await readHex(s, pk, { ccFrom: b('x'), ccTo: b('x') }), [])
        assert.deepEqual(await readHex(s, pk, { ccFrom: Buffer.from('ff', 'hex'), ccTo: Buffer.from('01', 'hex') }), [])
        assert.deepEqual(await readHex(s, pk, { ccTo: new Uint8Array(0) }), [])
        assert.deepEqual(await readHex(s, newPk('read-none')), [])
      })
      it('limit, including 0', async () => {
        assert.deepEqual(await readHex(s, pk, { limit: 3 }), all.slice(0, 3))
        assert.deepEqual(await readHex(s, pk, { limit: 0 }), [])
        assert.deepEqual(await readHex(s, pk, { limit: 100 }), all)
      })
      it('reverse, with range and limit', async () => {
        assert.deepEqual(await readHex(s, pk, { reverse: true }), [...all].reverse())
        assert.deepEqual(await readHex(s, pk, { reverse: true, limit: 2 }), [all[9], all[8]])
        assert.deepEqual(
          await readHex(s, pk, { reverse: true, ccFrom: Buffer.from('00', 'hex'), ccTo: Buffer.from('80', 'hex'), limit: 3 }),
          [all[5], all[4], all[3]],
        )
      })
      it('a consumer may stop early', async () => {
        let seen = 0
        for await (const row of s.read(pk)) {
          assert.ok(row.cc instanceof Uint8Array)
          if (++seen === 2) break
        }
        assert.equal(seen, 2)
      })
    })

    describe('isolation', () => {
      it('pks that are prefixes of each other do not mix', async () => {
        const base = newPk('prefix')
        const longer = concatBytes(base, b('x'))
        const withZero = concatBytes(base, new Uint8Array([0]))
        await s.put(base, b('xc'), b('base'))
        await s.put(longer, b('c'), b('longer'))
        await s.put(withZero, new Uint8Array(0), b('zero'))
        assert.deepEqual(await readHex(s, base), [`${hex(b('xc'))}=${hex(b('base'))}`])
        assert.deepEqual(await readHex(s, longer), [`${hex(b('c'))}=${hex(b('longer'))}`])
        assert.deepEqual(await readHex(s, withZero), [`=${hex(b('zero'))}`])
        assert.equal(await s.get(longer, b('xc')), undefined)
        assert.equal(await s.get(base, b('c')), undefined)
      })
      it('two apps do not see each other', async () => {
        const pk = newPk('apps')
        await s.put(pk, b('c'), b('a'))
        assert.equal(await other.get(pk, b('c')), undefined)
        await other.put(pk, b('c'), b('b'))
        assert.equal(hex(await s.get(pk, b('c'))), hex(b('a')))
        assert.equal(hex(await other.get(pk, b('c'))), hex(b('b')))
        assert.deepEqual(await readHex(other, pk), [`${hex(b('c'))}=${hex(b('b'))}`])
      })
      it('appStorage of the same qname sees the same data', async () => {
        const pk = newPk('same-app')
        await s.put(pk, b('c'), b('v'))
        const again = await provider.appStorage('tck/app-a')
        assert.equal(hex(await again.get(pk, b('c'))), hex(b('v')))
      })
    })

    describe('values are copies', () => {
      it('mutating what was passed to a write does not change storage', async () => {
        const pk = newPk('copy-in')
        const cc = b('c')
        const value = b('orig')
        await s.put(pk, cc, value)
        value.fill(0x21)
        cc.fill(0x21)
        const batchValue = b('batch')
        await s.putBatch([{ pk, cc: b('d'), value: batchValue }])
        batchValue.fill(0x21)
        const insertValue = b('insert')
        await s.insertIfNotExists(pk, b('e'), insertValue, 0)
        insertValue.fill(0x21)
        const swapValue = b('swapped')
        assert.equal(await s.compareAndSwap(pk, b('e'), b('insert'), swapValue, 0), true)
        swapValue.fill(0x21)
        assert.deepEqual((await s.getBatch(pk, [b('c'), b('d'), b('e')])).map(hex), [b('orig'), b('batch'), b('swapped')].map(hex))
      })
      it('the same holds for Node Buffers, whose slice() is a view, not a copy', async () => {
        const pk = Buffer.from(newPk('copy-buffer'))
        const value = Buffer.from('orig')
        await s.put(pk, Buffer.from('c'), value)
        value.fill(0x21)
        const batchValue = Buffer.from('batch')
        await s.putBatch([{ pk, cc: Buffer.from('d'), value: batchValue }])
        batchValue.fill(0x21)
        const got = (await s.getBatch(pk, [b('c'), b('c'), b('d')]))
        got[0]!.fill(0x21) // a duplicate key's answer is its own copy too
        assert.deepEqual(got.slice(1).map(hex), [b('orig'), b('batch')].map(hex))
        assert.equal(hex(await s.get(pk, b('c'))), hex(b('orig')))
      })
      it('mutating what a read returned does not change storage', async () => {
        const pk = newPk('copy-out')
        await s.put(pk, b('c'), b('orig'))
        ;(await s.get(pk, b('c')))!.fill(0x21)
        ;(await s.getBatch(pk, [b('c')]))[0]!.fill(0x21)
        ;(await s.ttlGet(pk, b('c')))!.value.fill(0x21)
        for await (const row of s.read(pk)) { row.value.fill(0x21); row.cc.fill(0x21) }
        for await (const row of s.ttlRead(pk)) { row.value.fill(0x21); row.cc.fill(0x21) }
        assert.deepEqual(await readHex(s, pk), [`${hex(b('c'))}=${hex(b('orig'))}`])
      })
    })

    describe('compare and set', () => {
      it('insertIfNotExists writes once', async () => {
        const pk = newPk('insert')
        assert.equal(await s.insertIfNotExists(pk, b('c'), b('first'), 0), true)
        assert.equal(await s.insertIfNotExists(pk, b('c'), b('second'), 0), false)
        assert.equal(hex(await s.get(pk, b('c'))), hex(b('first')))
        await s.put(pk, b('d'), b('put'))
        assert.equal(await s.insertIfNotExists(pk, b('d'), b('x'), 0), false)
      })
      it('compareAndSwap replaces only a matching value', async () => {
        const pk = newPk('cas')
        assert.equal(await s.compareAndSwap(pk, b('c'), b('old'), b('new'), 0), false)
        assert.equal(await s.get(pk, b('c')), undefined)
        await s.put(pk, b('c'), b('old'))
        assert.equal(await s.compareAndSwap(pk, b('c'), b('other'), b('new'), 0), false)
        assert.equal(await s.compareAndSwap(pk, b('c'), b('ol'), b('new'), 0), false)
        assert.equal(hex(await s.get(pk, b('c'))), hex(b('old')))
        assert.equal(await s.compareAndSwap(pk, b('c'), b('old'), b('new'), 0), true)
        assert.equal(hex(await s.get(pk, b('c'))), hex(b('new')))
        assert.equal(await s.compareAndSwap(pk, b('c'), b('old'), b('newer'), 0), false)
      })
      it('compareAndDelete deletes only a matching value', async () => {
        const pk = newPk('cad')
        assert.equal(await s.compareAndDelete(pk, b('c'), b('v')), false)
        await s.put(pk, b('c'), b('v'))
        assert.equal(await s.compareAndDelete(pk, b('c'), b('w')), false)
        assert.equal(hex(await s.get(pk, b('c'))), hex(b('v')))
        assert.equal(await s.compareAndDelete(pk, b('c'), b('v')), true)
        assert.equal(await s.get(pk, b('c')), undefined)
        assert.deepEqual(await readHex(s, pk), [])
        assert.equal(await s.insertIfNotExists(pk, b('c'), b('again'), 0), true)
      })
    })

    describe('ttlGet and ttlRead', () => {
      it('report 0 for values without expiry and ≈ now + ttl otherwise', async () => {
        const pk = newPk('ttl-report')
        const nowMs = Date.now()
        await s.put(pk, b('a'), b('forever'))
        await s.insertIfNotExists(pk, b('b'), b('ttl'), 60)
        await s.putBatch([{ pk, cc: b('c'), value: b('batch-ttl'), ttlSeconds: 60 }, { pk, cc: b('d'), value: b('batch'), ttlSeconds: 0 }])
        await s.put(pk, b('e'), b('x'))
        await s.compareAndSwap(pk, b('e'), b('x'), b('swapped-ttl'), 60)
        assert.equal((await s.ttlGet(pk, b('a')))?.expiresAtMs, 0)
        assert.equal(await s.ttlGet(pk, b('missing')), undefined)
        const ttl = await s.ttlGet(pk, b('b'))
        assert.equal(hex(ttl?.value), hex(b('ttl')))
        assert.ok(Math.abs(ttl!.expiresAtMs - (nowMs + 60_000)) <= EXPIRY_TOLERANCE_MS, `expiresAtMs ${ttl!.expiresAtMs} vs now ${nowMs}`)
        const rows = await collect(s.ttlRead(pk))
        assert.deepEqual(rows.map((r) => hex(r.cc)), ['a', 'b', 'c', 'd', 'e'].map((c) => hex(b(c))))
        assert.deepEqual(rows.map((r) => hex(r.value)), ['forever', 'ttl', 'batch-ttl', 'batch', 'swapped-ttl'].map((v) => hex(b(v))))
        const expiries = rows.map((r) => r.expiresAtMs)
        assert.equal(expiries[0], 0)
        assert.equal(expiries[3], 0)
        for (const i of [1, 2, 4]) assert.ok(Math.abs(expiries[i]! - (nowMs + 60_000)) <= EXPIRY_TOLERANCE_MS, `row ${i}: ${expiries[i]}`)
        const limited = await collect(s.ttlRead(pk, { ccFrom: b('b'), reverse: true, limit: 2 }))
        assert.deepEqual(limited.map((r) => hex(r.cc)), [hex(b('e')), hex(b('d'))])
      })
    })

    describe('expiry', () => {
      const pk = b(`tck/expiry/${randomBytes(6).toString('hex')}`)
      let expiredAfterMs = 0
      const untilExpired = async (): Promise<void> => sleep(Math.max(0, expiredAfterMs - Date.now()))

      it(`values written with a ${TTL_SECONDS} s TTL are visible before it passes`, async () => {
        expiredAfterMs = Date.now() + TTL_WAIT_MS
        assert.equal(await s.insertIfNotExists(pk, b('1-insert'), b('i'), TTL_SECONDS), true)
        await s.putBatch([
          { pk, cc: b('2-batch'), value: b('b'), ttlSeconds: TTL_SECONDS },
          { pk, cc: b('3-keep'), value: b('k') },
        ])
        await s.put(pk, b('4-cas'), b('old'))
        assert.equal(await s.compareAndSwap(pk, b('4-cas'), b('old'), b('new'), TTL_SECONDS), true)
        assert.equal(await s.insertIfNotExists(pk, b('5-cad'), b('d'), TTL_SECONDS), true)
        await s.put(pk, b('6-keep'), b('k'))
        assert.equal((await collect(s.read(pk))).length, 6)
        assert.equal(hex(await s.get(pk, b('2-batch'))), hex(b('b')))
        assert.equal(await s.insertIfNotExists(pk, b('1-insert'), b('again'), TTL_SECONDS), false)
      })
      it('after expiry: get, getBatch and ttlGet see nothing', async () => {
        await untilExpired()
        for (const cc of ['1-insert', '2-batch', '4-cas', '5-cad']) {
          assert.equal(await s.get(pk, b(cc)), undefined, cc)
          assert.equal(await s.ttlGet(pk, b(cc)), undefined, cc)
        }
        assert.deepEqual((await s.getBatch(pk, [b('1-insert'), b('3-keep'), b('4-cas')])).map(hex), [undefined, hex(b('k')), undefined])
      })
      it('after expiry: read and ttlRead skip expired rows, and limit counts live rows only', async () => {
        await untilExpired()
        const live = [`${hex(b('3-keep'))}=${hex(b('k'))}`, `${hex(b('6-keep'))}=${hex(b('k'))}`]
        assert.deepEqual(await readHex(s, pk), live)
        assert.deepEqual(await readHex(s, pk, { limit: 1 }), live.slice(0, 1))
        assert.deepEqual(await readHex(s, pk, { reverse: true, limit: 2 }), [...live].reverse())
        assert.deepEqual((await collect(s.ttlRead(pk))).map((r) => hex(r.cc)), [hex(b('3-keep')), hex(b('6-keep'))])
      })
      it('after expiry: compareAndSwap and compareAndDelete do not match', async () => {
        await untilExpired()
        assert.equal(await s.compareAndSwap(pk, b('4-cas'), b('new'), b('newer'), 0), false)
        assert.equal(await s.compareAndDelete(pk, b('5-cad'), b('d')), false)
        assert.equal(await s.get(pk, b('4-cas')), undefined)
      })
      it('after expiry: insertIfNotExists writes again', async () => {
        await untilExpired()
        assert.equal(await s.insertIfNotExists(pk, b('1-insert'), b('again'), 0), true)
        assert.equal(hex(await s.get(pk, b('1-insert'))), hex(b('again')))
        assert.equal((await s.ttlGet(pk, b('1-insert')))?.expiresAtMs, 0)
      })
    })

    describe('volume', () => {
      it('a 1 MiB value round-trips', async () => {
        const pk = newPk('large')
        const value = randomBytes(1024 * 1024)
        await s.put(pk, b('big'), value)
        const got = await s.get(pk, b('big'))
        assert.equal(got?.length, value.length)
        assert.equal(compareBytes(got!, value), 0)
        const rows = await collect(s.read(pk))
        assert.equal(compareBytes(rows[0]!.value, value), 0)
      })
      it(`${MANY_ROWS_COUNT} rows read back in order`, async () => {
        const pk = newPk('many')
        // Written in a shuffled order of batches, read back sorted.
        const order = Array.from({ length: MANY_ROWS_COUNT / MANY_ROWS_BATCH_ITEMS }, (_, i) => i).reverse()
        for (const chunk of order) {
          const items = []
          for (let i = chunk * MANY_ROWS_BATCH_ITEMS; i < (chunk + 1) * MANY_ROWS_BATCH_ITEMS; i++) items.push({ pk, cc: u64be(i), value: u64be(i * 7) })
          await s.putBatch(items)
        }
        let expected = 0
        for await (const row of s.read(pk)) {
          assert.equal(compareBytes(row.cc, u64be(expected)), 0)
          assert.equal(compareBytes(row.value, u64be(expected * 7)), 0)
          expected++
        }
        assert.equal(expected, MANY_ROWS_COUNT)
        const tail = await collect(s.read(pk, { reverse: true, limit: 3 }))
        assert.deepEqual(tail.map((r) => hex(r.cc)), [9999, 9998, 9997].map((n) => hex(u64be(n))))
        const middle = await collect(s.read(pk, { ccFrom: u64be(4000), ccTo: u64be(6000) }))
        assert.equal(middle.length, 2000)
        assert.equal(hex(middle[0]!.cc), hex(u64be(4000)))
        assert.equal(hex(middle[1999]!.cc), hex(u64be(5999)))
      })
    })
  })
}
