// 10,000 requests in flight on one connection, replies matched by id; and the binary protocol
// gives the same results as the HTTP API for the same commands and queries.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { FrameType, WireOp, encodeRequest, type WireRequest } from '../src/shared/protocol/index.js'
import { connect } from '../src/client/index.js'
import { http, startTestServer, type TestServer } from './helpers/server.js'
import { RawWs } from './helpers/ws-raw.js'

const IN_FLIGHT = 10_000
/** Workspaces spread over the 4 partitions so that replies come back out of order. */
const WORKSPACES = 16

describe('binary protocol: 10,000 requests in flight on one connection', () => {
  let t: TestServer
  before(async () => { t = await startTestServer(['--partitions', '4', '--query-queue-max', '20000']) })
  after(() => t.close())

  it('answers every request once, matched by its id, in any order', async () => {
    const { raw } = await RawWs.hello(t.server.port)
    const wsidOf = (i: number): number => 7000 + (i % WORKSPACES)
    const req = (reqId: number, r: Omit<WireRequest, 'reqId' | 'app' | 'docId' | 'body' | 'params' | 'idempotencyKey'> & Partial<WireRequest>): Uint8Array =>
      encodeRequest({ app: 'demo/bank', docId: 0, body: null, params: null, idempotencyKey: null, reqId, ...r })
    // Random distinct ids: the server must not assume they grow.
    const ids = new Set<number>()
    while (ids.size < 2 * IN_FLIGHT) ids.add(1 + Math.floor(Math.random() * 0xfffffffe))
    const idList = [...ids]

    // Phase 1: 10,000 creates in flight; account i gets name a<i> and balance i.
    let t0 = performance.now()
    const createIds = idList.slice(0, IN_FLIGHT)
    createIds.forEach((reqId, i) => raw.send(req(reqId, { op: WireOp.DOC_CREATE, wsid: wsidOf(i), qname: 'bank.Account', body: { name: `a${i}`, balance: i } })))
    const created = await raw.replies(IN_FLIGHT, 120_000)
    const createMs = performance.now() - t0
    const byId = new Map(created.map((r) => [r.reqId, r]))
    assert.equal(byId.size, IN_FLIGHT, 'a request was answered twice or an id was invented')
    const accountOf = createIds.map((reqId) => {
      const r = byId.get(reqId)
      assert.ok(r !== undefined, `no reply for ${reqId}`)
      assert.equal(r.status, 201, JSON.stringify(r.body))
      return (r.body as { newIDs: Record<string, number> }).newIDs['1']!
    })

    // Phase 2: 10,000 mixed requests in flight: doc gets (reads, query pool) and deposits (writes,
    // partitions). Each reply must be the one for its request: the right name, the right balance.
    t0 = performance.now()
    const mixedIds = idList.slice(IN_FLIGHT)
    mixedIds.forEach((reqId, i) => {
      if (i % 2 === 0) raw.send(req(reqId, { op: WireOp.DOC_GET, wsid: wsidOf(i), qname: 'bank.Account', docId: accountOf[i]! }))
      else raw.send(req(reqId, { op: WireOp.COMMAND, wsid: wsidOf(i), qname: 'bank.Deposit', body: { args: { account: accountOf[i]!, amount: i } } }))
    })
    const mixed = await raw.replies(IN_FLIGHT, 120_000)
    const mixedMs = performance.now() - t0
    const position = new Map(mixedIds.map((id, i) => [id, i]))
    let outOfOrder = 0
    let last = -1
    const seen = new Set<number>()
    for (const r of mixed) {
      const i = position.get(r.reqId)
      assert.ok(i !== undefined, `reply for unknown id ${r.reqId}`)
      assert.ok(!seen.has(r.reqId), `second reply for ${r.reqId}`)
      seen.add(r.reqId)
      if (i < last) outOfOrder++
      last = i
      assert.equal(r.status, 200, JSON.stringify(r.body))
      if (i % 2 === 0) {
        const rec = r.body as { name: string; balance: number; 'sys.ID': number }
        assert.equal(rec['sys.ID'], accountOf[i])
        assert.equal(rec.name, `a${i}`)
        assert.equal(rec.balance, i)
      } else {
        assert.deepEqual((r.body as { result: unknown }).result, { balance: 2 * i })
      }
    }
    assert.equal(raw.frames.filter((f) => f.type === FrameType.REPLY).length, 0, 'more replies than requests')
    const perS = (ms: number): number => Math.round(IN_FLIGHT / (ms / 1000))
    console.log(`# 10k in flight: creates ${createMs.toFixed(0)} ms (${perS(createMs)}/s), gets+deposits ${mixedMs.toFixed(0)} ms (${perS(mixedMs)}/s), ${outOfOrder} replies out of order`)
    await raw.close()
  })

  it('the SDK keeps 10,000 calls in flight on one connection', async () => {
    const client = await connect(`ws://127.0.0.1:${t.server.port}/api/ws`, { app: 'demo/bank', wsid: 7100 })
    const { newIDs } = await client.docs.create('bank.Account', { name: 'sdk', balance: 0 })
    const account = newIDs['1']!
    const t0 = performance.now()
    const results = await Promise.all(Array.from({ length: IN_FLIGHT }, (_, i) =>
      i % 2 === 0 ? client.command<{ balance: number }>('bank.Deposit', { account, amount: 1 }) : client.query<{ balance: number }>('bank.Balance', { account })))
    const ms = performance.now() - t0
    const balances = results.filter((_, i) => i % 2 === 0).map((r) => (r as { result: { balance: number } }).result.balance)
    // Deposits to one workspace run in order: balances 1..5000, each once.
    assert.deepEqual([...balances].sort((a, b) => a - b), Array.from({ length: IN_FLIGHT / 2 }, (_, i) => i + 1))
    console.log(`# SDK 10k in flight (5k deposits + 5k queries): ${ms.toFixed(0)} ms, ${Math.round(IN_FLIGHT / (ms / 1000))} calls/s`)
    await client.close()
  })
})

describe('binary protocol gives the same results as the HTTP API', () => {
  let t: TestServer
  before(async () => { t = await startTestServer(['--partitions', '2']) })
  after(() => t.close())

  it('for the same sequence of commands, document operations and reads', async () => {
    // Two fresh workspaces of the same partition: ids and WLog offsets start alike in both.
    const WS_HTTP = 9002
    const WS_BIN = 9004
    const client = await connect(`ws://127.0.0.1:${t.server.port}/api/ws`, { app: 'demo/bank', wsid: WS_BIN })
    const base = t.ws(WS_HTTP)
    type Step = { http: [string, string, unknown?]; bin: () => Promise<unknown> }
    const settle = async (p: Promise<unknown>): Promise<{ status: number; body: unknown }> => {
      try {
        const body = await p
        return { status: 0, body }
      } catch (err) {
        const e = err as { status: number; code: string; message: string; qname?: string; data?: unknown }
        const body: Record<string, unknown> = { status: e.status, message: e.message, code: e.code }
        if (e.qname !== undefined) body.qname = e.qname
        if (e.data !== undefined) body.data = e.data
        return { status: e.status, body }
      }
    }
    const a1 = 65536
    const a2 = 65537
    const steps: Step[] = [
      { http: ['POST', '/docs/bank.Account', { name: 'alice', balance: 100 }], bin: () => client.docs.create('bank.Account', { name: 'alice', balance: 100 }) },
      { http: ['POST', '/docs/bank.Account', { name: 'bob', balance: 5 }], bin: () => client.docs.create('bank.Account', { name: 'bob', balance: 5 }) },
      { http: ['POST', '/commands/bank.Deposit', { args: { account: a1, amount: 7 } }], bin: () => client.command('bank.Deposit', { account: a1, amount: 7 }) },
      { http: ['POST', '/commands/bank.Transfer', { args: { from: a1, to: a2, amount: 30 } }], bin: () => client.command('bank.Transfer', { from: a1, to: a2, amount: 30 }) },
      { http: ['POST', '/commands/bank.Transfer', { args: { from: a2, to: a1, amount: 1000 } }], bin: () => client.command('bank.Transfer', { from: a2, to: a1, amount: 1000 }) },
      { http: ['POST', '/commands/bank.Deposit', { args: { account: a1, amount: -1 } }], bin: () => client.command('bank.Deposit', { account: a1, amount: -1 }) },
      { http: ['POST', '/commands/bank.Deposit', { args: { account: 12345, amount: 1 } }], bin: () => client.command('bank.Deposit', { account: 12345, amount: 1 }) },
      { http: ['POST', '/commands/bank.Missing', { args: {} }], bin: () => client.command('bank.Missing', {}) },
      { http: ['PATCH', `/docs/bank.Account/${a2}`, { name: 'robert' }], bin: () => client.docs.update('bank.Account', a2, { name: 'robert' }) },
      { http: ['GET', `/docs/bank.Account/${a2}`], bin: () => client.docs.get('bank.Account', a2) },
      { http: ['GET', `/docs/bank.Account/999999`], bin: () => client.docs.get('bank.Account', 999999) },
      { http: ['GET', `/queries/bank.Balance?args=${encodeURIComponent(JSON.stringify({ account: a1 }))}`], bin: () => client.query('bank.Balance', { account: a1 }) },
      { http: ['GET', `/cdocs/bank.Account?order=-name&keys=name,balance`], bin: () => client.docs.list('bank.Account', { order: '-name', keys: 'name,balance' }) },
      { http: ['GET', `/cdocs/bank.Account?where=${encodeURIComponent(JSON.stringify({ balance: { $gt: 50 } }))}`], bin: () => client.docs.list('bank.Account', { where: { balance: { $gt: 50 } } }) },
      { http: ['GET', `/cdocs/bank.Account?limit=1&skip=1`], bin: () => client.docs.list('bank.Account', { limit: 1, skip: 1 }) },
      { http: ['GET', `/views/bank.Movements?where=${encodeURIComponent(JSON.stringify({ account: a1 }))}&order=-offset`], bin: () => client.view('bank.Movements', { where: { account: a1 }, order: '-offset' }) },
      { http: ['GET', `/views/bank.Movements`], bin: () => client.view('bank.Movements') },
      { http: ['DELETE', `/docs/bank.Account/${a2}`], bin: () => client.docs.deactivate('bank.Account', a2) },
      { http: ['POST', '/commands/bank.Deposit', { args: { account: a2, amount: 1 } }], bin: () => client.command('bank.Deposit', { account: a2, amount: 1 }) },
      { http: ['GET', `/cdocs/bank.Account`], bin: () => client.docs.list('bank.Account') },
    ]
    for (const s of steps) {
      const h = await http(s.http[0], base + s.http[1], s.http[2])
      const b = await settle(s.bin())
      const label = `${s.http[0]} ${s.http[1]}`
      if (h.status >= 400) assert.equal(b.status, h.status, label)
      // Messages name the workspace; everything else is the same byte for byte.
      assert.deepEqual(JSON.parse(JSON.stringify(b.body).replaceAll(`workspace ${WS_BIN}`, `workspace ${WS_HTTP}`)), h.body, label)
    }
    await client.close()
  })
})
