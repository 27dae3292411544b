// Authentication and authorization over HTTP with `--auth on`: every 401 (missing, malformed,
// bad-signature, unknown-key, wrong-app, expired token) and every 403 (per resource kind),
// each checked to have written nothing (PLog offsets) and read nothing (the body is only the
// error); owner and reader of demo/bank; sys.GrantRole / sys.RevokeRole; field-limited grants;
// public grants for anonymous callers; `state.principal` in extensions.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { readKeys, type KeyRing } from '../src/main/auth/keys.js'
import { signToken } from '../src/main/auth/tokens.js'
import { REPO_ROOT, http, startTestServer, type Reply, type TestServer } from './helpers/server.js'

const AUTH_APP = join(REPO_ROOT, 'dist/test/fixtures/apps/auth.js')
const ERROR_KEYS = new Set(['status', 'message', 'code', 'qname'])
const q = (v: unknown): string => encodeURIComponent(JSON.stringify(v))
const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

describe('auth over HTTP', () => {
  let t: TestServer
  let ring: KeyRing
  let bank: string
  let pub: string
  let alice: string
  let alicePub: string
  let bob: string
  let carol: string
  let acc: number

  async function signUpAndLogIn(app: string, login: string): Promise<string> {
    const users = await http('POST', `${t.url}/api/v2/apps/${app}/users`, { login, password: `${login}-password` })
    assert.equal(users.status, 201, JSON.stringify(users.body))
    const r = await http('POST', `${t.url}/api/v2/apps/${app}/auth/login`, { login, password: `${login}-password` })
    assert.equal(r.status, 200, JSON.stringify(r.body))
    assert.ok(Date.parse(r.body.expiresAt) > Date.now())
    return r.body.token as string
  }

  async function grantRole(base: string, owner: string, login: string, role: string): Promise<Reply> {
    return http('POST', `${base}/commands/sys.GrantRole`, { args: { login, role } }, bearer(owner))
  }

  before(async () => {
    t = await startTestServer(['--auth', 'on', '--app', 'demo/bank', '--app', AUTH_APP])
    ring = await readKeys(join(t.dataDir, 'auth-keys.json'))
    bank = t.ws(1001)
    pub = t.ws(7, 'test/auth')
    alice = (await signToken(ring.signing, { login: 'alice', app: 'demo/bank', workspaceRoles: { 1001: ['owner'] } }, 3600)).token
    alicePub = (await signToken(ring.signing, { login: 'alice', app: 'test/auth', workspaceRoles: { 7: ['owner'] } }, 3600)).token
    bob = await signUpAndLogIn('demo/bank', 'bob')
    carol = await signUpAndLogIn('demo/bank', 'carol')
    const r = await http('POST', `${bank}/docs/bank.Account`, { name: 'alice', balance: 0 }, bearer(alice))
    assert.equal(r.status, 201)
    acc = r.body.newIDs['1']
    assert.equal((await http('POST', `${bank}/commands/bank.Deposit`, { args: { account: acc, amount: 100 } }, bearer(alice))).status, 200)
    assert.equal((await grantRole(bank, alice, 'bob', 'reader')).status, 200)
  })
  after(() => t.close())

  const offsets = (): string => JSON.stringify(t.server.partitions.stats().map((s) => [s.app, s.partition, s.plogOffset]))

  /** The request fails with `status` and `code`, writes nothing, and its body carries no data. */
  async function refused(status: number, code: string, method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
    const before = offsets()
    const r = await http(method, url, body, headers)
    assert.equal(r.status, status, `${method} ${url} → ${r.status} ${JSON.stringify(r.body)}`)
    assert.equal(r.body.code, code)
    for (const k of Object.keys(r.body)) assert.ok(ERROR_KEYS.has(k), `the error body carries '${k}'`)
    assert.equal(offsets(), before, 'a refused request wrote to a PLog')
    return r
  }

  it('401 UNAUTHORIZED for a missing, malformed, bad-signature, unknown-key or wrong-app token', async () => {
    const deposit = { args: { account: acc, amount: 1 } }
    const other = { kid: ring.signing.kid, secret: new Uint8Array(randomBytes(32)), createdAt: '' }
    const forged = (await signToken(other, { login: 'alice', app: 'demo/bank', workspaceRoles: { 1001: ['owner'] } }, 3600)).token
    const unknownKid = (await signToken({ ...other, kid: 'nope' }, { login: 'alice', app: 'demo/bank' }, 3600)).token
    const [head, payload] = alice.split('.')
    const tampered = `${head}.${Buffer.from(JSON.stringify({ app: 'demo/bank', sub: 'mallory', wsr: { 1001: ['owner'] }, iat: 1, exp: 4e9 })).toString('base64url')}.${alice.split('.')[2]}`
    assert.notEqual(payload, tampered.split('.')[1])
    for (const headers of [{}, { authorization: 'Bearer not-a-jwt' }, { authorization: 'Basic YWxpY2U6eA==' }, bearer(forged), bearer(unknownKid), bearer(tampered), bearer(alicePub)]) {
      await refused(401, 'UNAUTHORIZED', 'POST', `${bank}/commands/bank.Deposit`, deposit, headers)
      await refused(401, 'UNAUTHORIZED', 'GET', `${bank}/cdocs/bank.Account`, undefined, headers)
      await refused(401, 'UNAUTHORIZED', 'GET', `${bank}/queries/bank.Balance?args=${q({ account: acc })}`, undefined, headers)
    }
    // v1 too.
    const v1 = await http('POST', `${t.url}/api/demo/bank/1001/c.bank.Deposit`, deposit)
    assert.equal(v1.status, 401)
    assert.equal(v1.body['sys.Error'].HTTPStatus, 401)
  })

  it('401 TOKEN_EXPIRED, a code of its own, for an expired token', async () => {
    const expired = (await signToken(ring.signing, { login: 'alice', app: 'demo/bank', workspaceRoles: { 1001: ['owner'] } }, 60, Math.floor(Date.now() / 1000) - 3600)).token
    await refused(401, 'TOKEN_EXPIRED', 'POST', `${bank}/commands/bank.Deposit`, { args: { account: acc, amount: 1 } }, bearer(expired))
    await refused(401, 'TOKEN_EXPIRED', 'GET', `${bank}/views/bank.Movements?where=${q({ account: acc })}`, undefined, bearer(expired))
    await refused(401, 'TOKEN_EXPIRED', 'POST', `${t.url}/api/v2/apps/demo/bank/auth/refresh`, undefined, bearer(expired))
  })

  it('403 FORBIDDEN per resource kind: command, query, doc read, create, update, deactivate, cdocs, view', async () => {
    const B = bearer(bob)
    const C = bearer(carol)
    await refused(403, 'FORBIDDEN', 'POST', `${bank}/commands/bank.Deposit`, { args: { account: acc, amount: 1 } }, B)
    await refused(403, 'FORBIDDEN', 'POST', `${bank}/commands/bank.Transfer`, { args: { from: acc, to: acc, amount: 1 } }, B)
    await refused(403, 'FORBIDDEN', 'GET', `${bank}/queries/bank.Balance?args=${q({ account: acc })}`, undefined, C)
    await refused(403, 'FORBIDDEN', 'GET', `${bank}/docs/bank.Account/${acc}`, undefined, C)
    await refused(403, 'FORBIDDEN', 'POST', `${bank}/docs/bank.Account`, { name: 'x', balance: 0 }, B)
    await refused(403, 'FORBIDDEN', 'PATCH', `${bank}/docs/bank.Account/${acc}`, { balance: 1_000_000 }, B)
    await refused(403, 'FORBIDDEN', 'DELETE', `${bank}/docs/bank.Account/${acc}`, undefined, B)
    await refused(403, 'FORBIDDEN', 'GET', `${bank}/cdocs/bank.Account`, undefined, C)
    await refused(403, 'FORBIDDEN', 'GET', `${bank}/views/bank.Movements?where=${q({ account: acc })}`, undefined, C)
    await refused(403, 'FORBIDDEN', 'GET', `${bank}/views/bank.DailyTotals?where=${q({ account: acc })}`, undefined, B)
    // A reader of workspace 1001 is nobody in workspace 1002.
    await refused(403, 'FORBIDDEN', 'GET', `${t.ws(1002)}/cdocs/bank.Account`, undefined, B)
    // An idempotent replay is authorized first: it never returns the first reply to another caller.
    const key = { 'Idempotency-Key': 'auth-replay-1' }
    assert.equal((await http('POST', `${bank}/commands/bank.Deposit`, { args: { account: acc, amount: 1 } }, { ...bearer(alice), ...key })).status, 200)
    await refused(403, 'FORBIDDEN', 'POST', `${bank}/commands/bank.Deposit`, { args: { account: acc, amount: 1 } }, { ...B, ...key })
  })

  it('owner and reader of demo/bank: the reader reads balance, movements and accounts, and changes nothing', async () => {
    const B = bearer(bob)
    const balance = await http('GET', `${bank}/queries/bank.Balance?args=${q({ account: acc })}`, undefined, B)
    assert.equal(balance.status, 200)
    assert.ok(balance.body.results[0].balance >= 100)
    const moves = await http('GET', `${bank}/views/bank.Movements?where=${q({ account: acc })}`, undefined, B)
    assert.equal(moves.status, 200)
    assert.equal(moves.body.results[0].amount, 100)
    assert.equal((await http('GET', `${bank}/docs/bank.Account/${acc}`, undefined, B)).body.name, 'alice')
    assert.equal((await http('GET', `${bank}/cdocs/bank.Account`, undefined, B)).body.results.length, 1)
    await refused(403, 'FORBIDDEN', 'POST', `${bank}/commands/bank.Deposit`, { args: { account: acc, amount: 5 } }, B)
    await refused(403, 'FORBIDDEN', 'POST', `${bank}/docs/bank.Account`, { name: 'bob', balance: 0 }, B)
    const owner = await http('POST', `${bank}/commands/bank.Deposit`, { args: { account: acc, amount: 5 } }, bearer(alice))
    assert.equal(owner.status, 200)
  })

  it('sys.GrantRole and sys.RevokeRole: by the owner they take effect at once; by anyone else 403', async () => {
    const dave = await signUpAndLogIn('demo/bank', 'dave')
    await refused(403, 'FORBIDDEN', 'GET', `${bank}/cdocs/bank.Account`, undefined, bearer(dave))
    await refused(403, 'FORBIDDEN', 'POST', `${bank}/commands/sys.GrantRole`, { args: { login: 'dave', role: 'reader' } }, bearer(bob))
    await refused(403, 'FORBIDDEN', 'POST', `${bank}/commands/sys.GrantRole`, { args: { login: 'bob', role: 'owner' } }, bearer(bob))
    await refused(400, 'VALIDATION', 'POST', `${bank}/commands/sys.GrantRole`, { args: { login: 'dave', role: 'admin' } }, bearer(alice))
    await refused(400, 'VALIDATION', 'POST', `${bank}/commands/sys.GrantRole`, { args: { login: 'D', role: 'reader' } }, bearer(alice))
    const granted = await grantRole(bank, alice, 'dave', 'reader')
    assert.equal(granted.status, 200)
    assert.deepEqual(granted.body.result, { login: 'dave', roles: ['reader'] })
    assert.equal((await http('GET', `${bank}/cdocs/bank.Account`, undefined, bearer(dave))).status, 200)
    // A stored owner grant makes dave an owner of this workspace: he may grant and deposit.
    assert.equal((await grantRole(bank, alice, 'dave', 'owner')).status, 200)
    assert.equal((await http('POST', `${bank}/commands/bank.Deposit`, { args: { account: acc, amount: 1 } }, bearer(dave))).status, 200)
    const revoked = await http('POST', `${bank}/commands/sys.RevokeRole`, { args: { login: 'dave', role: 'owner' } }, bearer(dave))
    assert.deepEqual(revoked.body.result, { login: 'dave', roles: ['reader'] })
    await refused(403, 'FORBIDDEN', 'POST', `${bank}/commands/bank.Deposit`, { args: { account: acc, amount: 1 } }, bearer(dave))
    assert.equal((await http('POST', `${bank}/commands/sys.RevokeRole`, { args: { login: 'dave', role: 'reader' } }, bearer(alice))).status, 200)
    await refused(403, 'FORBIDDEN', 'GET', `${bank}/cdocs/bank.Account`, undefined, bearer(dave))
  })

  it('public grants: an anonymous caller runs what is granted to public and gets 401 for the rest', async () => {
    const ping = await http('POST', `${pub}/commands/pub.Ping`, {})
    assert.equal(ping.status, 200)
    assert.deepEqual(ping.body.result, { login: '', roles: ['public'] })
    const who = await http('GET', `${pub}/queries/pub.WhoAmI`)
    assert.deepEqual(who.body.results, [{ login: '', roles: ['public'] }])
    await refused(401, 'UNAUTHORIZED', 'GET', `${pub}/queries/pub.Secret`)
    await refused(401, 'UNAUTHORIZED', 'POST', `${pub}/docs/pub.Note`, { title: 'x' })
    // A public command does not make its CUDs public.
    await refused(403, 'FORBIDDEN', 'POST', `${pub}/commands/pub.Ping`, { cuds: [{ fields: { 'sys.ID': 1, 'sys.QName': 'pub.Note', title: 'x' } }] })
    // A logged-in caller without roles is public too, and `state.principal` names it.
    const erin = await signUpAndLogIn('test/auth', 'erin')
    const whoErin = await http('GET', `${pub}/queries/pub.WhoAmI`, undefined, bearer(erin))
    assert.deepEqual(whoErin.body.results, [{ login: 'erin', roles: ['public'] }])
    await refused(403, 'FORBIDDEN', 'GET', `${pub}/queries/pub.Secret`, undefined, bearer(erin))
  })

  it('field lists: select returns only granted fields and refuses filters by others; update changes only granted fields', async () => {
    const owner = bearer(alicePub)
    const note = await http('POST', `${pub}/docs/pub.Note`, { title: 'plan', secret: 's3' }, owner)
    assert.equal(note.status, 201)
    const id = note.body.newIDs['1']
    assert.equal((await http('POST', `${pub}/commands/pub.Count`, { args: { topic: 'a', n: 1 } }, owner)).status, 200)
    const viewer = await signUpAndLogIn('test/auth', 'vera')
    const clerk = await signUpAndLogIn('test/auth', 'clark')
    assert.equal((await grantRole(pub, alicePub, 'vera', 'viewer')).status, 200)
    assert.equal((await grantRole(pub, alicePub, 'clark', 'clerk')).status, 200)
    const V = bearer(viewer)
    const doc = await http('GET', `${pub}/docs/pub.Note/${id}`, undefined, V)
    assert.deepEqual(doc.body, { 'sys.ID': id, 'sys.QName': 'pub.Note', 'sys.IsActive': true, title: 'plan' })
    const cdocs = await http('GET', `${pub}/cdocs/pub.Note`, undefined, V)
    assert.deepEqual(cdocs.body.results, [{ 'sys.ID': id, 'sys.QName': 'pub.Note', 'sys.IsActive': true, title: 'plan' }])
    await refused(403, 'FORBIDDEN', 'GET', `${pub}/cdocs/pub.Note?where=${q({ secret: 's3' })}`, undefined, V)
    await refused(403, 'FORBIDDEN', 'GET', `${pub}/cdocs/pub.Note?order=secret`, undefined, V)
    await refused(403, 'FORBIDDEN', 'GET', `${pub}/cdocs/pub.Note?keys=secret`, undefined, V)
    const tally = await http('GET', `${pub}/views/pub.Tally?where=${q({ topic: 'a' })}`, undefined, V)
    assert.deepEqual(tally.body.results, [{ topic: 'a', n: 1 }])
    await refused(403, 'FORBIDDEN', 'PATCH', `${pub}/docs/pub.Note/${id}`, { title: 'x' }, V)
    const C = bearer(clerk)
    assert.equal((await http('GET', `${pub}/docs/pub.Note/${id}`, undefined, C)).body.secret, 's3')
    await refused(403, 'FORBIDDEN', 'PATCH', `${pub}/docs/pub.Note/${id}`, { secret: 'leak' }, C)
    await refused(403, 'FORBIDDEN', 'DELETE', `${pub}/docs/pub.Note/${id}`, undefined, C)
    await refused(403, 'FORBIDDEN', 'POST', `${pub}/commands/pub.Ping`, { cuds: [{ 'sys.ID': id, fields: { secret: 'leak' } }] }, C)
    assert.equal((await http('PATCH', `${pub}/docs/pub.Note/${id}`, { title: 'plan b' }, C)).status, 200)
    assert.equal((await http('POST', `${pub}/commands/pub.Ping`, { cuds: [{ 'sys.ID': id, fields: { title: 'plan c' } }] }, C)).status, 200)
    assert.equal((await http('POST', `${pub}/docs/pub.Note`, { title: 'new' }, C)).status, 201)
    const whoClerk = await http('GET', `${pub}/queries/pub.WhoAmI`, undefined, C)
    assert.deepEqual(whoClerk.body.results, [{ login: 'clark', roles: ['clerk', 'public'] }])
    assert.equal((await http('GET', `${pub}/docs/pub.Note/${id}`, undefined, owner)).body.secret, 's3')
  })
})

describe('auth with the mem storage (reads served by the partition worker)', () => {
  it('grants stored by sys.GrantRole apply to reads and writes alike', async () => {
    const t = await startTestServer(['--auth', 'on', '--storage', 'mem'])
    try {
      const ring = await readKeys(join(t.dataDir, 'auth-keys.json'))
      const owner = bearer((await signToken(ring.signing, { login: 'olga', app: 'demo/bank', workspaceRoles: { 3: ['owner'] } }, 3600)).token)
      const reader = bearer((await signToken(ring.signing, { login: 'rita', app: 'demo/bank' }, 3600)).token)
      const base = t.ws(3)
      const acc = (await http('POST', `${base}/docs/bank.Account`, { name: 'o', balance: 9 }, owner)).body.newIDs['1']
      assert.equal((await http('GET', `${base}/docs/bank.Account/${acc}`, undefined, reader)).status, 403)
      assert.equal((await http('POST', `${base}/commands/sys.GrantRole`, { args: { login: 'rita', role: 'reader' } }, owner)).status, 200)
      assert.equal((await http('GET', `${base}/docs/bank.Account/${acc}`, undefined, reader)).body.balance, 9)
      assert.equal((await http('PATCH', `${base}/docs/bank.Account/${acc}`, { balance: 1 }, reader)).status, 403)
    } finally {
      await t.close()
    }
  })
})
