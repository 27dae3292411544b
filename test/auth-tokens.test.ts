// Logins and tokens: sign-up rules, login with one 401 for a wrong login and a wrong password,
// the brute-force guard (token buckets per login and per address, 429 with Retry-After),
// refresh, the admin's `vvm token` (verified with the key file, used with a running server),
// and key rotation with `vvm keys rotate` (new keys sign after a restart, old tokens still verify).

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, it } from 'node:test'
import { readKeys } from '../src/main/auth/keys.js'
import { verifyToken } from '../src/main/auth/tokens.js'
import { VVM_BIN, http, startTestServer, tempDir } from './helpers/server.js'

const run = promisify(execFile)
const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })
const vvm = async (...args: string[]): Promise<string> => (await run(process.execPath, [VVM_BIN, ...args])).stdout.trim()

describe('logins and tokens', () => {
  it('sign-up rules; one 401 for a wrong login and a wrong password; refresh', async () => {
    const t = await startTestServer(['--auth', 'on'])
    try {
      const api = `${t.url}/api/v2/apps/demo/bank`
      assert.equal((await http('POST', `${api}/users`, { login: 'Al', password: 'long-enough' })).status, 400)
      assert.equal((await http('POST', `${api}/users`, { login: 'alice', password: 'short' })).status, 400)
      assert.equal((await http('POST', `${api}/users`, { login: 'alice', password: 'long-enough', admin: true })).status, 400)
      assert.equal((await http('POST', `${api}/users`, '{"login":')).body.code, 'BAD_JSON')
      assert.equal((await http('GET', `${api}/users`)).status, 405)
      assert.equal((await http('POST', `${t.url}/api/v2/apps/no/app/users`, { login: 'alice', password: 'long-enough' })).status, 404)
      const created = await http('POST', `${api}/users`, { login: 'alice', password: 'long-enough' })
      assert.equal(created.status, 201)
      assert.deepEqual(created.body, { login: 'alice' })
      assert.equal((await http('POST', `${api}/users`, { login: 'alice', password: 'other-password' })).body.code, 'CONFLICT')
      const wrongPassword = await http('POST', `${api}/auth/login`, { login: 'alice', password: 'wrong-password' })
      const wrongLogin = await http('POST', `${api}/auth/login`, { login: 'alicia', password: 'long-enough' })
      assert.equal(wrongPassword.status, 401)
      assert.deepEqual(wrongLogin.body, wrongPassword.body, 'a wrong login and a wrong password look the same')
      const login = await http('POST', `${api}/auth/login`, { login: 'alice', password: 'long-enough' })
      assert.equal(login.status, 200)
      const ring = await readKeys(join(t.dataDir, 'auth-keys.json'))
      const claims = await verifyToken(ring, login.body.token)
      assert.equal(claims.login, 'alice')
      assert.equal(claims.app, 'demo/bank')
      assert.equal(claims.expiresAtS - claims.issuedAtS, 3600)
      assert.equal(Date.parse(login.body.expiresAt), claims.expiresAtS * 1000)
      assert.equal((await http('POST', `${api}/auth/refresh`)).status, 401)
      const refreshed = await http('POST', `${api}/auth/refresh`, undefined, bearer(login.body.token))
      assert.equal(refreshed.status, 200)
      assert.equal((await verifyToken(ring, refreshed.body.token)).login, 'alice')
      // The key file is the server's secret: 0600.
      assert.equal((await stat(join(t.dataDir, 'auth-keys.json'))).mode & 0o777, 0o600)
    } finally {
      await t.close()
    }
  })

  it('brute force: 429 with Retry-After past the attempts per login, and past those per address', async () => {
    const t = await startTestServer(['--auth', 'on', '--auth-login-attempts-per-minute', '3', '--auth-address-attempts-per-minute', '8'])
    try {
      const api = `${t.url}/api/v2/apps/demo/bank`
      assert.equal((await http('POST', `${api}/users`, { login: 'bob', password: 'bob-password' })).status, 201)
      for (let i = 0; i < 3; i++) assert.equal((await http('POST', `${api}/auth/login`, { login: 'bob', password: `guess-${i}-xx` })).status, 401)
      const limited = await http('POST', `${api}/auth/login`, { login: 'bob', password: 'bob-password' })
      assert.equal(limited.status, 429, 'even the right password is refused while the login is limited')
      assert.equal(limited.body.code, 'RATE_LIMITED')
      assert.ok(Number(limited.headers.get('retry-after')) >= 1)
      // Other logins from the same address: 8 attempts per minute in all (1 sign-up + 4 so far).
      for (let i = 0; i < 3; i++) assert.equal((await http('POST', `${api}/auth/login`, { login: `user${i}`, password: 'whatever-x' })).status, 401)
      const byAddress = await http('POST', `${api}/auth/login`, { login: 'someone', password: 'whatever-x' })
      assert.equal(byAddress.status, 429)
      assert.match(byAddress.body.message, /from this address/)
      assert.equal((await http('POST', `${api}/users`, { login: 'carol', password: 'carol-password' })).status, 429)
    } finally {
      await t.close()
    }
  })

  it('vvm token prints a token that verifies and works with the running server; vvm keys rotate adds a key', async () => {
    const dir = await tempDir()
    let t = await startTestServer(['--auth', 'on'], dir.path)
    try {
      const token = await vvm('token', '--data-dir', dir.path, '--app', 'demo/bank', '--login', 'alice', '--wsid', '1001', '--role', 'owner')
      const ring = await readKeys(join(dir.path, 'auth-keys.json'))
      const claims = await verifyToken(ring, token)
      assert.deepEqual({ login: claims.login, app: claims.app, wsr: claims.workspaceRoles }, { login: 'alice', app: 'demo/bank', wsr: { 1001: ['owner'] } })
      const base = t.ws(1001)
      const acc = await http('POST', `${base}/docs/bank.Account`, { name: 'a', balance: 0 }, bearer(token))
      assert.equal(acc.status, 201)
      await assert.rejects(vvm('token', '--data-dir', dir.path, '--login', 'alice', '--wsid', '1001'), /--wsid and --role go together/)

      const kid = await vvm('keys', 'rotate', '--data-dir', dir.path)
      assert.notEqual(kid, ring.signing.kid)
      assert.match(await vvm('keys', 'list', '--data-dir', dir.path), new RegExp(`${kid}\\t.*\\tsigning`))
      const fresh = await vvm('token', '--data-dir', dir.path, '--login', 'alice', '--wsid', '1001', '--role', 'owner')
      // The running server loaded its keys at start: a token of the new key is unknown to it.
      assert.equal((await http('GET', `${base}/cdocs/bank.Account`, undefined, bearer(fresh))).status, 401)
      await t.close()
      t = await startTestServer(['--auth', 'on'], dir.path)
      const b2 = t.ws(1001)
      assert.equal((await http('GET', `${b2}/cdocs/bank.Account`, undefined, bearer(fresh))).status, 200)
      assert.equal((await http('GET', `${b2}/cdocs/bank.Account`, undefined, bearer(token))).status, 200, 'old keys still verify')
      // Tokens the server issues are signed with the newest key.
      assert.equal((await http('POST', `${t.url}/api/v2/apps/demo/bank/users`, { login: 'bob', password: 'bob-password' })).status, 201)
      const login = await http('POST', `${t.url}/api/v2/apps/demo/bank/auth/login`, { login: 'bob', password: 'bob-password' })
      const header = JSON.parse(Buffer.from(login.body.token.split('.')[0], 'base64url').toString())
      assert.deepEqual(header, { alg: 'HS256', kid, typ: 'JWT' })
    } finally {
      await t.close()
      await dir.remove()
    }
  })

  it('with --auth off every request acts as the owner and there are no logins', async () => {
    const t = await startTestServer(['--auth', 'off'])
    try {
      assert.equal((await http('POST', `${t.ws(5)}/docs/bank.Account`, { name: 'a', balance: 0 })).status, 201)
      assert.equal((await http('POST', `${t.ws(5)}/commands/sys.GrantRole`, { args: { login: 'bob', role: 'reader' } })).status, 200)
      assert.equal((await http('POST', `${t.url}/api/v2/apps/demo/bank/users`, { login: 'bob', password: 'bob-password' })).status, 404)
    } finally {
      await t.close()
    }
  })
})
