// Subscriptions (docs/subscriptions.md), their limits and lifetimes against the real server:
// per-connection, per-server and per-subscription bounds, authorization (--auth on), a client
// that only listens past the idle timeout, and the grace period of a released read.

import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ReplyError, connect } from '../src/client/index.js'
import { readKeys } from '../src/main/auth/keys.js'
import { signToken } from '../src/main/auth/tokens.js'
import { FrameType, WireOp } from '../src/shared/protocol/index.js'
import { REPO_ROOT, createAccount, http, startTestServer, type TestServer } from './helpers/server.js'
import { RawWs } from './helpers/ws-raw.js'
import { metric, until, type Push, type Row } from './helpers/subscriptions.js'

describe('subscriptions: bounds', () => {
  const WSID = 4300
  let t: TestServer
  before(async () => {
    t = await startTestServer(['--storage', 'mem', '--subscriptions-per-connection-max', '3', '--subscriptions-max', '5', '--subscription-rows-max', '3'])
  })
  after(() => t.close())

  it('per connection (429), per server (503), rows per subscription (413, or an end push when it grows)', async () => {
    const base = t.ws(WSID)
    const account = await createAccount(base, 'b', 0)
    const a = await RawWs.hello(t.server.port)
    const b = await RawWs.hello(t.server.port)
    const sub = (raw: RawWs, reqId: number, where: Row) => {
      raw.request({ reqId, op: WireOp.SUBSCRIBE, wsid: WSID, qname: 'bank.Movements', params: { where: { account, ...where } } })
      return raw.reply(reqId)
    }
    for (let i = 1; i <= 3; i++) assert.equal((await sub(a.raw, i, { offset: i })).status, 200)
    const fourth = await sub(a.raw, 4, { offset: 4 })
    assert.equal(fourth.status, 429)
    assert.equal((fourth.body as Row).code, 'SUBSCRIPTIONS_LIMIT')
    for (let i = 1; i <= 2; i++) assert.equal((await sub(b.raw, i, { offset: 10 + i })).status, 200)
    const sixth = await sub(b.raw, 3, { offset: 13 })
    assert.equal(sixth.status, 503)
    assert.equal((sixth.body as Row).code, 'BUSY')
    await a.raw.close()
    // Rows: a result of 3 is served; the 4th row ends the subscription with TOO_LARGE.
    for (let i = 0; i < 3; i++) await http('POST', `${base}/commands/bank.Deposit`, { args: { account, amount: 1 } })
    await until(async () => (await metric(t, 'vvm_subscriptions')) === 2, 'the closed connection to release')
    const whole = await sub(b.raw, 4, {})
    assert.equal(whole.status, 200, JSON.stringify(whole.body))
    await http('POST', `${base}/commands/bank.Deposit`, { args: { account, amount: 1 } })
    await until(() => b.raw.frames.some((f) => f.type === FrameType.PUSH && (f.body as Row).type === 'end'), 'the end push')
    const end = b.raw.frames.find((f): f is Push => f.type === FrameType.PUSH && (f.body as Row).type === 'end')!
    assert.equal((end.body as Row).code, 'TOO_LARGE')
    assert.equal((end.body as Row).status, 413)
    // A new subscription to the same read is refused at once.
    const again = await sub(b.raw, 5, {})
    assert.equal(again.status, 413)
    await b.raw.close()
  })
})

describe('subscriptions with --auth on', () => {
  const WSID = 4400
  let t: TestServer
  let url: string
  let sign: (login: string, roles: string[], ttlS?: number, app?: string) => Promise<string>
  before(async () => {
    t = await startTestServer(['--auth', 'on', '--storage', 'mem', '--app', 'demo/bank', '--app', join(REPO_ROOT, 'dist/test/fixtures/apps/auth.js')])
    const ring = await readKeys(join(t.dataDir, 'auth-keys.json'))
    sign = async (login, roles, ttlS = 3600, app = 'demo/bank') => (await signToken(ring.signing, { login, app, workspaceRoles: { [WSID]: roles } }, ttlS)).token
    url = `ws://127.0.0.1:${t.server.port}/api/ws`
  })
  after(() => t.close())

  it('a subscriber sees only what its roles allow', async () => {
    const owner = await connect(url, { app: 'demo/bank', wsid: WSID, token: await sign('olga', ['owner']) })
    const account = (await owner.docs.create('bank.Account', { name: 'o', balance: 0 })).newIDs['1']!
    const reader = await connect(url, { app: 'demo/bank', wsid: WSID, token: await sign('rita', ['reader']) })
    // Granted: select on bank.Account and bank.Movements, execute bank.Balance. Not granted: DailyTotals.
    const live = await reader.live({ query: 'bank.Balance', args: { account } })
    await assert.rejects(reader.subscribe({ view: 'bank.DailyTotals', where: { account } }), (e: ReplyError) => e.status === 403 && e.code === 'FORBIDDEN')
    const anonymous = await connect(url, { app: 'demo/bank', wsid: WSID })
    await assert.rejects(anonymous.subscribe({ cdocs: 'bank.Account' }), (e: ReplyError) => e.status === 401)
    // What an app grants to public, an anonymous caller may subscribe to.
    const who = await anonymous.live({ query: 'pub.WhoAmI' }, { app: 'test/auth' })
    assert.deepEqual(who.rows.rows, [{ login: '', roles: ['public'] }])
    await assert.rejects(anonymous.subscribe({ query: 'pub.Secret' }, { app: 'test/auth' }), (e: ReplyError) => e.status === 401)
    // A field-limited grant cuts the rows of the snapshot and of every diff.
    const clerk = await connect(url, { app: 'test/auth', wsid: WSID, token: await sign('carl', ['clerk'], 3600, 'test/auth') })
    const viewer = await connect(url, { app: 'test/auth', wsid: WSID, token: await sign('vera', ['viewer'], 3600, 'test/auth') })
    await clerk.docs.create('pub.Note', { title: 't1', secret: 's1' })
    const notes = await viewer.live({ cdocs: 'pub.Note' })
    await clerk.docs.create('pub.Note', { title: 't2', secret: 's2' })
    await until(() => notes.rows.rows.length === 2, 'the viewer to see the second note')
    assert.deepEqual(notes.rows.rows.map((r) => Object.keys(r).filter((k) => !k.startsWith('sys.'))), [['title'], ['title']])
    await owner.command('bank.Deposit', { account, amount: 7 })
    await until(() => live.rows.rows[0]?.balance === 7, 'the reader to see the deposit')
    for (const c of [owner, reader, anonymous, clerk, viewer]) await c.close()
    await until(async () => (await metric(t, 'vvm_subscriptions')) === 0, 'the subscriptions to be released')
  })

  it('an expired token ends its subscriptions unless the connection has a newer token of the same login', async () => {
    const owner = await connect(url, { app: 'demo/bank', wsid: WSID, token: await sign('olga', ['owner']) })
    const account = (await owner.docs.create('bank.Account', { name: 'e', balance: 0 })).newIDs['1']!
    const TTL_S = 3
    const expiring = await connect(url, { app: 'demo/bank', wsid: WSID, token: await sign('rita', ['reader'], TTL_S) })
    const renewed = await connect(url, { app: 'demo/bank', wsid: WSID, token: await sign('rita', ['reader'], TTL_S) })
    const dropped = await connect(url, { app: 'demo/bank', wsid: WSID, token: await sign('rita', ['reader'], TTL_S) })
    const lives = await Promise.all([expiring, renewed, dropped].map((c) => c.live({ query: 'bank.Balance', args: { account } })))
    await renewed.authenticate(await sign('rita', ['reader'], 3600))
    // Anonymous never expires: it must not keep the reader's subscription alive.
    await dropped.authenticate(null)
    await until(() => lives[0]!.error !== undefined && lives[2]!.error !== undefined, 'the expired subscriptions to end', (TTL_S + 5) * 1000)
    for (const i of [0, 2]) {
      assert.equal((lives[i]!.error as ReplyError).code, 'TOKEN_EXPIRED')
      assert.equal((lives[i]!.error as ReplyError).status, 401)
    }
    assert.equal(lives[1]!.error, undefined)
    await owner.command('bank.Deposit', { account, amount: 9 })
    await until(() => lives[1]!.rows.rows[0]?.balance === 9, 'the renewed subscription to go on')
    for (const c of [owner, expiring, renewed, dropped]) await c.close()
  })
})

describe('subscriptions: a client that only listens', () => {
  it('keeps its connection past the idle timeout: the SDK pings while it only receives', async () => {
    const t = await startTestServer(['--storage', 'mem', '--ws-idle-timeout-s', '1'])
    const url = `ws://127.0.0.1:${t.server.port}/api/ws`
    const states: string[] = []
    const listener = await connect(url, { app: 'demo/bank', wsid: 4600, onStateChange: (s) => states.push(s) })
    const writer = await connect(url, { app: 'demo/bank', wsid: 4600 })
    const account = (await writer.docs.create('bank.Account', { name: 'l', balance: 0 })).newIDs['1']!
    const live = await listener.live({ query: 'bank.Balance', args: { account } })
    for (let i = 1; i <= 12; i++) {
      await writer.command('bank.Deposit', { account, amount: 1 })
      await new Promise((r) => setTimeout(r, 250))
    }
    assert.equal(live.rows.rows[0]?.balance, 12)
    assert.deepEqual(states, ['open'], `the listener's connection changed state: ${states.join(', ')}`)
    await listener.close()
    await writer.close()
    await t.close()
  })
})

describe('subscriptions: the grace period', () => {
  it('keeps a released read for resuming until its grace has passed, then frees it', async () => {
    const t = await startTestServer(['--storage', 'mem', '--subscription-grace-s', '1'])
    const base = t.ws(4700)
    const account = await createAccount(base, 'g', 0)
    const groups = (): number => t.server.partitions.stats().reduce((n, s) => n + s.subGroups, 0)
    const { raw } = await RawWs.hello(t.server.port)
    raw.request({ reqId: 1, op: WireOp.SUBSCRIBE, wsid: 4700, qname: 'bank.Balance', params: { args: { account } } })
    const offset = ((await raw.reply(1)).body as { offset: number }).offset
    assert.equal(groups(), 1)
    await raw.close()
    await http('POST', `${base}/commands/bank.Deposit`, { args: { account, amount: 2 } })
    // Within the grace: kept (and kept current), so a resume gets the missed diff.
    assert.equal(groups(), 1)
    const { raw: again } = await RawWs.hello(t.server.port)
    again.request({ reqId: 1, op: WireOp.SUBSCRIBE, wsid: 4700, qname: 'bank.Balance', params: { args: { account } }, body: { resumeFrom: offset } })
    const resumed = (await again.reply(1)).body as { resumed: boolean; diffs: { ops: { row: Row }[] }[] }
    assert.equal(resumed.resumed, true)
    assert.deepEqual(resumed.diffs.map((d) => d.ops[0]!.row), [{ balance: 2 }])
    await again.close()
    // Past the grace, with no subscriber and no traffic: gone.
    await until(() => groups() === 0, 'the idle group to be dropped', 5000)
    await t.close()
  })
})
