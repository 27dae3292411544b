// When each ACME domain's certificate is ordered: at once if there is none (or it is unusable),
// otherwise when its remaining validity falls under the renew-before window. A failed order is
// retried after a backoff (--acme-retry-min-s doubling up to --acme-retry-max-s) while the
// current certificate keeps being served; every failure is logged at error level and counted
// in vvm_acme_renewal_failures_total{domain}.

import type { Logger } from 'pino'
import type { Counter, ServerMetrics } from '../metrics.js'
import type { IssuedCertificate } from './acme-issuer.js'
import type { CertInfo, CertStore } from './cert-store.js'

const DAY_MS = 86_400_000
/** setTimeout holds at most 2^31-1 ms (24.8 days); a longer wait is re-armed in steps of a day. */
const TIMER_STEP_MAX_MS = DAY_MS

/**
 * When a certificate is due for renewal: `renewBeforeMs` before it expires, or, when that window
 * is as long as the certificate's whole lifetime (short-lived certificates), a third of its
 * lifetime before — otherwise every new certificate would be due at once, and ordered again and
 * again.
 */
export function renewalDueMs(cert: Pick<CertInfo, 'notBeforeMs' | 'notAfterMs'>, renewBeforeMs: number): number {
  const lifetimeMs = cert.notAfterMs - cert.notBeforeMs
  return cert.notAfterMs - (renewBeforeMs < lifetimeMs ? renewBeforeMs : lifetimeMs / 3)
}

export interface RenewalOptions {
  renewBeforeDays: number
  retryMinS: number
  retryMaxS: number
  issuer: { issue(domain: string): Promise<IssuedCertificate> }
  store: CertStore
  metrics: ServerMetrics
  log: Logger
  /** A new certificate is stored; serve it. */
  onCertificate(domain: string, cert: CertInfo): void
}

interface DomainState {
  cert: CertInfo | undefined
  /** Failed orders since the last success. */
  failures: number
  timer: NodeJS.Timeout | undefined
}

export class Renewals {
  private readonly domains = new Map<string, DomainState>()
  private readonly failuresTotal: Counter
  private readonly issuedTotal: Counter
  private closed = false

  constructor(private readonly o: RenewalOptions) {
    this.failuresTotal = o.metrics.registry.counter('vvm_acme_renewal_failures_total', 'certificate orders that failed (the current certificate stays in use), by domain')
    this.issuedTotal = o.metrics.registry.counter('vvm_acme_certificates_issued_total', 'certificates obtained from the ACME CA (first ones and renewals), by domain')
  }

  /** Starts each domain's schedule from its stored certificate (undefined: order at once). */
  start(stored: ReadonlyMap<string, CertInfo | undefined>): void {
    for (const [domain, cert] of stored) {
      this.domains.set(domain, { cert, failures: 0, timer: undefined })
      this.armAt(domain, cert === undefined ? Date.now() : renewalDueMs(cert, this.o.renewBeforeDays * DAY_MS))
    }
  }

  /** Stops the schedule; an order in progress is aborted by its issuer (AcmeIssuer.close). */
  close(): void {
    this.closed = true
    for (const s of this.domains.values()) clearTimeout(s.timer)
  }

  private armAt(domain: string, atMs: number): void {
    const s = this.domains.get(domain)!
    clearTimeout(s.timer)
    const waitMs = Math.max(0, atMs - Date.now())
    s.timer = waitMs > TIMER_STEP_MAX_MS
      ? setTimeout(() => this.armAt(domain, atMs), TIMER_STEP_MAX_MS)
      : setTimeout(() => { void this.attempt(domain) }, waitMs)
  }

  private async attempt(domain: string): Promise<void> {
    const s = this.domains.get(domain)!
    s.timer = undefined
    let cert: CertInfo
    try {
      const issued = await this.o.issuer.issue(domain)
      if (this.closed) return
      cert = this.o.store.save(domain, issued.keyPem, issued.chainPem)
    } catch (err) {
      if (this.closed) return
      s.failures++
      this.failuresTotal.inc({ domain })
      const retryInS = Math.min(this.o.retryMinS * 2 ** Math.min(s.failures - 1, 30), this.o.retryMaxS)
      const serving = s.cert === undefined ? 'no certificate yet: HTTPS for it is not served' : `serving the current certificate, valid until ${new Date(s.cert.notAfterMs).toISOString()}`
      this.o.log.error({ domain, failures: s.failures, retryInS, err: (err as Error).message },
        `tls: certificate order for ${domain} failed (${s.failures} in a row); ${serving}; next try in ${retryInS} s`)
      this.armAt(domain, Date.now() + retryInS * 1000)
      return
    }
    s.cert = cert
    s.failures = 0
    this.issuedTotal.inc({ domain })
    this.o.log.info({ domain, serial: cert.serial, notAfter: new Date(cert.notAfterMs).toISOString() }, `tls: new certificate for ${domain}`)
    this.o.onCertificate(domain, cert)
    // Never sooner than a failure would retry: a certificate that is due as soon as it is issued
    // (a clock far off, a CA that backdates a lot) must not be ordered in a loop.
    this.armAt(domain, Math.max(renewalDueMs(cert, this.o.renewBeforeDays * DAY_MS), Date.now() + this.o.retryMinS * 1000))
  }
}
