// The intent commit (non-atomic storages): a commit interrupted after its intent is completed by
// recover(), and one interrupted before its intent leaves nothing. The interruption is injected
// by wrapping a real storage (a crash between two writes cannot be caused otherwise here).

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { committerFor } from '../src/workers/command/commit.js'
import { commitIntentKey, decodeStored, encodeStored, partitionHeadKey } from '../src/shared/layout.js'
import { MemStorageProvider } from '../src/shared/storage/mem.js'
import { u64be } from '../src/shared/storage/keys.js'
import type { BatchItem, IAppStorage } from '../src/shared/storage/types.js'

function items(n: number, po: number): BatchItem[] {
  const out: BatchItem[] = Array.from({ length: n }, (_, i) => ({ pk: new Uint8Array([0x42, i % 7]), cc: u64be(i), value: encodeStored({ i, po }) }))
  const h = partitionHeadKey(0)
  out.push({ pk: h.pk, cc: h.cc, value: encodeStored({ po }) })
  return out
}

/** Fails every write after the first `writesOk` (put or putBatch). */
function failingAfter(s: IAppStorage, writesOk: number): IAppStorage {
  let writes = 0
  const guard = (): void => { if (++writes > writesOk) throw new Error('injected crash') }
  return new Proxy(s, {
    get(target, prop, recv) {
      const v = Reflect.get(target, prop, recv)
      if (prop === 'put' || prop === 'putBatch') return (...a: unknown[]) => { guard(); return (v as (...x: unknown[]) => unknown).apply(target, a) }
      return typeof v === 'function' ? v.bind(target) : v
    },
  })
}

async function head(s: IAppStorage): Promise<number> {
  const h = partitionHeadKey(0)
  const b = await s.get(h.pk, h.cc)
  return b === undefined ? 0 : decodeStored<{ po: number }>(b).po
}

describe('intent commit', () => {
  it('a commit cut after its intent is completed by recover()', async () => {
    const provider = await MemStorageProvider.open()
    const s = await provider.appStorage('t/a')
    const batch = items(1000, 7)
    // intent + 2 of 5 chunks, then the "crash"
    await assert.rejects(committerFor(failingAfter(s, 3), 0, false).commit(batch, 7), /injected crash/)
    assert.equal(await head(s), 0, 'not applied yet')
    await committerFor(s, 0, false).recover()
    assert.equal(await head(s), 7)
    // Storage returns plain Uint8Arrays; encodeStored gives Node Buffers: compare the bytes.
    for (const it of batch) assert.deepEqual(await s.get(it.pk, it.cc), new Uint8Array(it.value))
    // recover() again is a no-op; a later commit supersedes the intent.
    await committerFor(s, 0, false).recover()
    await committerFor(s, 0, false).commit(items(3, 8), 8)
    assert.equal(await head(s), 8)
    await provider.close()
  })

  it('a commit cut before its intent leaves nothing to recover', async () => {
    const provider = await MemStorageProvider.open()
    const s = await provider.appStorage('t/a')
    await assert.rejects(committerFor(failingAfter(s, 0), 0, false).commit(items(10, 1), 1), /injected crash/)
    await committerFor(s, 0, false).recover()
    assert.equal(await head(s), 0)
    const k = commitIntentKey(0)
    assert.equal(await s.get(k.pk, k.cc), undefined)
    for (const it of items(10, 1).slice(0, -1)) assert.equal(await s.get(it.pk, it.cc), undefined)
    await provider.close()
  })
})
