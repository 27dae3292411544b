// The ACME CA unreachable from the first start: no certificate yet, so HTTPS has none to offer,
// but the plain port works, every failed order is logged and counted, retries back off, and
// close() stops them. Also the renewal-time rule. No Pebble needed.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { renewalDueMs } from '../src/main/tls/renewal.js'
import { eventually, freePort, httpsRequest, metric, startLoggedServer } from './helpers/tls.js'

const DAY_MS = 86_400_000

describe('ACME renewal', () => {
  it('is due renew-before-days ahead of expiry, or at a third of the lifetime for certificates shorter than that', () => {
    const notBeforeMs = Date.UTC(2026, 0, 1)
    assert.equal(renewalDueMs({ notBeforeMs, notAfterMs: notBeforeMs + 90 * DAY_MS }, 30 * DAY_MS), notBeforeMs + 60 * DAY_MS)
    // A 6-day certificate with a 30-day window would be due as soon as it is issued.
    assert.equal(renewalDueMs({ notBeforeMs, notAfterMs: notBeforeMs + 6 * DAY_MS }, 30 * DAY_MS), notBeforeMs + 4 * DAY_MS)
    assert.equal(renewalDueMs({ notBeforeMs, notAfterMs: notBeforeMs + DAY_MS + 4000 }, DAY_MS), notBeforeMs + 4000)
  })

  it('with the CA unreachable from the start: logs and counts each failure, backs off, and still redirects', async () => {
    const before = new Map<string, number>()
    for (const r of process.getActiveResourcesInfo()) before.set(r, (before.get(r) ?? 0) + 1)
    const closedPort = await freePort()
    const plainPort = await freePort()
    const t = await startLoggedServer(['--port', String(plainPort), '--https-port', '0', '--domain', 'bank.test',
      '--acme-directory', `https://127.0.0.1:${closedPort}/dir`, '--acme-retry-min-s', '1', '--acme-retry-max-s', '2'])
    try {
      await eventually('two failed orders', async () => ((await metric(t.server, 'vvm_acme_renewal_failures_total{domain="bank.test"}')) ?? 0) >= 2 ? true : undefined, 20_000)
      const failed = t.logs.filter((l) => l.level === 50 && l.domain === 'bank.test')
      assert.match(failed[0]!.msg, /certificate order for bank\.test failed \(1 in a row\); no certificate yet: HTTPS for it is not served; next try in 1 s/)
      assert.match(failed[1]!.msg, /\(2 in a row\).*next try in 2 s/)
      assert.match(String(failed[0]!.err), /ECONNREFUSED/)
      assert.equal(await metric(t.server, 'vvm_tls_certificate_expiry_seconds{domain="bank.test",source="acme"}'), undefined)
      // No certificate: the handshake fails rather than offering a wrong one.
      await assert.rejects(httpsRequest({ url: `https://bank.test:${t.server.port}/healthz`, ca: '', servername: 'bank.test' }))
      const redirect = await fetch(`http://127.0.0.1:${plainPort}/healthz`, { redirect: 'manual' })
      assert.equal(redirect.status, 308)
      assert.equal(redirect.headers.get('location'), `https://127.0.0.1:${t.server.port}/healthz`)
    } finally {
      await t.close()
    }
    await new Promise((r) => setTimeout(r, 200))
    const after = new Map<string, number>()
    for (const r of process.getActiveResourcesInfo()) after.set(r, (after.get(r) ?? 0) + 1)
    const grown = [...after].filter(([r, n]) => n > (before.get(r) ?? 0) && r !== 'TTYWrap')
    assert.deepEqual(grown, [], `left: ${JSON.stringify(grown)}`)
  })
})
