// Every error status of the HTTP API, each checked to change nothing: partition PLog offsets,
// balances and the account collection are compared before and after.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { join } from 'node:path'
import { REPO_ROOT, balanceOf, createAccount, http, startTestServer, type TestServer } from './helpers/server.js'

const LIMITS_APP = join(REPO_ROOT, 'dist/test/fixtures/apps/limits.js')

describe('HTTP API errors change nothing', () => {
  let t: TestServer
  let base: string
  let acc: number
  let acc2: number
  let counter: number

  before(async () => {
    t = await startTestServer(['--app', 'demo/bank', '--app', LIMITS_APP, '--body-bytes-max', '2048'])
    base = t.ws(1001)
    acc = await createAccount(base, 'alice', 0)
    acc2 = await createAccount(base, 'bob', 0)
    assert.equal((await http('POST', `${base}/commands/bank.Deposit`, { args: { account: acc, amount: 50 } })).status, 200)
    const c = await http('POST', `${t.ws(7, 'test/limits')}/docs/lim.Counter`, { n: 0 })
    assert.equal(c.status, 201)
    counter = c.body.newIDs['1']
  })
  after(() => t.close())

  async function snapshot(): Promise<string> {
    const offsets = t.server.partitions.stats().map((s) => `${s.app}/${s.partition}:${s.plogOffset}`)
    const cdocs = await http('GET', `${base}/cdocs/bank.Account`)
    const ctr = await http('GET', `${t.ws(7, 'test/limits')}/docs/lim.Counter/${counter}`)
    return JSON.stringify({ offsets, b1: await balanceOf(base, acc), b2: await balanceOf(base, acc2), cdocs: cdocs.body, ctr: ctr.body })
  }

  async function expectError(status: number, method: string, url: string, body?: unknown, headers?: Record<string, string>, code?: string) {
    const before = await snapshot()
    const r = await http(method, url, body, headers)
    assert.equal(r.status, status, `${method} ${url} → ${r.status} ${JSON.stringify(r.body)}`)
    if (url.includes('/api/v2/') || !url.includes('/api/')) {
      assert.equal(r.body.status, status)
      assert.equal(typeof r.body.message, 'string')
      if (code !== undefined) assert.equal(r.body.code, code)
    }
    assert.equal(await snapshot(), before, 'an error changed data')
    return r
  }

  it('400 for malformed JSON, wrong types, unknown and missing fields, bad ids and constraints', async () => {
    await expectError(400, 'POST', `${base}/commands/bank.Deposit`, '{"args":', undefined, 'BAD_JSON')
    await expectError(400, 'POST', `${base}/commands/bank.Deposit`, { args: { account: acc, amount: 'ten' } }, undefined, 'VALIDATION')
    await expectError(400, 'POST', `${base}/commands/bank.Deposit`, { args: { account: acc, amount: 1.5 } })
    await expectError(400, 'POST', `${base}/commands/bank.Deposit`, { args: { account: acc, amount: 0 } })
    await expectError(400, 'POST', `${base}/commands/bank.Deposit`, { args: { account: acc, amount: 1, extra: 1 } })
    await expectError(400, 'POST', `${base}/commands/bank.Deposit`, { args: { account: acc } })
    await expectError(400, 'POST', `${base}/commands/bank.Deposit`, [1, 2])
    await expectError(400, 'POST', `${base}/commands/bank.Deposit`, { args: { account: acc, amount: 2 ** 53 } })
    await expectError(400, 'POST', `${t.url}/api/v2/apps/demo/bank/workspaces/abc/commands/bank.Deposit`, { args: {} })
    await expectError(400, 'POST', `${t.url}/api/v2/apps/demo/bank/workspaces/0/commands/bank.Deposit`, { args: {} })
    await expectError(400, 'POST', `${base}/docs/bank.Account`, { name: 5, balance: 0 })
    await expectError(400, 'POST', `${base}/docs/bank.Account`, { name: 'x' })
    await expectError(400, 'PATCH', `${base}/docs/bank.Account/${acc}`, { balance: 'lots' })
    await expectError(400, 'GET', `${base}/docs/bank.Account/notanumber`)
    await expectError(400, 'GET', `${base}/cdocs/bank.Account?where={bad`)
    await expectError(400, 'GET', `${base}/cdocs/bank.Account?where=${encodeURIComponent('{"balance":{"$regex":"x"}}')}`)
    await expectError(400, 'GET', `${base}/cdocs/bank.Account?limit=-1`)
    await expectError(400, 'GET', `${base}/views/bank.Movements`)
    await expectError(400, 'GET', `${base}/queries/bank.Balance?args=${encodeURIComponent('{"account":"x"}')}`)
    await expectError(400, 'POST', `${base}/commands/bank.Deposit`, { args: { account: acc, amount: 1 } }, { 'Idempotency-Key': 'x'.repeat(200) })
    await expectError(400, 'POST', `${base}/commands/bank.Transfer`, { args: { from: acc, to: acc, amount: 1 } })
  })

  it('404 for unknown app, function, table, view, id and route', async () => {
    await expectError(404, 'POST', `${t.url}/api/v2/apps/no/app/workspaces/1/commands/bank.Deposit`, { args: {} })
    await expectError(404, 'POST', `${base}/commands/bank.Nope`, { args: {} })
    await expectError(404, 'POST', `${base}/docs/bank.Nope`, { name: 'x' })
    await expectError(404, 'GET', `${base}/docs/bank.Account/99999999`)
    await expectError(404, 'GET', `${base}/views/bank.Nope?where={}`)
    await expectError(404, 'GET', `${base}/queries/bank.Nope`)
    await expectError(404, 'GET', `${t.url}/nowhere`)
    // An unknown account inside the extension: its own 404.
    await expectError(404, 'POST', `${base}/commands/bank.Deposit`, { args: { account: 99999999, amount: 1 } })
    // An id that exists in another workspace only.
    await expectError(404, 'GET', `${t.ws(8, 'test/limits')}/docs/lim.Counter/${counter}`)
  })

  it('405 for a wrong method, with Allow', async () => {
    const r = await expectError(405, 'GET', `${base}/commands/bank.Deposit`)
    assert.equal(r.headers.get('allow'), 'POST')
    await expectError(405, 'PUT', `${base}/docs/bank.Account/${acc}`, { balance: 1 })
    await expectError(405, 'POST', `${base}/cdocs/bank.Account`, {})
  })

  it('409 from an extension: insufficient funds, nothing moves', async () => {
    const r = await expectError(409, 'POST', `${base}/commands/bank.Transfer`, { args: { from: acc2, to: acc, amount: 1 } })
    assert.match(r.body.message, /insufficient funds/)
  })

  it('a failed command that staged an update writes nothing', async () => {
    await expectError(409, 'POST', `${t.ws(7, 'test/limits')}/commands/lim.Bump`, { args: { counter, fail: true } })
    assert.equal((await http('POST', `${t.ws(7, 'test/limits')}/commands/lim.Bump`, { args: { counter } })).status, 200)
    assert.equal((await http('GET', `${t.ws(7, 'test/limits')}/docs/lim.Counter/${counter}`)).body.n, 1)
  })

  it('an extension error keeps the status it chose', async () => {
    const r = await expectError(418, 'POST', `${t.ws(7, 'test/limits')}/commands/lim.Teapot`, {})
    assert.deepEqual(r.body.data, { why: 'test' })
  })

  it('410 for updating a deactivated document', async () => {
    const id = await createAccount(base, 'closing', 0)
    assert.equal((await http('DELETE', `${base}/docs/bank.Account/${id}`)).status, 200)
    assert.equal((await http('GET', `${base}/docs/bank.Account/${id}`)).body['sys.IsActive'], false)
    await expectError(410, 'PATCH', `${base}/docs/bank.Account/${id}`, { balance: 5 })
    await expectError(410, 'DELETE', `${base}/docs/bank.Account/${id}`)
    await expectError(410, 'POST', `${base}/commands/bank.Deposit`, { args: { account: id, amount: 5 } })
  })

  it('413 for a body over the limit, declared or streamed', async () => {
    await expectError(413, 'POST', `${base}/commands/bank.Deposit`, JSON.stringify({ args: { account: acc, amount: 1 }, pad: 'x'.repeat(4000) }))
    await expectError(413, 'POST', `${base}/docs/bank.Account`, { name: 'y'.repeat(3000), balance: 0 })
  })

  it('429 at the declared rate, with Retry-After', async () => {
    const url = `${t.ws(7, 'test/limits')}/commands/lim.Limited`
    for (let i = 0; i < 3; i++) assert.equal((await http('POST', url, { args: { n: i } })).status, 200)
    const r = await expectError(429, 'POST', url, { args: { n: 4 } }, undefined, 'RATE_LIMITED')
    const retry = Number(r.headers.get('retry-after'))
    // 3 per minute: the next token comes in at most 20 s.
    assert.ok(retry >= 1 && retry <= 20, `Retry-After ${retry}`)
    // The bucket is per workspace: another workspace is not limited.
    assert.equal((await http('POST', `${t.ws(8, 'test/limits')}/commands/lim.Limited`, { args: { n: 1 } })).status, 200)
  })

  it('v1 errors have the v1 shape', async () => {
    const r = await http('POST', `${t.url}/api/demo/bank/1001/c.bank.Deposit`, { args: { account: acc, amount: -5 } })
    assert.equal(r.status, 400)
    assert.equal(r.body['sys.Error'].HTTPStatus, 400)
    assert.equal(r.body['sys.Error'].QName, 'bank.Deposit')
    const nf = await http('POST', `${t.url}/api/demo/bank/1001/c.bank.Nope`, { args: {} })
    assert.equal(nf.status, 404)
    assert.equal(nf.body['sys.Error'].HTTPStatus, 404)
  })
})

describe('503 when a partition is full', () => {
  it('answers 503 with Retry-After at once and changes nothing', async () => {
    const t = await startTestServer(['--app', LIMITS_APP, '--inflight-per-partition-max', '1'])
    try {
      const base = t.ws(1, 'test/limits')
      let slowDone = false
      const slow = http('POST', `${base}/commands/lim.Slow`, { args: { ms: 1500 } }).finally(() => { slowDone = true })
      await new Promise((r) => setTimeout(r, 100))
      const offsets = JSON.stringify(t.server.partitions.stats().map((s) => s.plogOffset))
      const busy = await http('POST', `${base}/commands/lim.Slow`, { args: { ms: 1 } })
      assert.equal(busy.status, 503)
      assert.equal(busy.body.code, 'BUSY')
      assert.ok(Number(busy.headers.get('retry-after')) >= 1)
      assert.equal(slowDone, false, 'the 503 must come at once, not after the slow command')
      assert.equal(JSON.stringify(t.server.partitions.stats().map((s) => s.plogOffset)), offsets)
      assert.equal((await slow).status, 200)
    } finally {
      await t.close()
    }
  })
})
