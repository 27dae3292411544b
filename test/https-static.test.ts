// HTTPS with certificate files (--tls-cert/--tls-key), the plain port's redirect and challenge
// path, domain → app routing, and the checks of the TLS options. The certificate is
// self-signed at test time with the openssl CLI (node:crypto cannot make X.509).

import assert from 'node:assert/strict'
import { request } from 'node:http'
import { after, before, describe, it } from 'node:test'
import WebSocket from 'ws'
import { ConfigError, loadConfig } from '../src/main/config.js'
import { startServer } from '../src/main/server.js'
import { tempDir } from './helpers/server.js'
import { freePort, httpsRequest, metric, selfSignedCert, startLoggedServer, type LoggedServer } from './helpers/tls.js'

/** A plain HTTP request with any Host header (fetch does not let a caller set Host). */
function plainRequest(port: number, path: string, o: { method?: string; host?: string; body?: string } = {}): Promise<{ status: number; location: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = o.host === undefined ? {} : { host: o.host }
    if (o.body !== undefined) headers['content-type'] = 'application/json'
    const req = request({ host: '127.0.0.1', port, path, method: o.method ?? 'GET', headers, agent: false, setHost: o.host === undefined ? false : undefined }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, body }))
    })
    req.on('error', reject)
    req.end(o.body)
  })
}

const probe = await tempDir('vvm-openssl-probe-')
const openssl = selfSignedCert(probe.path, ['probe.test']) !== undefined
await probe.remove()

describe('https with certificate files', { skip: openssl ? false : 'the openssl CLI is not installed' }, () => {
  let dir: { path: string; remove: () => Promise<void> }
  let cert: { certFile: string; keyFile: string; pem: string }
  let t: LoggedServer
  let plainPort: number
  let httpsBase: string
  const resourcesBefore = new Map<string, number>()

  before(async () => {
    for (const r of process.getActiveResourcesInfo()) resourcesBefore.set(r, (resourcesBefore.get(r) ?? 0) + 1)
    dir = await tempDir('vvm-https-')
    cert = selfSignedCert(dir.path, ['bank.test', 'other.test'])!
    plainPort = await freePort()
    t = await startLoggedServer(['--port', String(plainPort), '--https-port', '0', '--tls-cert', cert.certFile, '--tls-key', cert.keyFile, '--domain-app', 'bank.test=demo/bank'])
    httpsBase = `https://bank.test:${t.server.port}`
  })

  after(async () => {
    await t?.close()
    await dir?.remove()
  })

  it('serves the API over HTTPS with the given certificate', async () => {
    const r = await httpsRequest({ url: `${httpsBase}/healthz`, ca: cert.pem, servername: 'bank.test' })
    assert.equal(r.status, 200)
    assert.deepEqual(r.names, ['bank.test', 'other.test'])
    const expiryS = await metric(t.server, 'vvm_tls_certificate_expiry_seconds{domain="bank.test",source="file"}')
    assert.ok(expiryS !== undefined && expiryS > 86400 && expiryS <= 2 * 86400, `expiry ${expiryS}`)
  })

  it('serves the WebSocket protocol over TLS (wss)', async () => {
    const options: WebSocket.ClientOptions & { servername: string } = { ca: cert.pem, servername: 'bank.test', headers: { host: 'bank.test' } }
    const ws = new WebSocket(`wss://127.0.0.1:${t.server.port}/api/ws`, options)
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject) })
    ws.close()
    await new Promise((resolve) => ws.once('close', resolve))
  })

  it('a domain bound to an app serves /api/v2/workspaces/... without owner/app', async () => {
    const created = await httpsRequest({ url: `${httpsBase}/api/v2/workspaces/1001/docs/bank.Account`, ca: cert.pem, servername: 'bank.test', method: 'POST', body: JSON.stringify({ name: 'a', balance: 7 }) })
    assert.equal(created.status, 201, created.body)
    const id = (JSON.parse(created.body) as { newIDs: Record<string, number> }).newIDs['1']!
    // The long form names the same workspace of the same app.
    const long = await httpsRequest({ url: `${httpsBase}/api/v2/apps/demo/bank/workspaces/1001/docs/bank.Account/${id}`, ca: cert.pem, servername: 'bank.test' })
    assert.equal(long.status, 200, long.body)
    assert.equal((JSON.parse(long.body) as { balance: number }).balance, 7)
    const short = await httpsRequest({ url: `${httpsBase}/api/v2/workspaces/1001/commands/bank.Deposit`, ca: cert.pem, servername: 'bank.test', method: 'POST', body: JSON.stringify({ args: { account: id, amount: 5 } }) })
    assert.equal(short.status, 200, short.body)
    // Host decides: another name on the same certificate is bound to no app.
    const unbound = await httpsRequest({ url: `https://other.test:${t.server.port}/api/v2/workspaces/1001/docs/bank.Account/${id}`, ca: cert.pem, servername: 'other.test' })
    assert.equal(unbound.status, 404)
    assert.match(unbound.body, /no app is bound to host 'other\.test'/)
  })

  it('the plain port redirects to HTTPS with 308, keeping host, path and query', async () => {
    const get = await plainRequest(plainPort, '/readyz?probe=%7B%7D', { host: `bank.test:${plainPort}` })
    assert.equal(get.status, 308)
    assert.equal(get.location, `https://bank.test:${t.server.port}/readyz?probe=%7B%7D`)
    const post = await plainRequest(plainPort, '/api/v2/workspaces/1001/commands/bank.Deposit', { method: 'POST', host: 'bank.test', body: '{"args":{}}' })
    assert.equal(post.status, 308)
    assert.equal(post.location, `https://bank.test:${t.server.port}/api/v2/workspaces/1001/commands/bank.Deposit`)
    // The redirect follows to a working HTTPS endpoint.
    const followed = await httpsRequest({ url: `${get.location!.replace('bank.test', '127.0.0.1')}`, ca: cert.pem, servername: 'bank.test' })
    assert.equal(followed.status, 200, followed.body)
    // No usable Host: nothing to redirect to.
    assert.equal((await plainRequest(plainPort, '/x', { host: 'bad host' })).status, 400)
  })

  it('the plain port answers 404 for an unknown ACME challenge', async () => {
    const r = await plainRequest(plainPort, '/.well-known/acme-challenge/no-such-token', { host: 'bank.test' })
    assert.equal(r.status, 404)
    assert.equal(await metric(t.server, 'vvm_acme_challenge_requests_total{result="unknown"}'), 1)
  })

  it('close() releases the plain port, the HTTPS port and every handle', async () => {
    await t.close()
    await new Promise((r) => setTimeout(r, 200))
    const after = new Map<string, number>()
    for (const r of process.getActiveResourcesInfo()) after.set(r, (after.get(r) ?? 0) + 1)
    const grown = [...after].filter(([r, n]) => n > (resourcesBefore.get(r) ?? 0) && r !== 'TTYWrap')
    assert.deepEqual(grown, [], `left: ${JSON.stringify(grown)}`)
    await assert.rejects(plainRequest(plainPort, '/', { host: 'bank.test' }), /ECONNREFUSED/)
    await assert.rejects(httpsRequest({ url: `${httpsBase}/healthz`, ca: cert.pem, servername: 'bank.test' }), /ECONNREFUSED/)
  })
})

describe('TLS options are checked at start', () => {
  const base = ['--port', '0', '--metrics-port', '0', '--host', '127.0.0.1', '--auth', 'off']
  const refused = (flags: string[], re: RegExp): void => {
    assert.throws(() => loadConfig([...base, ...flags], {}), (e: unknown) => e instanceof ConfigError && re.test(e.message))
  }

  it('names the option and what is allowed', () => {
    refused(['--tls-cert', 'c.pem'], /--tls-cert and --tls-key go together/)
    refused(['--domain', '*.bank.test'], /wildcard/)
    refused(['--domain', 'Bank_Test'], /not a domain name/)
    refused(['--domain', 'a.test', '--domain', 'a.test'], /given twice/)
    refused(['--domain', 'a.test', '--port', '9000', '--https-port', '9000'], /must differ from --port/)
    refused(['--domain-app', 'bank.test'], /expected host=owner\/app/)
    refused(['--domain', 'a.test', '--acme-retry-min-s', '100', '--acme-retry-max-s', '10'], /must not exceed/)
    refused(['--domain', 'a.test', '--acme-directory', 'ftp://x'], /--acme-directory/)
  })

  it('refuses a key that does not belong to the certificate', { skip: openssl ? false : 'no openssl' }, async () => {
    const d = await tempDir('vvm-https-')
    const a = selfSignedCert(d.path, ['a.test'])!
    const b = selfSignedCert(d.path, ['b.test'])!
    const config = loadConfig([...base, '--data-dir', d.path, '--tls-cert', a.certFile, '--tls-key', b.keyFile], {})
    await assert.rejects(startServer(config), (e: unknown) => e instanceof ConfigError && /does not belong to the certificate/.test(e.message))
    await d.remove()
  })
})
