// A WASM query (test/fixtures/apps/assembly/wasm_ext.ts: noteText, lastOffsets) run by the
// query processors: in the piscina query workers over a shared storage (level), and inside the
// partition worker that owns the workspace over the per-thread `mem` storage.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { join } from 'node:path'
import { REPO_ROOT, http, startTestServer, type TestServer } from './helpers/server.js'

const WASM_APP = join(REPO_ROOT, 'dist/test/fixtures/apps/wasm-ext.js')
const APP = 'test/wasm'
const q = (v: unknown): string => encodeURIComponent(JSON.stringify(v))

for (const storage of ['level', 'mem']) {
  describe(`WASM queries on ${storage} (${storage === 'level' ? 'query worker pool' : 'partition worker'})`, () => {
    let t: TestServer
    let base: string
    before(async () => {
      t = await startTestServer(['--app', WASM_APP, '--storage', storage, '--query-threads', '2'])
      base = t.ws(11, APP)
    })
    after(() => t.close())

    it('reads a record and the principal, returns rows', async () => {
      const added = await http('POST', `${base}/commands/wx.AddNote`, { args: { text: 'queried' } })
      assert.equal(added.status, 200, JSON.stringify(added.body))
      const completed = t.server.queries?.stats.completed ?? 0
      const r = await http('GET', `${base}/queries/wx.NoteText?args=${q({ note: added.body.result.id })}`)
      assert.equal(r.status, 200, JSON.stringify(r.body))
      assert.equal(r.body.results.length, 2)
      assert.deepEqual({ ...r.body.results[0], login: undefined }, { text: 'queried', n: 2, login: undefined })
      assert.equal(typeof r.body.results[0].login, 'string')
      if (storage === 'level') assert.equal(t.server.queries!.stats.completed, completed + 1, 'the query ran in the pool')
      // The query processor's constraints apply to WASM rows as to builtin ones.
      const filtered = await http('GET', `${base}/queries/wx.NoteText?args=${q({ note: added.body.result.id })}&where=${q({ n: 0 })}`)
      assert.deepEqual(filtered.body.results.map((x: { text: string }) => x.text), ['second'])
    })

    it('a guest error from a query keeps its status', async () => {
      const r = await http('GET', `${base}/queries/wx.NoteText?args=${q({ note: 99_999_999 })}`)
      assert.equal(r.status, 404)
      assert.equal(r.body.message, 'no such note')
    })

    it('reads a view range in reverse with a limit', async () => {
      const offsets: number[] = []
      for (let i = 0; i < 4; i++) offsets.push((await http('POST', `${base}/commands/wx.AddNote`, { args: { text: 'ranged' } })).body.currentWLogOffset)
      const r = await http('GET', `${base}/queries/wx.LastOffsets?args=${q({ text: 'ranged', limit: 3 })}`)
      assert.equal(r.status, 200, JSON.stringify(r.body))
      assert.deepEqual(r.body.results.map((x: { offset: number }) => x.offset), offsets.slice(1).reverse())
    })
  })
}
