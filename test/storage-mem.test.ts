import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { VvmError } from '../src/shared/errors.js'
import { openStorageProvider } from '../src/shared/storage/index.js'
import { MemStorageProvider } from '../src/shared/storage/mem.js'
import { runStorageTck } from '../src/shared/storage/tck.js'
import type { StorageConfig } from '../src/shared/storage/types.js'

runStorageTck('mem', () => MemStorageProvider.open())

describe('storage mem: provider', () => {
  it('openStorageProvider picks the backend by kind', async () => {
    const provider = await openStorageProvider({ kind: 'mem' })
    assert.ok(provider instanceof MemStorageProvider)
    assert.equal(provider.kind, 'mem')
    assert.equal(provider.sharedAcrossThreads, false)
    await provider.close()
  })
  it('openStorageProvider rejects an unknown kind, naming it', async () => {
    await assert.rejects(openStorageProvider({ kind: 'redis' } as unknown as StorageConfig), (err: unknown) => {
      assert.ok(err instanceof VvmError)
      assert.match(err.message, /redis/)
      return true
    })
  })
  it('two providers do not share data; a closed provider refuses work', async () => {
    const p1 = await MemStorageProvider.open()
    const p2 = await MemStorageProvider.open()
    const pk = new Uint8Array([1])
    const s1 = await p1.appStorage('app')
    await s1.put(pk, new Uint8Array(0), new Uint8Array([9]))
    assert.equal(await (await p2.appStorage('app')).get(pk, new Uint8Array(0)), undefined)
    await p1.close()
    await assert.rejects(s1.get(pk, new Uint8Array(0)))
    await assert.rejects(p1.appStorage('app'))
    await p2.close()
  })
})
