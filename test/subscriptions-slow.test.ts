// A subscriber that stops reading (docs/subscriptions.md, "Bounds"): once more than half of
// bufferedBytesMax waits for it, its diffs are held back and coalesced (one op per changed key,
// so repeated changes of one row hold one op), past subscriptionPendingOpsMax changed rows its
// subscription ends with RESYNC; the connection is not closed, the server's memory for it stays
// bounded, and other subscribers get every diff meanwhile.

import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { connect, type VvmClient } from '../src/client/index.js'
import { FrameType, WireOp, type ServerFrame } from '../src/shared/protocol/index.js'
import { createAccount, http, startTestServer, type TestServer } from './helpers/server.js'
import { RawWs } from './helpers/ws-raw.js'

type Push = Extract<ServerFrame, { type: typeof FrameType.PUSH }>
type Row = Record<string, unknown>

const WSID = 4500
const BUFFERED_BYTES_MAX = 64 * 1024
const PENDING_OPS_MAX = 100
const DOC_SUBSCRIPTIONS = 500
const NAME_CHARS = 1000
const ACCOUNTS = 150

async function metric(t: TestServer, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${t.server.metricsPort}/metrics`)).text()
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
}

describe('subscriptions: a slow subscriber', () => {
  let t: TestServer
  let fast: VvmClient
  before(async () => {
    t = await startTestServer([
      '--storage', 'mem', '--ws-buffered-bytes-max', String(BUFFERED_BYTES_MAX),
      '--subscription-pending-ops-max', String(PENDING_OPS_MAX), '--ws-idle-timeout-s', '0',
    ])
    fast = await connect(`ws://127.0.0.1:${t.server.port}/api/ws`, { app: 'demo/bank', wsid: WSID })
  })
  after(async () => {
    await fast.close()
    await t.close()
  })

  it('is coalesced, then resynced past its bound; memory stays bounded and others are unaffected', async () => {
    const base = t.ws(WSID)
    const accounts: number[] = []
    for (let i = 0; i < ACCOUNTS; i++) accounts.push(await createAccount(base, `a${i}`, 0))
    const x = accounts[0]!
    const { raw: slow } = await RawWs.hello(t.server.port)
    // Many subscriptions of one doc (one group, a push per subscription per change) and one of the whole collection.
    for (let i = 1; i <= DOC_SUBSCRIPTIONS; i++) slow.request({ reqId: i, op: WireOp.SUBSCRIBE, wsid: WSID, qname: 'bank.Account', docId: x })
    slow.request({ reqId: DOC_SUBSCRIPTIONS + 1, op: WireOp.SUBSCRIBE, wsid: WSID, qname: 'bank.Account', params: { limit: 1000 } })
    const replies = await slow.replies(DOC_SUBSCRIPTIONS + 1)
    assert.ok(replies.every((r) => r.status === 200))
    const collectionSub = (replies.find((r) => r.reqId === DOC_SUBSCRIPTIONS + 1)!.body as { subscription: number }).subscription
    const socket = (slow.ws as unknown as { _socket: Socket })._socket
    socket.pause()

    const live = await fast.live({ doc: 'bank.Account', id: x })
    let name = ''
    // Repeated changes of one row: each fills the slow socket by DOC_SUBSCRIPTIONS × ~1 KB until it is congested.
    for (let i = 0; i < 200; i++) {
      name = `${i}:`.padEnd(NAME_CHARS, 'x')
      await fast.docs.update('bank.Account', x, { name })
      // The fast subscriber has the change before its command's reply.
      assert.equal(live.rows.rows[0]?.name, name)
    }
    const heldDuringDocs = await metric(t, 'vvm_subscription_pending_ops')
    assert.ok(heldDuringDocs > 0, 'the slow subscriber was never held back: the test did not fill its socket')
    // One op per changed key: 500 doc subscriptions × 1 key (+ the collection's 1 key) at most.
    assert.ok(heldDuringDocs <= DOC_SUBSCRIPTIONS + 1, `pending ops ${heldDuringDocs}: repeated changes of one row were not coalesced`)
    // Changes of many rows: the collection subscription passes PENDING_OPS_MAX and ends with RESYNC.
    for (const id of accounts.slice(1)) await http('PATCH', `${base}/docs/bank.Account/${id}`, { balance: 1 })
    const held = await metric(t, 'vvm_subscription_pending_ops')
    assert.ok(held <= DOC_SUBSCRIPTIONS + PENDING_OPS_MAX + 1, `pending ops ${held} past the bound`)
    assert.equal(slow.closeInfo, undefined, 'the slow subscriber was closed; it should have been held back')

    // Reading again: the coalesced diffs arrive, the collection subscription's end says RESYNC.
    socket.resume()
    const lastBody = new Map<number, Row>()
    const lastSeq = new Map<number, number>()
    const deadline = Date.now() + 20_000
    while (lastBody.size < DOC_SUBSCRIPTIONS + 1 || [...lastBody.entries()].some(([id, b]) => id !== collectionSub && ((b.ops as { row: Row }[]).at(-1)!.row.name !== name))) {
      if (Date.now() > deadline) throw new Error(`not every subscription caught up: ${lastBody.size}`)
      const f = await slow.next(20_000)
      if (f.type !== FrameType.PUSH) continue
      const p = f as Push
      assert.equal(p.seq, (lastSeq.get(p.subscriptionId) ?? 0) + 1, `subscription ${p.subscriptionId}: a gap in its pushes`)
      lastSeq.set(p.subscriptionId, p.seq)
      lastBody.set(p.subscriptionId, p.body as Row)
    }
    const end = lastBody.get(collectionSub)!
    assert.equal(end.type, 'end')
    assert.equal(end.code, 'RESYNC')
    assert.equal(end.status, 409)
    await slow.close()
    assert.equal(await metric(t, 'vvm_subscription_pending_ops'), 0)
    await live.close()
  })
})
