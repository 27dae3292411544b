// HTTPS with certificates from a real ACME CA: Pebble (scripts/pebble.sh), validating HTTP-01
// for real against vvm's plain port. Pebble issues certificates that live one day and
// RENEW_AFTER_S seconds, and vvm renews one day before expiry: every certificate is due
// RENEW_AFTER_S seconds after it was issued, so renewals happen during the test.
//
// Needs Go (scripts/pebble.sh builds Pebble from the Go module proxy); .ci/run installs it.

import assert from 'node:assert/strict'
import { statSync } from 'node:fs'
import https from 'node:https'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { tempDir } from './helpers/server.js'
import { eventually, freePort, httpsRequest, metric, pebbleUnavailable, startLoggedServer, startPebble, type LoggedServer, type Pebble } from './helpers/tls.js'

const RENEW_AFTER_S = 4
const DOMAINS = ['bank.test', 'shop.test']

describe('ACME certificates from Pebble', { skip: pebbleUnavailable() ?? false }, () => {
  let pebble: Pebble
  let t: LoggedServer
  let dataDir: { path: string; remove: () => Promise<void> }
  let httpsPort: number
  const resourcesBefore = new Map<string, number>()
  const get = (domain: string, agent?: https.Agent) =>
    httpsRequest({ url: `https://${domain}:${httpsPort}/healthz`, ca: pebble.rootPem, servername: domain, agent })

  before(async () => {
    for (const r of process.getActiveResourcesInfo()) resourcesBefore.set(r, (resourcesBefore.get(r) ?? 0) + 1)
    const plainPort = await freePort()
    pebble = await startPebble({ httpPort: plainPort, validityS: 86400 + RENEW_AFTER_S })
    dataDir = await tempDir()
    t = await startLoggedServer([
      '--port', String(plainPort), '--https-port', '0', ...DOMAINS.flatMap((d) => ['--domain', d]),
      '--acme-directory', pebble.directoryUrl, '--acme-directory-ca-file', pebble.minicaFile, '--acme-email', 'ops@bank.test',
      '--acme-renew-before-days', '1', '--acme-retry-min-s', '1', '--acme-retry-max-s', '2', '--domain-app', 'bank.test=demo/bank',
    ], dataDir.path)
    httpsPort = t.server.port
  })

  after(async () => {
    await t?.close()
    pebble?.stop()
    await dataDir?.remove()
  })

  it('obtains a certificate per domain over HTTP-01 and serves each by SNI, verified against Pebble\'s root', async () => {
    const bank = await eventually('a certificate for bank.test', () => get('bank.test'))
    const shop = await eventually('a certificate for shop.test', () => get('shop.test'))
    assert.equal(bank.status, 200)
    assert.deepEqual(bank.names, ['bank.test'])
    assert.deepEqual(shop.names, ['shop.test'])
    assert.notEqual(bank.serial, shop.serial)
    // Pebble fetched the key authorizations from the plain port (authorization reuse is off).
    assert.ok((await metric(t.server, 'vvm_acme_challenge_requests_total{result="answered"}'))! >= 2)
    const expiryS = (await metric(t.server, 'vvm_tls_certificate_expiry_seconds{domain="bank.test",source="acme"}'))!
    assert.ok(expiryS > 86400 - 60 && expiryS <= 86400 + RENEW_AFTER_S, `expiry ${expiryS}`)
    // The API is served on the new certificate, with the domain's app bound to its host.
    const created = await httpsRequest({ url: `https://bank.test:${httpsPort}/api/v2/workspaces/7/docs/bank.Account`, ca: pebble.rootPem, servername: 'bank.test', method: 'POST', body: '{"name":"a","balance":1}' })
    assert.equal(created.status, 201, created.body)
  })

  it('keeps the account key and certificates in <data-dir>/acme, readable by the owner only', () => {
    const dir = join(dataDir.path, 'acme')
    assert.equal(statSync(dir).mode & 0o777, 0o700)
    for (const f of ['account-key.pem', 'bank.test.pem', 'shop.test.pem']) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f)
  })

  it('renews ahead of expiry and reloads it while an open keep-alive connection goes on', async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 })
    try {
      const first = await get('bank.test', agent)
      const issuedBefore = (await metric(t.server, 'vvm_acme_certificates_issued_total{domain="bank.test"}'))!
      const renewed = await eventually('a renewed certificate for bank.test', async () => {
        // The kept connection answers on every round, on its own certificate.
        const kept = await get('bank.test', agent)
        assert.equal(kept.localPort, first.localPort, 'the keep-alive connection was replaced')
        assert.equal(kept.serial, first.serial)
        const fresh = await get('bank.test')
        return fresh.serial !== first.serial ? fresh : undefined
      }, 30_000)
      assert.deepEqual(renewed.names, ['bank.test'])
      assert.ok((await metric(t.server, 'vvm_acme_certificates_issued_total{domain="bank.test"}'))! > issuedBefore)
      const kept = await get('bank.test', agent)
      assert.equal(kept.status, 200)
      assert.equal(kept.localPort, first.localPort)
      assert.equal(kept.serial, first.serial)
    } finally {
      agent.destroy()
    }
  })

  it('keeps serving its certificate when the CA is unreachable, and logs and counts the failures', async () => {
    const mark = t.logs.length
    pebble.stop()
    const failures = await eventually('a failed renewal', async () => {
      const n = await metric(t.server, 'vvm_acme_renewal_failures_total{domain="bank.test"}')
      return n !== undefined && n >= 2 ? n : undefined
    }, 30_000)
    assert.ok(failures >= 2)
    const served = await get('bank.test')
    assert.equal(served.status, 200)
    assert.ok((await metric(t.server, 'vvm_tls_certificate_expiry_seconds{domain="bank.test",source="acme"}'))! > 86000)
    const logged = t.logs.slice(mark).filter((l) => l.level === 50 && l.domain === 'bank.test')
    assert.ok(logged.length >= 2)
    assert.match(logged[0]!.msg, /certificate order for bank\.test failed \(1 in a row\); serving the current certificate, valid until \S+; next try in 1 s/)
    assert.ok(typeof logged[0]!.err === 'string' && logged[0]!.err !== '', 'the reason is logged')
  })

  it('close() in the middle of renewals leaves no socket or timer behind', async () => {
    await t.close()
    await new Promise((r) => setTimeout(r, 200))
    const left = new Map<string, number>()
    for (const r of process.getActiveResourcesInfo()) left.set(r, (left.get(r) ?? 0) + 1)
    const grown = [...left].filter(([r, n]) => n > (resourcesBefore.get(r) ?? 0) && r !== 'TTYWrap')
    assert.deepEqual(grown, [], `left: ${JSON.stringify(grown)}`)
  })
})
