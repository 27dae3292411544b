// The query pool sends queries to its threads in batches: every query is answered once with its
// own result, the queue bound answers 503 BUSY past --query-queue-max, and the metrics count
// queries (not batches).

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Op, ReplyFormat, decodeQueryOutcomes, decodeRequests, encodeQueryOutcomes, encodeRequests, type EngineRequest } from '../src/shared/engine-messages.js'
import { WireOp } from '../src/shared/protocol/index.js'
import { createAccount, scrape, startTestServer, type TestServer } from './helpers/server.js'
import { RawWs } from './helpers/ws-raw.js'

const WSID = 5150
const ACCOUNTS = 20

describe('query pool batches', () => {
  let t: TestServer
  let accounts: number[]
  let metricsUrl: string
  before(async () => {
    t = await startTestServer(['--query-threads', '1', '--query-queue-max', '8'])
    metricsUrl = `http://127.0.0.1:${t.server.metricsPort}/metrics`
    accounts = []
    for (let i = 0; i < ACCOUNTS; i++) accounts.push(await createAccount(t.ws(WSID), `q${i}`, 1000 + i))
  })
  after(() => t.close())

  it('answers a burst past the queue bound: each query its own result or 503 BUSY, nothing twice', async () => {
    const completedBefore = await scrape(metricsUrl, 'vvm_query_completed_total')
    const tasksBefore = await scrape(metricsUrl, 'vvm_query_tasks_total')
    const { raw } = await RawWs.hello(t.server.port)
    const BURST = 600
    for (let i = 0; i < BURST; i++) {
      raw.request({ reqId: i + 1, op: WireOp.QUERY, wsid: WSID, qname: 'bank.Balance', body: { account: accounts[i % ACCOUNTS]! } })
    }
    const replies = await raw.replies(BURST, 60_000)
    const seen = new Set<number>()
    let ok = 0
    let busy = 0
    for (const r of replies) {
      assert.ok(!seen.has(r.reqId), `request ${r.reqId} answered twice`)
      seen.add(r.reqId)
      if (r.status === 200) {
        const i = (r.reqId - 1) % ACCOUNTS
        assert.deepEqual(r.body, { results: [{ balance: 1000 + i }] }, `request ${r.reqId}: another query's result`)
        ok++
      } else {
        assert.equal(r.status, 503, JSON.stringify(r.body))
        assert.equal((r.body as { code: string }).code, 'BUSY')
        busy++
      }
    }
    assert.equal(seen.size, BURST)
    assert.ok(busy > 0, 'a burst of 600 queries to a queue of 8 was never refused')
    assert.ok(ok >= 8, `only ${ok} queries served`)
    assert.equal(await scrape(metricsUrl, 'vvm_query_queue_size'), 0)
    assert.equal(await scrape(metricsUrl, 'vvm_query_completed_total') - completedBefore, ok, 'completed counts queries, refused ones not')
    const tasks = await scrape(metricsUrl, 'vvm_query_tasks_total') - tasksBefore
    assert.ok(tasks >= 1 && tasks < ok, `${ok} queries in ${tasks} tasks: a burst goes in batches`)

    // The pool is not wedged: queries one at a time are served after the burst.
    for (let i = 0; i < 5; i++) {
      raw.request({ reqId: 10_000 + i, op: WireOp.QUERY, wsid: WSID, qname: 'bank.Balance', body: { account: accounts[i]! } })
      assert.deepEqual((await raw.reply(10_000 + i)).body, { results: [{ balance: 1000 + i }] })
    }
    await raw.close()
  })
})

describe('query pool task messages', () => {
  it('are exact-size buffers (a message to a thread clones the whole ArrayBuffer under a view) and round-trip', () => {
    const req = (i: number): EngineRequest => ({
      reqId: i, op: Op.QUERY, format: ReplyFormat.JSON_V2, app: 'demo/bank', wsid: 7 + i, qname: 'bank.Balance', id: 0,
      idempotencyKey: null, body: { account: i }, params: null, principal: { login: 'u', roles: ['owner'] },
    })
    const batch = [req(1), req(2), req(3)]
    const bytes = encodeRequests(batch)
    encodeRequests([req(4)]) // msgpackr reuses its scratch buffer: the first result must not change
    assert.equal(bytes.byteOffset, 0)
    assert.equal(bytes.buffer.byteLength, bytes.byteLength, 'a task message must own exactly its bytes')
    assert.deepEqual(decodeRequests(bytes), batch)

    const outcomes = [
      { reqId: 0, status: 200, body: new TextEncoder().encode('{"results":[]}'), retryAfterS: 0 },
      { thrown: 'Error: boom\n    at somewhere' },
      { reqId: 0, status: 503, body: new TextEncoder().encode('{}'), retryAfterS: 1 },
    ]
    const out = encodeQueryOutcomes(outcomes)
    assert.equal(out.buffer.byteLength, out.byteLength)
    const back = decodeQueryOutcomes(out)
    assert.equal(back.length, 3)
    assert.deepEqual(back[1], { thrown: 'Error: boom\n    at somewhere' })
    assert.deepEqual([(back[0] as { status: number }).status, (back[2] as { retryAfterS: number }).retryAfterS], [200, 1])
    assert.deepEqual([...(back[0] as { body: Uint8Array }).body], [...outcomes[0]!.body!])
  })
})
