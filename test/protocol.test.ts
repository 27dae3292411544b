// The binary protocol over real sockets, frame by frame (docs/protocol.md): hello and version
// negotiation, every op, typed error replies, and each limit with its documented answer.
// Every bad frame is also checked to change nothing (PLog offsets before and after).

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Packr } from 'msgpackr'
import {
  CloseCode, FrameType, WireOp, encodeHello, encodePing, encodeRequest, packValue,
} from '../src/shared/protocol/index.js'
import { createAccount, startTestServer, type TestServer } from './helpers/server.js'
import { RawWs, wsMetrics, type Reply } from './helpers/ws-raw.js'

const WSID = 4242

function plogOffsets(t: TestServer): string {
  return t.server.partitions.stats().map((s) => `${s.app}/${s.partition}:${s.plogOffset}`).join(',')
}

function errorBody(r: Reply): { status: number; message: string; code: string; qname?: string; data?: unknown } {
  const b = r.body as { status: number; message: string; code: string }
  assert.equal(typeof b, 'object')
  assert.equal(b.status, r.status)
  assert.equal(typeof b.message, 'string')
  assert.equal(typeof b.code, 'string')
  return b
}

describe('binary protocol: hello', () => {
  let t: TestServer
  before(async () => { t = await startTestServer(['--storage', 'mem', '--ws-idle-timeout-s', '1']) })
  after(() => t.close())

  it('answers HELLO with WELCOME: the highest common version and the limits', async () => {
    const raw = await RawWs.open(t.server.port)
    raw.send(encodeHello([7, 1, 3], 'some-token', { client: 'test', unknownOption: true }))
    const w = await raw.next()
    assert.equal(w.type, FrameType.WELCOME)
    if (w.type !== FrameType.WELCOME) return
    assert.equal(w.version, 1)
    assert.deepEqual(w.limits, { frameBytesMax: 1024 * 1024, inflightMax: 16384, bufferedBytesMax: 16 * 1024 * 1024, idleTimeoutS: 1, idempotencyKeyBytesMax: 128 })
    assert.deepEqual(w.options, {})
    await raw.close()
  })

  it('closes 4001 with the supported versions when there is no common version', async () => {
    const raw = await RawWs.open(t.server.port)
    raw.send(encodeHello([3, 4], null))
    const c = await raw.closed
    assert.equal(c.code, CloseCode.VERSION_UNSUPPORTED)
    assert.match(c.reason, /speaks 2, 1/)
  })

  it('closes 4000 when the first frame is not a valid HELLO', async () => {
    // The last one: trailing bytes after a long non-ASCII string, whose echo in the reason must be
    // cut on a character boundary to fit a close frame.
    const trailing = Uint8Array.from([...packValue('ü'.repeat(60)), 0x01])
    for (const first of [encodePing(1), packValue([1, 'one']), packValue([1, [1], 42]), new Uint8Array([0xc1]), packValue({ hello: 1 }), trailing]) {
      const raw = await RawWs.open(t.server.port)
      raw.send(first)
      const c = await raw.closed
      assert.equal(c.code, CloseCode.HELLO_EXPECTED, `first frame ${Buffer.from(first).toString('hex')}`)
      assert.match(c.reason, /hello expected/)
    }
  })

  it('closes 1003 on a text frame', async () => {
    const { raw } = await RawWs.hello(t.server.port)
    raw.send('hello')
    assert.equal((await raw.closed).code, CloseCode.UNSUPPORTED_DATA)
  })

  it('closes 4002 when no HELLO comes (here within the 1 s idle timeout)', async () => {
    const raw = await RawWs.open(t.server.port)
    const c = await raw.closed
    assert.equal(c.code, CloseCode.HELLO_TIMEOUT)
  })

  it('closes 4010 an idle connection, but not one with a frame in the interval', async () => {
    const { raw: idle } = await RawWs.hello(t.server.port)
    const { raw: busy } = await RawWs.hello(t.server.port)
    const started = Date.now()
    const pinger = setInterval(() => busy.send(encodePing(1)), 300)
    const c = await idle.closed
    clearInterval(pinger)
    assert.equal(c.code, CloseCode.IDLE_TIMEOUT)
    assert.ok(Date.now() - started >= 900, 'closed before the idle timeout')
    assert.equal(busy.closeInfo, undefined, 'a connection that pinged was closed')
    assert.ok(busy.frames.some((f) => f.type === FrameType.PONG))
    await busy.close()
  })
})

describe('binary protocol: operations and errors', () => {
  let t: TestServer
  let raw: RawWs
  let acc: number
  let nextId = 1
  const id = (): number => nextId++

  before(async () => {
    t = await startTestServer(['--ws-frame-bytes-max', '4096', '--ws-inflight-max', '8'])
    acc = await createAccount(t.ws(WSID), 'alice', 10)
    raw = (await RawWs.hello(t.server.port)).raw
  })
  after(async () => {
    await raw.close()
    await t.close()
  })

  async function call(r: Parameters<RawWs['request']>[0]): Promise<Reply> {
    raw.request({ wsid: WSID, ...r })
    return raw.reply(r.reqId)
  }

  it('serves every op with the v2 shapes', async () => {
    const dep = await call({ reqId: id(), op: WireOp.COMMAND, qname: 'bank.Deposit', body: { args: { account: acc, amount: 5 } }, idempotencyKey: 'k-1' })
    assert.equal(dep.status, 200)
    assert.deepEqual((dep.body as { result: unknown }).result, { balance: 15 })
    const created = await call({ reqId: id(), op: WireOp.DOC_CREATE, qname: 'bank.Account', body: { name: 'bob', balance: 1 } })
    assert.equal(created.status, 201)
    const bob = (created.body as { newIDs: Record<string, number> }).newIDs['1']!
    const upd = await call({ reqId: id(), op: WireOp.DOC_UPDATE, qname: 'bank.Account', docId: bob, body: { name: 'bobby' } })
    assert.equal(upd.status, 200)
    const got = await call({ reqId: id(), op: WireOp.DOC_GET, qname: 'bank.Account', docId: bob })
    assert.deepEqual(got.body, { 'sys.ID': bob, 'sys.QName': 'bank.Account', 'sys.IsActive': true, name: 'bobby', balance: 1 })
    const q = await call({ reqId: id(), op: WireOp.QUERY, qname: 'bank.Balance', body: { account: acc } })
    assert.deepEqual(q.body, { results: [{ balance: 15 }] })
    const cdocs = await call({ reqId: id(), op: WireOp.CDOCS, qname: 'bank.Account', params: { where: { name: 'bobby' }, keys: 'name' } })
    assert.deepEqual(cdocs.body, { results: [{ name: 'bobby' }] })
    const view = await call({ reqId: id(), op: WireOp.VIEW, qname: 'bank.Movements', params: { where: { account: acc }, order: '-offset', limit: 1 } })
    assert.equal((view.body as { results: unknown[] }).results.length, 1)
    const deact = await call({ reqId: id(), op: WireOp.DOC_DEACTIVATE, qname: 'bank.Account', docId: bob })
    assert.equal(deact.status, 200)
    const gone = await call({ reqId: id(), op: WireOp.COMMAND, qname: 'bank.Deposit', body: { args: { account: bob, amount: 1 } } })
    assert.equal(gone.status, 410)
    // The same idempotency key again: the first result, nothing applied.
    const again = await call({ reqId: id(), op: WireOp.COMMAND, qname: 'bank.Deposit', body: { args: { account: acc, amount: 5 } }, idempotencyKey: 'k-1' })
    assert.deepEqual(again.body, dep.body)
    const q2 = await call({ reqId: id(), op: WireOp.QUERY, qname: 'bank.Balance', body: { account: acc } })
    assert.deepEqual(q2.body, { results: [{ balance: 15 }] })
    raw.send(encodePing(77))
    const pong = await raw.next()
    assert.equal(pong.type, FrameType.PONG)
    if (pong.type === FrameType.PONG) {
      assert.equal(pong.pingId, 77)
      assert.ok(Math.abs(pong.serverTimeMs - Date.now()) < 5000)
    }
  })

  it('answers bad requests with typed error replies and changes nothing', async () => {
    const before = plogOffsets(t)
    const cases: [Parameters<RawWs['request']>[0], number, string, RegExp?][] = [
      [{ reqId: id(), op: WireOp.COMMAND, qname: 'bank.Deposit', body: { args: { account: acc, amount: 'ten' } } }, 400, 'VALIDATION'],
      [{ reqId: id(), op: WireOp.COMMAND, qname: 'bank.Transfer', body: { args: { from: acc, to: acc, amount: 1 } } }, 400, 'EXTENSION'],
      [{ reqId: id(), op: WireOp.COMMAND, qname: 'bank.Transfer', body: { args: { from: acc, to: 99999999, amount: 1 } } }, 404, 'EXTENSION'],
      [{ reqId: id(), op: WireOp.COMMAND, qname: 'bank.Nope', body: { args: {} } }, 404, 'NOT_FOUND', /not defined/],
      [{ reqId: id(), op: WireOp.COMMAND, app: 'no/app', qname: 'bank.Deposit', body: { args: {} } }, 404, 'NOT_FOUND', /not deployed/],
      [{ reqId: id(), op: WireOp.DOC_GET, qname: 'bank.Account', docId: 123456789 }, 404, 'NOT_FOUND'],
      [{ reqId: id(), op: WireOp.CDOCS, qname: 'bank.Account', params: { limit: 1_000_000 } }, 400, 'BAD_REQUEST', /limit/],
      [{ reqId: id(), op: WireOp.VIEW, qname: 'bank.Movements', params: {} }, 400, 'BAD_REQUEST', /partition key/],
      [{ reqId: id(), op: WireOp.COMMAND, qname: 'bank.Deposit', body: { args: { account: acc, amount: 1 } }, idempotencyKey: 'x'.repeat(129) }, 400, 'BAD_REQUEST', /idempotency key/],
    ]
    for (const [req, status, code, message] of cases) {
      const r = await call(req)
      assert.equal(r.status, status, JSON.stringify(r.body))
      const b = errorBody(r)
      assert.equal(b.code, code, JSON.stringify(b))
      if (message) assert.match(b.message, message)
    }
    const withData = await call({ reqId: id(), op: WireOp.COMMAND, qname: 'bank.Transfer', body: { args: { from: acc, to: (await createAccount(t.ws(WSID), 'c', 0)), amount: 1000 } } })
    assert.equal(withData.status, 409)
    assert.deepEqual(errorBody(withData).data, { balance: 15 })
    const afterCreate = plogOffsets(t)
    assert.notEqual(afterCreate, before) // the account created above
    // Frame-level errors: wrong element types, unknown op, reserved op, undecodable, duplicate id.
    const packr = new Packr({ useRecords: false })
    const frameCases: [Uint8Array, number, RegExp][] = [
      [packr.pack([3, 900, 99, 'demo/bank', WSID, 'bank.Deposit']), 900, /unknown op 99/],
      [packr.pack([3, 901, 21, 'demo/bank', WSID, 'bank.Account']), 901, /needs element 6/],
      [packr.pack([3, 902, 1, 'demo/bank', 'ws', 'bank.Deposit']), 902, /wsid/],
      [packr.pack([3, 903, 1, 'demo/bank', WSID, 'Deposit']), 903, /qualified name/],
      [packr.pack([3, 904, 1, 'demo/bank', WSID, 'bank.Deposit', null, [1, 2]]), 904, /body/],
      [packr.pack([3, 905, 1, 'demo/bank', WSID, 'bank.Deposit', null, { args: { d: new Date() } }]), 905, /not plain data/],
      [packr.pack([3, 906, 11, 'demo/bank', WSID, 'bank.Account']), 906, /needs element 6/],
      [packr.pack([3, 907, 12, 'demo/bank', WSID, 'bank.Account', null, null, { wher: {} }]), 907, /params.wher is unknown/],
      [packr.pack([3, 908, 10, 'demo/bank', WSID, 'bank.Balance', null, null, null, 'key']), 908, /only writes/],
      [packr.pack([3, 909, 1, 'demo/bank', WSID, 'bank.Deposit', null, { args: { n: 2n ** 60n } }]), 909, /outside/],
      [packr.pack([3, 'id', 1]), 0, /reqId/],
      [packr.pack([9, 1]), 0, /unknown frame type 9/],
      [packr.pack([1, [1]]), 0, /already/],
      [new Uint8Array([0x93, 0x03, 0x01]), 0, /not one MessagePack value/],
      [new Uint8Array([0x91, 0x05, 0x00]), 0, /not one MessagePack value/],
    ]
    for (const [frame, reqId, message] of frameCases) {
      raw.send(frame)
      const r = await raw.reply(reqId)
      assert.equal(r.status, 400)
      const b = errorBody(r)
      assert.equal(b.code, 'BAD_REQUEST')
      assert.match(b.message, message)
    }
    assert.equal(plogOffsets(t), afterCreate, 'a bad request changed data')
    assert.equal(raw.closeInfo, undefined, 'the connection was closed')
  })

  it('answers a duplicate request id in flight on id 0, naming the id', async () => {
    // A query in the same burst as its duplicate is still in flight when the duplicate arrives.
    const dup = id()
    const q = encodeRequest({ reqId: dup, op: WireOp.QUERY, app: 'demo/bank', wsid: WSID, qname: 'bank.Balance', docId: 0, body: { account: acc }, params: null, idempotencyKey: null })
    raw.send(q)
    raw.send(q)
    const [a, b] = await raw.replies(2)
    const zero = [a!, b!].find((r) => r.reqId === 0)!
    const first = [a!, b!].find((r) => r.reqId === dup)!
    assert.equal(first.status, 200)
    assert.equal(zero.status, 400)
    assert.match(errorBody(zero).message, /already in flight/)
    assert.deepEqual(errorBody(zero).data, { reqId: dup })
  })

  it('answers 503 BUSY past inflightMax requests in flight on the connection', async () => {
    const ids = Array.from({ length: 40 }, id)
    for (const reqId of ids) raw.request({ reqId, wsid: WSID, op: WireOp.QUERY, qname: 'bank.Balance', body: { account: acc } })
    const replies = await raw.replies(ids.length)
    const busy = replies.filter((r) => r.status === 503)
    assert.ok(busy.length >= 40 - 8 * 2, `only ${busy.length} BUSY of 40 with inflightMax 8`)
    for (const r of busy) {
      assert.equal(errorBody(r).code, 'BUSY')
      assert.equal(r.retryAfterS, 1)
    }
    assert.ok(replies.filter((r) => r.status === 200).length >= 8)
    assert.deepEqual(new Set(replies.map((r) => r.reqId)), new Set(ids))
  })

  it('closes 1009 on a frame over frameBytesMax, with a reason', async () => {
    const { raw: big } = await RawWs.hello(t.server.port)
    big.request({ reqId: 1, wsid: WSID, op: WireOp.COMMAND, qname: 'bank.Deposit', body: { args: { account: acc, amount: 1, pad: 'x'.repeat(5000) } } })
    const c = await big.closed
    assert.equal(c.code, CloseCode.TOO_BIG)
    assert.match(c.reason, /exceeds frameBytesMax 4096/)
    assert.match(wsMetrics(await (await fetch(`http://127.0.0.1:${t.server.metricsPort}/metrics`)).text()).closed['1009']!.toString(), /^[1-9]/)
  })

  it('closes 1001 on shutdown after the replies in flight', async () => {
    const t2 = await startTestServer(['--storage', 'mem'])
    const { raw: r2 } = await RawWs.hello(t2.server.port)
    const a2 = await createAccount(t2.ws(WSID), 'z', 0)
    for (let i = 1; i <= 50; i++) r2.request({ reqId: i, wsid: WSID, op: WireOp.COMMAND, qname: 'bank.Deposit', body: { args: { account: a2, amount: 1 } } })
    await r2.reply(1)
    await t2.close()
    const c = await r2.closed
    assert.equal(c.code, CloseCode.GOING_AWAY)
    // Every request got its reply (applied, or 503 once the server stopped serving) before the close.
    assert.equal(r2.frames.filter((f) => f.type === FrameType.REPLY).length, 49)
  })
})
