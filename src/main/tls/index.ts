// HTTPS for vvm (docs/operations.md#https). Main thread only; depends on uWebSockets.js,
// acme-client and the server's metrics, nothing of the engine.
//
//   config.ts         option checks that span several fields (called by ../config.ts)
//   frontend.ts       plain port + HTTPS acceptor + certificate generations (reload)
//   route-recorder.ts the TemplatedApp server.ts registers its routes on, replayed per generation
//   plain-port.ts     HTTP-01 challenge answers and the redirect to HTTPS
//   acme-issuer.ts    one certificate order with acme-client (abortable)
//   renewal.ts        when to order, retries with backoff, failure log and metric
//   cert-store.ts     <data-dir>/acme: account key and certificates, 0700/0600
//
// startTls runs before server.ts listens: it opens the plain port (the CA must reach it before
// any certificate exists), loads the stored certificates and starts the renewal schedule,
// which orders missing certificates at once, in the background: HTTPS for a domain is served
// as soon as its certificate arrives, without a restart.

import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import uws from 'uWebSockets.js'
import type { Logger } from 'pino'
import type { VvmConfig } from '../config.js'
import { ConfigError } from '../config.js'
import type { ServerMetrics } from '../metrics.js'
import type { AcmeIssuer } from './acme-issuer.js'
import { CertStore, TlsFileError, readStaticCert, type CertInfo } from './cert-store.js'
import { tlsEnabled } from './config.js'
import { TlsFrontend } from './frontend.js'
import { registerPlainPort } from './plain-port.js'
import { Renewals } from './renewal.js'

export type { TlsFrontend } from './frontend.js'
export { tlsEnabled } from './config.js'

/** Starts HTTPS if configured (--domain or --tls-cert); undefined otherwise. */
export async function startTls(config: VvmConfig, metrics: ServerMetrics, log: Logger): Promise<TlsFrontend | undefined> {
  if (!tlsEnabled(config)) return undefined
  let staticCert: CertInfo | undefined
  if (config.tlsCert !== '') {
    try {
      const { info, keyModeLoose } = readStaticCert(resolve(config.tlsCert), resolve(config.tlsKey))
      staticCert = info
      if (keyModeLoose) log.warn({ tlsKey: config.tlsKey }, 'tls: the private key file can be read by group or others; chmod 600 it')
    } catch (err) {
      if (err instanceof TlsFileError) throw new ConfigError(err.message)
      throw err
    }
  }
  let directoryCaPem: string | undefined
  if (config.acmeDirectoryCaFile !== '') {
    try {
      directoryCaPem = readFileSync(config.acmeDirectoryCaFile, 'utf8')
    } catch (err) {
      throw new ConfigError(`--acme-directory-ca-file ${config.acmeDirectoryCaFile}: cannot read: ${(err as Error).message}`)
    }
  }

  const challenges = new Map<string, string>()
  let issuer: AcmeIssuer | undefined
  let renewals: Renewals | undefined
  const plainApp = uws.App()
  const frontend = new TlsFrontend({
    domains: config.domains, staticCert, log,
    stopCertificates: () => { renewals?.close(); issuer?.close() },
    closePlainPort: () => plainApp.close(),
  })
  registerPlainPort(plainApp, {
    challenges, httpsPort: () => frontend.httpsPort,
    challengeRequests: metrics.registry.counter('vvm_acme_challenge_requests_total', 'requests for /.well-known/acme-challenge/ on the plain port, by result (answered, unknown)'),
  })
  metrics.registry.gauge('vvm_tls_certificate_expiry_seconds', 'seconds until the served certificate expires (negative: expired), by domain and source (acme, file)', () =>
    frontend.certificates().map((c) => ({ labels: { domain: c.domain, source: c.source }, value: Math.round((c.cert.notAfterMs - Date.now()) / 1000) })))
  metrics.registry.gauge('vvm_tls_unknown_server_names_total', 'TLS handshakes naming no configured domain (served the default certificate)', () =>
    [{ labels: {}, value: frontend.unknownServerNames }], 'counter')

  const plainSocket = await new Promise<uws.us_listen_socket | false>((ok) => plainApp.listen(config.host, config.port, ok))
  if (!plainSocket) {
    plainApp.close()
    throw new Error(`cannot listen on ${config.host}:${config.port} (the plain port for ACME challenges and redirects)`)
  }
  frontend.plainPort = uws.us_socket_local_port(plainSocket)

  if (config.domains.length > 0) {
    try {
      const store = CertStore.open(resolve(config.dataDir))
      // Loaded only with --domain: acme-client brings axios, node-forge and more.
      const { AcmeIssuer, createAccountKeyPem } = await import('./acme-issuer.js')
      const accountKeyPem = await store.accountKey(createAccountKeyPem)
      issuer = new AcmeIssuer({ directoryUrl: config.acmeDirectory, email: config.acmeEmail, directoryCaPem, accountKeyPem, challenges })
      renewals = new Renewals({
        renewBeforeDays: config.acmeRenewBeforeDays, retryMinS: config.acmeRetryMinS, retryMaxS: config.acmeRetryMaxS,
        issuer, store, metrics, log, onCertificate: (domain, cert) => frontend.install(domain, cert),
      })
      const stored = new Map<string, CertInfo | undefined>()
      for (const domain of config.domains) {
        const cert = store.load(domain, (err) => log.warn({ domain, err: err.message }, `tls: stored certificate of ${domain} unusable; ordering a new one`))
        stored.set(domain, cert)
        if (cert !== undefined) frontend.install(domain, cert)
      }
      renewals.start(stored)
    } catch (err) {
      frontend.close()
      throw err
    }
  }
  log.info({ plainPort: frontend.plainPort, httpsPort: config.httpsPort, domains: config.domains, tlsCert: config.tlsCert || undefined, acmeDirectory: config.domains.length > 0 ? config.acmeDirectory : undefined },
    'tls: plain port answers ACME challenges and redirects to HTTPS')
  return frontend
}
