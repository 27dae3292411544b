// Checks of the HTTPS options that one field alone cannot express (config.ts calls this from
// validateConfig, so a bad combination stops the start with exit code 2).

import type { VvmConfig } from '../config.js'
import { isDomainName, parseDomainApps } from '../domain-apps.js'

/** TLS is on when certificates come from ACME (`--domain`) or from files (`--tls-cert`). */
export function tlsEnabled(c: Pick<VvmConfig, 'domains' | 'tlsCert'>): boolean {
  return c.domains.length > 0 || c.tlsCert !== ''
}

/** The first problem of the TLS options, as a message naming the option; undefined if none. */
export function tlsConfigProblem(c: VvmConfig): string | undefined {
  if ((c.tlsCert === '') !== (c.tlsKey === '')) return '--tls-cert and --tls-key go together: give both or neither'
  const seen = new Set<string>()
  for (const d of c.domains) {
    if (d.includes('*')) return `--domain '${d}': wildcard names need the DNS-01 challenge; vvm answers HTTP-01 only`
    if (!isDomainName(d)) return `--domain '${d}' is not a domain name (lower-case letters, digits, '-' and '.')`
    if (seen.has(d)) return `--domain '${d}' is given twice`
    seen.add(d)
  }
  if (c.domains.length > 0 && !/^https?:\/\/[^/\s]+(\/\S*)?$/.test(c.acmeDirectory)) return `--acme-directory '${c.acmeDirectory}' must be a URL like https://acme-v02.api.letsencrypt.org/directory`
  if (c.acmeEmail !== '' && !/^[^@\s]+@[^@\s]+$/.test(c.acmeEmail)) return `--acme-email '${c.acmeEmail}' is not an e-mail address`
  if (c.acmeRetryMinS > c.acmeRetryMaxS) return `--acme-retry-min-s ${c.acmeRetryMinS} must not exceed --acme-retry-max-s ${c.acmeRetryMaxS}`
  if (tlsEnabled(c) && c.httpsPort !== 0 && c.httpsPort === c.port) return `--https-port ${c.httpsPort} must differ from --port (the plain port answers ACME challenges and redirects)`
  const apps = parseDomainApps(c.domainApps)
  if (typeof apps === 'string') return `--domain-app: ${apps}`
  return undefined
}
