// The plain HTTP port while TLS is on: it answers the CA's HTTP-01 requests
// (`GET /.well-known/acme-challenge/{token}`) and redirects everything else to the same host
// and path on HTTPS with 308 Permanent Redirect (which, unlike 301, keeps the method and body).

import type { TemplatedApp } from 'uWebSockets.js'
import type { Counter } from '../metrics.js'
import { hostOf } from '../domain-apps.js'

/** A host a Location header may carry: a DNS name, an IPv4 address or a bracketed IPv6 one. */
const REDIRECT_HOST_RE = /^(?:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*|\[[0-9a-f:.]+\])$/

export interface PlainPortOptions {
  /** Token → key authorization of the pending challenges (AcmeIssuer). */
  challenges: ReadonlyMap<string, string>
  /** The HTTPS port redirects point to (known once it listens; 443 is left out of the URL). */
  httpsPort: () => number
  challengeRequests: Counter
}

export function registerPlainPort(app: TemplatedApp, o: PlainPortOptions): void {
  app.get('/.well-known/acme-challenge/:token', (res, req) => {
    const keyAuthorization = o.challenges.get(req.getParameter(0) ?? '')
    o.challengeRequests.inc({ result: keyAuthorization === undefined ? 'unknown' : 'answered' })
    res.cork(() => {
      if (keyAuthorization === undefined) res.writeStatus('404 Not Found').writeHeader('content-type', 'text/plain').end('no such challenge\n')
      else res.writeHeader('content-type', 'application/octet-stream').end(keyAuthorization)
    })
  })
  app.any('/*', (res, req) => {
    const host = hostOf(req.getHeader('host'))
    const query = req.getQuery()
    const path = req.getUrl() + (query ? `?${query}` : '')
    res.cork(() => {
      if (!REDIRECT_HOST_RE.test(host)) {
        res.writeStatus('400 Bad Request').writeHeader('content-type', 'text/plain').end('HTTPS only: a Host header naming this server is needed for the redirect\n')
        return
      }
      const port = o.httpsPort()
      res.writeStatus('308 Permanent Redirect').writeHeader('location', `https://${host}${port === 443 ? '' : `:${port}`}${path}`).end()
    })
  })
}
