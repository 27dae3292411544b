// Engine pools and the runner's start-up checks, against the real addon on this thread:
// no free instance is 503 (BUSY), a trapped instance is replaced, and a binding to a missing
// module or export refuses to start.

import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { pathToFileURL } from 'node:url'
import { describe, it } from 'node:test'
import { defineApp, definePackage, wasm } from '../src/shared/appdef/define.js'
import { VvmError } from '../src/shared/errors.js'
import { WasmEngines } from '../src/workers/wasm/engine-pool.js'
import { WasmRunner } from '../src/workers/wasm/wasm-runner.js'
import { abiCodec } from '../src/workers/wasm/host-api.js'
import { join } from 'node:path'
import { REPO_ROOT, tempDir } from './helpers/server.js'

const WASM_APP = join(REPO_ROOT, 'dist/test/fixtures/apps/wasm-ext.js')
const GUEST = new URL('fixtures/apps/wasm_ext.wasm', import.meta.url)

async function options(poolSize: number) {
  const dir = await tempDir()
  return { opts: { deadlineMs: 50, memoryBytesMax: 1 << 20, poolSize, cacheDir: dir.path }, remove: dir.remove }
}

describe('WASM engine pools', () => {
  it('borrow → invoke → give back; none free is BUSY (503); a trapped instance is replaced', async () => {
    const { opts, remove } = await options(2)
    const engines = await WasmEngines.open(opts, 2)
    try {
      const { pool, module } = await engines.pool(await readFile(GUEST), 'command', 'test')
      assert.ok(module.entryPoints.includes('spin'))
      const a = pool.borrow()
      const b = pool.borrow()
      assert.throws(() => pool.borrow(), (e: unknown) => e instanceof VvmError && e.code === 'BUSY' && e.status === 503 && /all 2 are in use/.test(e.message))
      pool.giveBack(b)
      // A trap poisons the instance; giving it back disposes it and makes a new one.
      const input = abiCodec.pack({ qname: 'x', wsid: 1, args: {} })
      assert.throws(() => a.invoke('spin', input, () => null), { code: 'WASM_DEADLINE' })
      assert.equal(a.poisoned, true)
      pool.giveBack(a)
      assert.equal(pool.replacedCount, 1)
      const c = pool.borrow()
      const d = pool.borrow()
      assert.equal(c.poisoned || d.poisoned, false)
      assert.notEqual(c, a)
      assert.notEqual(d, a)
      pool.giveBack(c)
      pool.giveBack(d)
      assert.equal(pool.borrowsCount, 4)
      // Pools are per module and processor kind; the module is compiled once.
      const again = await engines.pool(await readFile(GUEST), 'command', 'test')
      assert.equal(again.pool, pool)
      assert.notEqual((await engines.pool(await readFile(GUEST), 'projector', 'test')).pool, pool)
      assert.equal(engines.poolsCount, 2)
    } finally {
      engines.close()
      await remove()
    }
  })

  it('a function bound to a missing export or file refuses to start', async () => {
    const { opts, remove } = await options(1)
    try {
      const url = pathToFileURL(WASM_APP).href
      const bad = (ref: ReturnType<typeof wasm>) => defineApp('test/bad', { packages: [definePackage('b', { commands: { X: { exec: ref } } })] })
      await assert.rejects(WasmRunner.start([{ app: bad(wasm('wasm_ext.wasm', 'nope')), url }], ['command'], opts), /b\.X: wasm_ext\.wasm has no entry point 'nope' \(entry points: .*addNote/)
      await assert.rejects(WasmRunner.start([{ app: bad(wasm('missing.wasm', 'x')), url }], ['command'], opts), /b\.X: cannot read .*missing\.wasm/)
      // A worker that does not run the function's kind makes no engine for it.
      const runner = await WasmRunner.start([{ app: bad(wasm('missing.wasm', 'x')), url }], ['query'], opts)
      await runner.close()
    } finally {
      await remove()
    }
  })
})
