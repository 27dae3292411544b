// Authentication on the binary protocol with `--auth on`: the HELLO token (checked at hello when
// the hello names its app: close 4401), per-request 401/403 as over HTTP, re-auth with AUTH
// frames, and the SDK's token option and authenticate().

import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ReplyError, connect } from '../src/client/index.js'
import { readKeys, type KeyRing } from '../src/main/auth/keys.js'
import { signToken } from '../src/main/auth/tokens.js'
import { CloseCode, FrameType, WireOp, encodeAuth, encodeHello } from '../src/shared/protocol/index.js'
import { startTestServer, type TestServer } from './helpers/server.js'
import { RawWs } from './helpers/ws-raw.js'

const WSID = 1001

describe('binary protocol with --auth on', () => {
  let t: TestServer
  let ring: KeyRing
  let alice: string
  let url: string
  let account: number
  const sign = async (login: string, roles: string[] | undefined, app = 'demo/bank', ttlS = 3600, nowS?: number): Promise<string> =>
    (await signToken(ring.signing, { login, app, workspaceRoles: roles === undefined ? undefined : { [WSID]: roles } }, ttlS, nowS)).token

  before(async () => {
    t = await startTestServer(['--auth', 'on', '--storage', 'mem'])
    ring = await readKeys(join(t.dataDir, 'auth-keys.json'))
    alice = await sign('alice', ['owner'])
    url = `ws://127.0.0.1:${t.server.port}/api/ws`
  })
  after(() => t.close())

  it('serves a client with a valid token as its login', async () => {
    const c = await connect(url, { app: 'demo/bank', wsid: WSID, token: alice })
    account = (await c.docs.create('bank.Account', { name: 'alice', balance: 0 })).newIDs['1']!
    assert.equal((await c.command<{ balance: number }>('bank.Deposit', { account, amount: 5 })).result.balance, 5)
    await c.close()
  })

  it('closes 4401 at hello for a bad or expired token when the hello names its app', async () => {
    const expired = await sign('alice', ['owner'], 'demo/bank', 60, Math.floor(Date.now() / 1000) - 3600)
    for (const [token, reason] of [['not.a.token', /unauthorized/], [expired, /expired/], [await sign('alice', ['owner'], 'other/app'), /other\/app/]] as const) {
      const raw = await RawWs.open(t.server.port)
      raw.send(encodeHello([1], token, { app: 'demo/bank' }))
      const c = await raw.closed
      assert.equal(c.code, CloseCode.UNAUTHORIZED)
      assert.match(c.reason, reason)
    }
    await assert.rejects(connect(url, { app: 'demo/bank', wsid: WSID, token: 'not.a.token' }), (e: { code: string; closeCode: number }) => e.code === 'CONNECT_FAILED' && e.closeCode === 4401)
  })

  it('answers 401 per request without a token or with a token of another app, 403 without the role', async () => {
    const { raw } = await RawWs.hello(t.server.port) // no token
    raw.request({ reqId: 1, wsid: WSID, op: WireOp.COMMAND, qname: 'bank.Deposit', body: { args: { account, amount: 1 } } })
    const r1 = await raw.reply(1)
    assert.equal(r1.status, 401)
    assert.equal((r1.body as { code: string }).code, 'UNAUTHORIZED')
    await raw.close()
    // A token never seen before, in a hello without app: verified with the first request.
    const fresh = await RawWs.open(t.server.port)
    fresh.send(encodeHello([1], await sign('zed', undefined, 'other/app'), {}))
    assert.equal((await fresh.next()).type, FrameType.WELCOME)
    fresh.request({ reqId: 2, wsid: WSID, op: WireOp.QUERY, qname: 'bank.Balance', body: { account } })
    const r2 = await fresh.reply(2)
    assert.equal(r2.status, 401)
    assert.match((r2.body as { message: string }).message, /for app other\/app/)
    await fresh.close()
    const stranger = await connect(url, { app: 'demo/bank', wsid: WSID, token: await sign('stranger', undefined) })
    await assert.rejects(stranger.command('bank.Deposit', { account, amount: 1 }), (e: ReplyError) => e.status === 403 && e.code === 'FORBIDDEN')
    await stranger.close()
  })

  it('owner and reader of demo/bank: the reader reads balances, docs and movements, and changes nothing', async () => {
    const owner = await connect(url, { app: 'demo/bank', wsid: WSID, token: alice })
    const reader = await connect(url, { app: 'demo/bank', wsid: WSID, token: await sign('rita', ['reader']) })
    try {
      // An account of its own: later tests expect the shared one's balance unchanged.
      const account = (await owner.docs.create('bank.Account', { name: 'rita-test', balance: 0 })).newIDs['1']!
      const before = (await owner.query<{ balance: number }>('bank.Balance', { account })).results[0]!
      assert.equal(((await owner.command('bank.Deposit', { account, amount: 5 })) as { result: { balance: number } }).result.balance, before.balance + 5)
      assert.deepEqual((await reader.query('bank.Balance', { account })).results, [{ balance: before.balance + 5 }])
      await assert.rejects(reader.command('bank.Deposit', { account, amount: 1 }), (e: ReplyError) => e.status === 403 && e.code === 'FORBIDDEN')
      await assert.rejects(reader.command('bank.Transfer', { from: account, to: account, amount: 1 }), (e: ReplyError) => e.status === 403)
      assert.deepEqual((await owner.query('bank.Balance', { account })).results, [{ balance: before.balance + 5 }], 'the refused commands changed nothing')
    } finally {
      await owner.close()
      await reader.close()
    }
  })

  it('re-authenticates a connection with an AUTH frame, and the SDK with authenticate()', async () => {
    const { raw } = await RawWs.hello(t.server.port)
    raw.send(encodeAuth(7, 'bad.token', { app: 'demo/bank' }))
    const bad = await raw.reply(7)
    assert.equal(bad.status, 401)
    raw.send(encodeAuth(8, await sign('alice', ['owner']), { app: 'demo/bank' }))
    assert.equal((await raw.reply(8)).status, 200)
    raw.request({ reqId: 9, wsid: WSID, op: WireOp.QUERY, qname: 'bank.Balance', body: { account } })
    assert.deepEqual((await raw.reply(9)).body, { results: [{ balance: 5 }] })
    await raw.close()

    const c = await connect(url, { app: 'demo/bank', wsid: WSID })
    await assert.rejects(c.query('bank.Balance', { account }), (e: ReplyError) => e.status === 401)
    await c.authenticate(alice)
    assert.deepEqual((await c.query('bank.Balance', { account })).results, [{ balance: 5 }])
    await assert.rejects(c.authenticate('bad.token'), (e: ReplyError) => e.status === 401)
    assert.deepEqual((await c.query('bank.Balance', { account })).results, [{ balance: 5 }], 'a refused AUTH changed the token')
    await c.close()
  })
})
