// The HTTPS frontend: the plain port (challenges, redirect), the HTTPS acceptor, and the
// certificate generations that serve the connections.
//
// Reload without dropping connections: uWS cannot change a running SSL context's certificate,
// and replacing an SNI entry (removeServerName + addServerName) frees the router that open
// connections of that name still use (a use-after-free, seen with valgrind). So each set of
// certificates is a generation: a new SSLApp with the routes replayed on it
// (route-recorder.ts), one SNI entry per domain. The acceptor, an SSLApp without routes
// listening on --https-port, hands every accepted socket to the current generation (uWS.js
// child apps: addChildAppDescriptor); a renewal makes a new generation current, and the old
// one keeps serving its open connections.

import assert from 'node:assert/strict'
import uws, { type TemplatedApp, type us_listen_socket } from 'uWebSockets.js'
import type { Logger } from 'pino'
import type { CertInfo } from './cert-store.js'
import type { RecorderHost } from './route-recorder.js'
import { RouteRecorder } from './route-recorder.js'

/**
 * Why 8: a generation is retired at each renewal (every ~60 days with 90-day certificates); a
 * connection still open eight renewals later is closed with the oldest generation.
 */
const GENERATIONS_RETIRED_MAX = 8

/** uWS.js's child-app API (made for worker threads, absent from its .d.ts). */
interface ChildApps {
  getDescriptor(): unknown
  addChildAppDescriptor(descriptor: unknown): void
  removeChildAppDescriptor(descriptor: unknown): void
}
type Generation = TemplatedApp & ChildApps

export interface FrontendOptions {
  /** ACME domains in configuration order (the first one's certificate is the default without --tls-cert). */
  domains: readonly string[]
  /** --tls-cert/--tls-key: the certificate for names without one of their own. */
  staticCert: CertInfo | undefined
  log: Logger
  /** Stops the certificate work (renewals, ACME requests) on close. */
  stopCertificates(): void
  /** Closes the plain port. */
  closePlainPort(): void
}

export class TlsFrontend implements RecorderHost {
  /** Register the HTTPS routes here; every generation serves them. */
  readonly app = new RouteRecorder(this)
  private readonly certs = new Map<string, CertInfo>()
  private acceptor: (TemplatedApp & ChildApps) | undefined
  private current: Generation | undefined
  private readonly retired: Generation[] = []
  private boundPort = 0
  /** The plain port (challenges, redirect), set once it listens. */
  plainPort = 0
  private closed = false
  /** TLS handshakes naming a server name without a certificate (served the default one). */
  unknownServerNames = 0

  constructor(private readonly o: FrontendOptions) {}

  /** The HTTPS port once listening (redirects point there). */
  get httpsPort(): number {
    return this.boundPort
  }

  /** Every certificate served now: the static one and each domain's. */
  certificates(): { domain: string; source: 'file' | 'acme'; cert: CertInfo }[] {
    const out: { domain: string; source: 'file' | 'acme'; cert: CertInfo }[] = []
    if (this.o.staticCert !== undefined) out.push({ domain: this.o.staticCert.names[0] ?? 'tls-cert', source: 'file', cert: this.o.staticCert })
    for (const [domain, cert] of this.certs) out.push({ domain, source: 'acme', cert })
    return out
  }

  /** Serves `cert` for `domain` from now on: new connections get it, open ones keep theirs. */
  install(domain: string, cert: CertInfo): void {
    if (this.closed) return
    this.certs.set(domain, cert)
    if (this.acceptor !== undefined) this.swap()
  }

  listen(host: string, port: number, cb: (listenSocket: us_listen_socket | false) => void | Promise<void>): void {
    assert(this.acceptor === undefined && !this.closed, 'the HTTPS acceptor listens once')
    // An SSLApp like its children, though it never handshakes: uWS.js adopts a handed-over socket
    // with the acceptor's template type, and a plain acceptor makes an SSL child adopt sockets
    // as plain ones, writing past their allocation (seen with valgrind).
    const acceptor = uws.SSLApp({}) as TemplatedApp & Partial<ChildApps>
    if (typeof acceptor.addChildAppDescriptor !== 'function' || typeof acceptor.removeChildAppDescriptor !== 'function') {
      throw new Error('this uWebSockets.js build has no child apps (addChildAppDescriptor): certificates could not be reloaded')
    }
    this.acceptor = acceptor as TemplatedApp & ChildApps
    this.current = this.build()
    this.acceptor.addChildAppDescriptor(this.current.getDescriptor())
    this.acceptor.listen(host, port, (s) => {
      if (s) this.boundPort = uws.us_socket_local_port(s)
      return cb(s)
    })
  }

  servingApps(): readonly TemplatedApp[] {
    return this.current === undefined ? [] : [this.current, ...this.retired]
  }

  /** Closes every generation's connections, the acceptor and the plain port; stops renewals. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.o.stopCertificates()
    for (const g of this.retired.splice(0)) g.close()
    this.current?.close()
    this.current = undefined
    this.acceptor?.close()
    this.o.closePlainPort()
  }

  private build(): Generation {
    const fallback = this.o.staticCert ?? this.o.domains.map((d) => this.certs.get(d)).find((c) => c !== undefined)
    const gen = uws.SSLApp(fallback === undefined ? {} : { cert_file_name: fallback.certPath, key_file_name: fallback.keyPath }) as Generation
    this.app.replay(gen)
    for (const domain of this.o.domains) {
      const cert = this.certs.get(domain)
      if (cert === undefined) continue
      gen.addServerName(domain, { cert_file_name: cert.certPath, key_file_name: cert.keyPath })
      // uWS prints "finding …" and "Browsed to SNI: …" on stdout here: harmless.
      gen.domain(domain)
      this.app.replay(gen)
    }
    gen.missingServerName(() => { this.unknownServerNames++ })
    return gen
  }

  private swap(): void {
    let next: Generation
    try {
      next = this.build()
    } catch (err) {
      // A file replaced behind vvm's back; the current generation goes on serving.
      this.o.log.error({ err: (err as Error).message }, 'tls: cannot load the new certificates; the current ones stay in use')
      return
    }
    const acceptor = this.acceptor!
    const prev = this.current!
    acceptor.addChildAppDescriptor(next.getDescriptor())
    acceptor.removeChildAppDescriptor(prev.getDescriptor())
    this.current = next
    this.retired.push(prev)
    if (this.retired.length > GENERATIONS_RETIRED_MAX) this.retired.shift()!.close()
  }
}
