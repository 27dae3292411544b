// Faulty WASM extensions (test/fixtures/apps/assembly/wasm_ext.ts, real addon, real partition
// workers): an endless loop is stopped at the deadline, a memory bomb at the memory limit, an
// out-of-bounds access, a stack overflow, host calls with bad pointers or payloads and an abort
// trap; each time the client gets a coded error, nothing is written (every faulty export first
// stages an update of a counter), and the partition serves the next commands.

import assert from 'node:assert/strict'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { REPO_ROOT, http, startTestServer, type TestServer } from './helpers/server.js'

const WASM_APP = join(REPO_ROOT, 'dist/test/fixtures/apps/wasm-ext.js')
const APP = 'test/wasm'
const q = (v: unknown): string => encodeURIComponent(JSON.stringify(v))

describe('faulty WASM commands write nothing and the partition keeps serving', () => {
  let t: TestServer
  let base: string
  let counter: number

  before(async () => {
    t = await startTestServer(['--app', WASM_APP])
    base = t.ws(5, APP)
    const c = await http('POST', `${base}/docs/wx.Counter`, { n: 0 })
    assert.equal(c.status, 201)
    counter = c.body.newIDs['1']
  })
  after(() => t.close())

  async function snapshot(): Promise<string> {
    const offsets = t.server.partitions.stats().map((s) => `${s.app}/${s.partition}:${s.plogOffset}`)
    const ctr = await http('GET', `${base}/docs/wx.Counter/${counter}`)
    const notes = await http('GET', `${base}/cdocs/wx.Note`)
    return JSON.stringify({ offsets, ctr: ctr.body, notes: notes.body })
  }

  async function expectFault(command: string, status: number, code: string, message: RegExp) {
    const before = await snapshot()
    const r = await http('POST', `${base}/commands/${command}`, { args: { counter } })
    assert.equal(r.status, status, `${command}: ${JSON.stringify(r.body)}`)
    assert.equal(r.body.code, code, `${command}: ${JSON.stringify(r.body)}`)
    assert.match(r.body.message, message)
    assert.equal(await snapshot(), before, `${command} wrote something`)
    // The partition serves the next command, through a fresh instance if the last one trapped.
    const next = await http('POST', `${base}/commands/wx.AddNote`, { args: { text: `after ${command}` } })
    assert.equal(next.status, 200, `after ${command}: ${JSON.stringify(next.body)}`)
    return r
  }

  it('an endless loop is stopped at the deadline (EXTENSION_TIMEOUT)', async () => {
    const t0 = performance.now()
    await expectFault('wx.Spin', 500, 'EXTENSION_TIMEOUT', /wx\.Spin: .*deadline of 50 ms/)
    assert.ok(performance.now() - t0 < 5000)
  })

  it('a memory bomb is stopped at the memory limit (EXTENSION_MEMORY)', async () => {
    await expectFault('wx.Bomb', 500, 'EXTENSION_MEMORY', /16777216 bytes/)
  })

  it('an out-of-bounds access traps (EXTENSION_TRAP)', async () => {
    await expectFault('wx.Oob', 500, 'EXTENSION_TRAP', /out of bounds memory access/)
  })

  it('a stack overflow traps (EXTENSION_TRAP)', async () => {
    await expectFault('wx.Recurse', 500, 'EXTENSION_TRAP', /call stack exhausted/)
  })

  it('host calls with pointers or lengths outside guest memory (EXTENSION_ABI)', async () => {
    await expectFault('wx.BadPointer', 500, 'EXTENSION_ABI', /outside guest memory/)
    await expectFault('wx.BadLength', 500, 'EXTENSION_ABI', /len=4294967295/)
    await expectFault('wx.BadPayload', 500, 'EXTENSION_ABI', /wx\.BadPayload/)
  })

  it('an abort traps with the guest message (EXTENSION_TRAP)', async () => {
    await expectFault('wx.Abort', 500, 'EXTENSION_TRAP', /aborted: the guest gave up at .*wasm_ext\.ts/)
  })

  it('an extension error keeps its status and data; a host refusal keeps its code', async () => {
    const r = await expectFault('wx.Teapot', 418, 'EXTENSION', /I am a teapot/)
    assert.deepEqual(r.body.data, { why: 'test' })
    await expectFault('wx.CreateUnknown', 404, 'NOT_FOUND', /table wx\.Nope is not defined/)
    const missing = await http('POST', `${base}/commands/wx.UpdateMissing`, {})
    assert.equal(missing.status, 404)
    assert.match(missing.body.message, /record 999999999 not found/)
  })

  it('a fault in the middle of a batch fails only its own command', async () => {
    const before = (await http('GET', `${base}/docs/wx.Counter/${counter}`)).body.n
    const replies = await Promise.all([
      http('POST', `${base}/commands/wx.AddNote`, { args: { text: 'batch' } }),
      http('POST', `${base}/commands/wx.Spin`, { args: { counter } }),
      http('POST', `${base}/commands/wx.Oob`, { args: { counter } }),
      http('POST', `${base}/commands/wx.AddNote`, { args: { text: 'batch' } }),
    ])
    assert.deepEqual(replies.map((r) => r.status), [200, 500, 500, 200])
    assert.equal((await http('GET', `${base}/docs/wx.Counter/${counter}`)).body.n, before)
    const size = await http('GET', `${base}/views/wx.NoteLogSize?where=${q({ text: 'batch' })}`)
    assert.deepEqual(size.body.results, [{ text: 'batch', rows: 2, sawOwn: true }])
  })

  it('creates, reads its own writes, updates; the sync projector reads its own view writes', async () => {
    const r = await http('POST', `${base}/commands/wx.AddNote`, { args: { text: 'own' } })
    assert.equal(r.status, 200, JSON.stringify(r.body))
    const { id, text, n } = r.body.result
    assert.deepEqual({ text, n }, { text: 'own', n: 2 })
    const doc = await http('GET', `${base}/docs/wx.Note/${id}`)
    assert.equal(doc.body.n, 2)
    assert.equal(doc.body.text, 'own')
    const log = await http('GET', `${base}/views/wx.NoteLog?where=${q({ text: 'own' })}`)
    assert.deepEqual(log.body.results, [{ text: 'own', offset: r.body.currentWLogOffset }])
    const size = await http('GET', `${base}/views/wx.NoteLogSize?where=${q({ text: 'own' })}`)
    assert.deepEqual(size.body.results, [{ text: 'own', rows: 1, sawOwn: true }])
  })

  it('keeps serving across redeploys (the same module bytes keep their pools)', async () => {
    for (let v = 2; v <= 5; v++) {
      await t.server.redeployApp(APP, `${pathToFileURL(WASM_APP).href}?v=${v}`)
      const r = await http('POST', `${base}/commands/wx.AddNote`, { args: { text: `v${v}` } })
      assert.equal(r.status, 200, JSON.stringify(r.body))
      assert.equal((await http('POST', `${base}/commands/wx.Oob`, { args: { counter } })).body.code, 'EXTENSION_TRAP')
    }
  })

  it('the async WASM projector reads storage (runs again) and counts every note once', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await http('POST', `${base}/commands/wx.AddNote`, { args: { text: 'counted' } })).status, 200)
    let rows: unknown[] = []
    for (let i = 0; i < 100; i++) {
      rows = (await http('GET', `${base}/views/wx.NoteCount?where=${q({ text: 'counted' })}`)).body.results
      if ((rows[0] as { count?: number } | undefined)?.count === 3) break
      await new Promise((r) => setTimeout(r, 50))
    }
    assert.deepEqual(rows, [{ text: 'counted', count: 3 }])
  })
})

describe('WASM limits from the config', () => {
  it('--wasm-deadline-ms and --wasm-memory-bytes-max reach the engines', async () => {
    const t = await startTestServer(['--app', WASM_APP, '--wasm-deadline-ms', '200', '--wasm-memory-bytes-max', String(1024 * 1024), '--storage', 'mem'])
    try {
      const base = t.ws(6, APP)
      const counter = (await http('POST', `${base}/docs/wx.Counter`, { n: 0 })).body.newIDs['1']
      const t0 = performance.now()
      const spin = await http('POST', `${base}/commands/wx.Spin`, { args: { counter } })
      assert.equal(spin.body.code, 'EXTENSION_TIMEOUT')
      assert.match(spin.body.message, /deadline of 200 ms/)
      assert.ok(performance.now() - t0 >= 200)
      const bomb = await http('POST', `${base}/commands/wx.Bomb`, { args: { counter } })
      assert.equal(bomb.body.code, 'EXTENSION_MEMORY')
      assert.match(bomb.body.message, /1048576 bytes/)
    } finally {
      await t.close()
    }
  })

  it('with no record cache every read needs storage: the call runs again and is still right', async () => {
    const t = await startTestServer(['--app', WASM_APP, '--records-cached-max', '0'])
    try {
      const base = t.ws(7, APP)
      const note = (await http('POST', `${base}/commands/wx.AddNote`, { args: { text: 'cold' } })).body.result.id
      const other = (await http('POST', `${base}/docs/wx.Counter`, { n: 0 })).body.newIDs['1']
      for (let i = 3; i <= 5; i++) {
        const r = await http('POST', `${base}/commands/wx.Bump`, { args: { note, other } })
        assert.equal(r.status, 200, JSON.stringify(r.body))
        assert.deepEqual(r.body.result, { n: i, otherFound: true })
      }
      const missing = await http('POST', `${base}/commands/wx.Bump`, { args: { note: 99_999_999, other } })
      assert.equal(missing.status, 404)
      assert.equal((await http('GET', `${base}/docs/wx.Note/${note}`)).body.n, 5)
    } finally {
      await t.close()
    }
  })
})
