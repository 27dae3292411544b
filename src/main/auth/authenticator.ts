// Authentication on the main thread, before anything is queued: a bearer token becomes a Caller
// (who, for which app, which signed workspace roles, until when), and each request gets the
// Principal it carries to its processor. Verified tokens are remembered (bounded), so the hot
// path verifies a token once and afterwards awaits nothing.

import { ROLE_PUBLIC, allowedFields } from '../../shared/appdef/acl.js'
import type { Principal } from '../../shared/appdef/state.js'
import type { AppDef } from '../../shared/appdef/types.js'
import { ANONYMOUS, SYSTEM_OWNER, grantOpFor } from '../../shared/authz.js'
import type { EngineRequest } from '../../shared/engine-messages.js'
import { NotFoundError, VvmError } from '../../shared/errors.js'
import type { KeyRing } from './keys.js'
import { signToken, verifyToken, type WorkspaceRoles } from './tokens.js'

/** Why 10,000: about 3 MB of token strings; a miss costs one HMAC verification. */
export const VERIFIED_TOKENS_CACHED_MAX = 10_000
/** Why 8 KiB: a token with the most `wsr` claims allowed is about 4 KiB. */
export const TOKEN_CHARS_MAX = 8192

/** Who is calling, as authenticated once (per request on HTTP, per connection on the binary protocol). */
export interface Caller {
  readonly kind: 'token' | 'anonymous' | 'auth-off'
  /** The token's login; '' without one. */
  readonly login: string
  /** The app the token is for; for anonymous callers the app they asked for. */
  readonly app: string
  readonly workspaceRoles: WorkspaceRoles | undefined
  /** When the token expires (ms since epoch); Infinity without a token. */
  readonly expiresAtMs: number
}

const AUTH_OFF: Caller = Object.freeze({ kind: 'auth-off', login: '', app: '', workspaceRoles: undefined, expiresAtMs: Infinity })
const NO_ROLES: readonly string[] = Object.freeze([])

export interface AuthenticatorOptions {
  /** `--auth on`; off: every request acts as the workspace owner. */
  enabled: boolean
  /** Required when enabled. */
  keys: KeyRing | undefined
  tokenTtlS: number
  apps: ReadonlyMap<string, AppDef>
}

export class Authenticator {
  readonly enabled: boolean
  /** The principal of a request that arrives at the Dispatcher without one. */
  readonly defaultPrincipal: Principal
  private readonly verified = new Map<string, Caller>()

  constructor(private readonly o: AuthenticatorOptions) {
    this.enabled = o.enabled
    if (o.enabled && o.keys === undefined) throw new Error('authentication is on but no signing keys were loaded')
    this.defaultPrincipal = o.enabled ? ANONYMOUS : SYSTEM_OWNER
  }

  /**
   * Verifies `token` (undefined: none) for `app`. Rejects with UNAUTHORIZED (401) for a bad
   * token or one for another app, TOKEN_EXPIRED (401) for an expired one. The binary protocol
   * calls this at hello and on re-auth; HTTP calls `fromAuthorizationHeader`.
   */
  async authenticate(token: string | undefined, app: string): Promise<Caller> {
    return this.authenticateNow(token, app)
  }

  /** Like `authenticate`, synchronous when the token was verified before or there is none. */
  authenticateNow(token: string | undefined, app: string): Caller | Promise<Caller> {
    if (!this.enabled) return AUTH_OFF
    if (token === undefined || token === '') return { kind: 'anonymous', login: '', app, workspaceRoles: undefined, expiresAtMs: Infinity }
    const cached = this.verified.get(token)
    if (cached !== undefined) return checkCaller(cached, app, Date.now())
    if (token.length > TOKEN_CHARS_MAX) throw new VvmError('UNAUTHORIZED', `the token is longer than ${TOKEN_CHARS_MAX} characters`)
    return verifyToken(this.o.keys!, token).then((claims) => {
      const caller: Caller = { kind: 'token', login: claims.login, app: claims.app, workspaceRoles: claims.workspaceRoles, expiresAtMs: claims.expiresAtS * 1000 }
      this.verified.set(token, caller)
      // Oldest first out: an evicted token is verified again on its next use.
      if (this.verified.size > VERIFIED_TOKENS_CACHED_MAX) this.verified.delete(this.verified.keys().next().value as string)
      return checkCaller(caller, app, Date.now())
    })
  }

  /** From an `Authorization` header ('' when absent): `Bearer <token>` or nothing. */
  fromAuthorizationHeader(header: string, app: string): Caller | Promise<Caller> {
    if (header === '' || !this.enabled) return this.authenticateNow(undefined, app)
    const m = /^Bearer +(\S+) *$/i.exec(header)
    if (m === null) throw new VvmError('UNAUTHORIZED', 'the Authorization header must be "Bearer <token>"')
    return this.authenticateNow(m[1], app)
  }

  /**
   * The principal a request carries to its processor: the login and the roles its token signs
   * for the request's workspace. Throws 401 when the token has expired since it was verified,
   * is for another app, or when there is none and the app does not grant the request to public.
   */
  principalFor(caller: Caller, req: Pick<EngineRequest, 'app' | 'wsid' | 'op' | 'qname'>): Principal {
    switch (caller.kind) {
      case 'auth-off':
        return SYSTEM_OWNER
      case 'anonymous': {
        const app = this.o.apps.get(req.app)
        const op = grantOpFor(app, req.op, req.qname)
        if (op === undefined || app === undefined || allowedFields(app.acl, [ROLE_PUBLIC], op, req.qname) === undefined) {
          throw new VvmError('UNAUTHORIZED', `a token is required: ${req.app} does not grant this to public (send Authorization: Bearer <token>)`, { qname: req.qname })
        }
        return ANONYMOUS
      }
      case 'token':
        checkCaller(caller, req.app, Date.now())
        return { login: caller.login, roles: caller.workspaceRoles?.[String(req.wsid)] ?? NO_ROLES }
    }
  }

  /** A token for a login of an app (login and refresh); `workspaceRoles` only from a refreshed token. */
  async issue(login: string, app: string, workspaceRoles?: WorkspaceRoles): Promise<{ token: string; expiresAt: string }> {
    if (!this.enabled) throw new NotFoundError('authentication is off (--auth off): no tokens are issued')
    const { token, expiresAtS } = await signToken(this.o.keys!.signing, { login, app, workspaceRoles }, this.o.tokenTtlS)
    return { token, expiresAt: new Date(expiresAtS * 1000).toISOString() }
  }
}

function checkCaller(c: Caller, app: string, nowMs: number): Caller {
  if (c.expiresAtMs <= nowMs) throw new VvmError('TOKEN_EXPIRED', 'the token has expired: log in again or refresh it before it expires')
  if (c.kind === 'token' && c.app !== app) throw new VvmError('UNAUTHORIZED', `the token is for app ${c.app}, not ${app}`)
  return c
}
