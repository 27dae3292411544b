// Orders one domain's certificate from an ACME CA with the HTTP-01 challenge, through the
// `acme-client` library (JOSE, nonces, account, CSR). The steps are acme-client's primitives
// rather than its `auto()`, for two reasons: every wait is ours and abortable, so that a
// shutdown in the middle of an order leaves no timer or socket behind; and the key
// authorization is handed to the plain port's challenge route (plain-port.ts), not to a file.

import { AsyncLocalStorage } from 'node:async_hooks'
import http from 'node:http'
import https from 'node:https'
import type { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import * as acme from 'acme-client'

/** Why 30 s: a CA that does not answer a single request in that time is down for this attempt. */
const REQUEST_TIMEOUT_MS = 30_000
/** Polls of an authorization or order: from 250 ms doubling to 4 s, 30 polls (~1.7 min) at most. */
const POLL_FIRST_MS = 250
const POLL_MAX_MS = 4_000
const POLLS_MAX = 30

export class AcmeError extends Error {
  readonly code = 'VVM_ACME'
}

/** Where acme-client's requests get their agent and abort signal (one issuer's, see below). */
interface RequestScope {
  signal: AbortSignal
  httpsAgent: https.Agent
  httpAgent: http.Agent
}
const requestScope = new AsyncLocalStorage<RequestScope>()

// acme-client sends every request through one axios instance of the module. Requests made in an
// issuer's scope use that issuer's agents (its trusted CA, sockets closed on shutdown) and are
// aborted with it. acme-client's own retries (5, sleeping 5-25 s on timers nobody can cancel)
// are turned off: a failed order is retried whole by the renewal schedule (renewal.ts).
;(acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }).acmeSettings.retryMaxAttempts = 0
acme.axios.interceptors.request.use((config) => {
  const scope = requestScope.getStore()
  if (scope !== undefined) {
    config.signal = scope.signal
    config.httpsAgent = scope.httpsAgent
    config.httpAgent = scope.httpAgent
  }
  config.timeout = REQUEST_TIMEOUT_MS
  return config
})

/**
 * An agent that remembers the last connection error (refused, DNS, TLS). acme-client 5.4 turns a
 * request that got no response into "Cannot read properties of undefined (reading 'config')"
 * (its retry interceptor expects a response); this is where the real reason is found.
 */
class RecordingAgent extends https.Agent {
  lastError: Error | undefined

  forget(): void {
    this.lastError = undefined
  }

  override createConnection(...args: Parameters<https.Agent['createConnection']>): Duplex {
    const socket = super.createConnection(...args) as Duplex
    socket.once('error', (err: Error) => { this.lastError = err })
    return socket
  }
}

export interface AcmeIssuerOptions {
  directoryUrl: string
  email: string
  /** PEM CA certificates trusted for the directory's HTTPS (undefined: the system's). */
  directoryCaPem: string | undefined
  accountKeyPem: string
  /** Token → key authorization, served by the plain port while a challenge is pending. */
  challenges: Map<string, string>
}

export interface IssuedCertificate {
  keyPem: string
  chainPem: string
}

/** A new ACME account key (ECDSA P-256, PEM). */
export async function createAccountKeyPem(): Promise<string> {
  return (await acme.crypto.createPrivateEcdsaKey()).toString()
}

export class AcmeIssuer {
  private readonly client: acme.Client
  private readonly scope: RequestScope & { httpsAgent: RecordingAgent }
  private readonly aborter = new AbortController()
  private account: Promise<unknown> | undefined

  constructor(private readonly o: AcmeIssuerOptions) {
    this.client = new acme.Client({ directoryUrl: o.directoryUrl, accountKey: o.accountKeyPem })
    this.scope = {
      signal: this.aborter.signal,
      // No keep-alive: an order is a dozen requests every few weeks; no socket waits in between.
      httpsAgent: new RecordingAgent({ keepAlive: false, ca: o.directoryCaPem }),
      httpAgent: new http.Agent({ keepAlive: false }),
    }
  }

  /** Orders a certificate for `domain`; rejects with a message a log reader can act on. */
  async issue(domain: string): Promise<IssuedCertificate> {
    this.scope.httpsAgent.forget()
    try {
      return await requestScope.run(this.scope, () => this.order(domain))
    } catch (err) {
      if (err instanceof TypeError && /reading 'config'/.test(err.message)) {
        const reason = this.scope.httpsAgent.lastError?.message ?? 'no response (timeout or connection closed)'
        throw new AcmeError(`the CA at ${this.o.directoryUrl} did not answer: ${reason}`)
      }
      throw err
    }
  }

  /** Aborts the order in progress and closes the CA connections. */
  close(): void {
    this.aborter.abort(new AcmeError('vvm is shutting down'))
    this.scope.httpsAgent.destroy()
    this.scope.httpAgent.destroy()
  }

  private async order(domain: string): Promise<IssuedCertificate> {
    const { client } = this
    // The key of an existing account registers nothing new: the CA answers with that account.
    this.account ??= client.createAccount({ termsOfServiceAgreed: true, ...(this.o.email === '' ? {} : { contact: [`mailto:${this.o.email}`] }) })
      .catch((err: unknown) => { this.account = undefined; throw err })
    await this.account
    let order = await client.createOrder({ identifiers: [{ type: 'dns', value: domain }] })
    for (const authz of await client.getAuthorizations(order)) {
      if (authz.status === 'valid') continue
      const challenge = authz.challenges.find((c) => c.type === 'http-01')
      if (challenge === undefined) throw new AcmeError(`the CA offers no http-01 challenge for ${domain} (offered: ${authz.challenges.map((c) => c.type).join(', ')})`)
      const keyAuthorization = await client.getChallengeKeyAuthorization(challenge)
      this.o.challenges.set(challenge.token, keyAuthorization)
      try {
        await client.completeChallenge(challenge)
        const done = await this.poll(`authorization of ${domain}`, async () => {
          const fresh = (await client.getAuthorizations(order)).find((a) => a.url === authz.url)
          if (fresh === undefined) throw new AcmeError(`the order for ${domain} lost its authorization ${authz.url}`)
          return fresh
        })
        if (done.status !== 'valid') {
          const problem = done.challenges.find((c) => c.type === 'http-01')?.error as { detail?: string } | undefined
          throw new AcmeError(`the CA did not validate ${domain} over HTTP-01 (authorization ${done.status})${problem?.detail ? `: ${problem.detail}` : ''}`)
        }
      } finally {
        this.o.challenges.delete(challenge.token)
      }
    }
    order = await this.poll(`order for ${domain}`, () => client.getOrder(order), ['ready', 'valid'])
    if (order.status !== 'ready' && order.status !== 'valid') throw new AcmeError(`the order for ${domain} became ${order.status}`)
    const [keyPem, csr] = await acme.crypto.createCsr({ commonName: domain, altNames: [domain] }, await acme.crypto.createPrivateEcdsaKey())
    if (order.status === 'ready') order = await client.finalizeOrder(order, csr)
    order = await this.poll(`certificate for ${domain}`, () => client.getOrder(order), ['valid'])
    if (order.status !== 'valid') throw new AcmeError(`the order for ${domain} became ${order.status} after finalization`)
    const chainPem = await client.getCertificate(order)
    return { keyPem: keyPem.toString(), chainPem }
  }

  /** Fetches until the status leaves pending/processing (or reaches one of `until`). */
  private async poll<T extends { status: string }>(what: string, fetch: () => Promise<T>, until?: readonly string[]): Promise<T> {
    let waitMs = POLL_FIRST_MS
    for (let i = 0; i < POLLS_MAX; i++) {
      const item = await fetch()
      const waiting = until === undefined ? item.status === 'pending' || item.status === 'processing' : !until.includes(item.status) && (item.status === 'pending' || item.status === 'processing' || item.status === 'ready')
      if (!waiting) return item
      await sleep(waitMs, undefined, { signal: this.aborter.signal })
      waitMs = Math.min(waitMs * 2, POLL_MAX_MS)
    }
    throw new AcmeError(`the ${what} was still pending after ${POLLS_MAX} polls`)
  }
}
