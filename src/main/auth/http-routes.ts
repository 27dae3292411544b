// Logins and tokens over HTTP (Voedger API v2 style):
//   POST /api/v2/apps/{owner}/{app}/users          {login, password} → 201 {login}
//   POST /api/v2/apps/{owner}/{app}/auth/login     {login, password} → 200 {token, expiresAt}
//   POST /api/v2/apps/{owner}/{app}/auth/refresh   Authorization: Bearer → 200 {token, expiresAt}
// A wrong login and a wrong password get the same 401. Attempts are token buckets per login and
// per client address (429 with Retry-After), taken before any password is hashed. Passwords and
// tokens are never logged; failed logins are logged with login and address.

import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js'
import type { Logger } from 'pino'
import type { Rate } from '../../shared/appdef/types.js'
import { ReplyFormat } from '../../shared/engine-messages.js'
import { NotFoundError, RateLimitedError, VvmError } from '../../shared/errors.js'
import { readBody, writeError, writeReply, type HttpApiOptions } from '../http-api.js'
import type { RateLimiter } from '../rate-limiter.js'
import type { Authenticator } from './authenticator.js'
import { parseCredentials, type LoginStore } from './logins.js'

/** Why 4 KiB: a login and a password of at most 1024 characters, as JSON. */
const AUTH_BODY_BYTES_MAX = 4096

export interface AuthRoutesOptions {
  http: HttpApiOptions
  auth: Authenticator
  logins: LoginStore
  /** Its own limiter: login buckets never evict the functions' rate buckets. */
  limiter: RateLimiter
  perLogin: Rate
  perAddress: Rate
  log: Logger
}

interface Attempt {
  app: string
  body: Uint8Array | undefined
  authorization: string
  address: string
}

type Action = (a: Attempt, o: AuthRoutesOptions) => Promise<{ status: number; body: unknown }>

export function registerAuthRoutes(app: TemplatedApp, o: AuthRoutesOptions): void {
  const base = '/api/v2/apps/:owner/:app'
  app.any(`${base}/users`, (res, req) => handle(res, req, o, 'v2/users', true, signUp))
  app.any(`${base}/auth/login`, (res, req) => handle(res, req, o, 'v2/auth/login', true, logIn))
  app.any(`${base}/auth/refresh`, (res, req) => handle(res, req, o, 'v2/auth/refresh', false, refresh))
}

function handle(res: HttpResponse, req: HttpRequest, o: AuthRoutesOptions, route: string, hasBody: boolean, action: Action): void {
  const startedMs = performance.now()
  const format = ReplyFormat.JSON_V2
  const metrics = o.http.metrics
  if (req.getMethod() !== 'post') {
    writeError(res, format, new VvmError('METHOD_NOT_ALLOWED', `${req.getMethod().toUpperCase()} is not allowed here (allowed: POST)`), 'POST', false, metrics, route, startedMs)
    return
  }
  try {
    const appQName = `${req.getParameter(0)}/${req.getParameter(1)}`
    if (!o.http.apps.has(appQName)) throw new NotFoundError(`app ${appQName} is not deployed`)
    if (!o.auth.enabled) throw new NotFoundError('authentication is off (--auth off): there are no logins or tokens')
    if (!o.http.serving()) throw new VvmError('SHUTTING_DOWN', 'the server is not serving now', { retryAfterS: 1 })
    const authorization = req.getHeader('authorization')
    const address = Buffer.from(res.getRemoteAddressAsText()).toString()
    const run = (body: Uint8Array | undefined): void => {
      let aborted = false
      res.onAborted(() => { aborted = true })
      action({ app: appQName, body, authorization, address }, o).then(
        (r) => {
          if (aborted) return
          metrics.recordReply(route, r.status, startedMs)
          writeReply(res, r.status, Buffer.from(JSON.stringify(r.body)), 0)
        },
        (err: unknown) => {
          if (aborted) return
          if (!(err instanceof VvmError)) o.log.error({ err, route }, 'auth: internal error')
          writeError(res, format, err, undefined, false, metrics, route, startedMs)
        },
      )
    }
    if (!hasBody) run(undefined)
    else readBody(res, req, { ...o.http, bodyBytesMax: Math.min(o.http.bodyBytesMax, AUTH_BODY_BYTES_MAX) }, format, { route, startedMs, url: '' }, run)
  } catch (err) {
    writeError(res, format, err, undefined, false, metrics, route, startedMs)
  }
}

/** One token from a bucket, or 429 without naming a function. */
function take(o: AuthRoutesOptions, key: string, rate: Rate, what: string): void {
  try {
    o.limiter.take(key, rate, what)
  } catch (err) {
    if (!(err instanceof RateLimitedError)) throw err
    throw new RateLimitedError(`too many attempts ${what}: at most ${rate.count} per ${rate.perSeconds} s`, err.retryAfterS ?? 1)
  }
}

const signUp: Action = async (a, o) => {
  take(o, `addr|${a.address}`, o.perAddress, 'from this address')
  const c = parseCredentials(a.body!)
  await o.logins.create(a.app, c)
  o.log.info({ app: a.app, login: c.login }, 'login created')
  return { status: 201, body: { login: c.login } }
}

const logIn: Action = async (a, o) => {
  take(o, `addr|${a.address}`, o.perAddress, 'from this address')
  const c = parseCredentials(a.body!)
  take(o, `login|${a.app}|${c.login}`, o.perLogin, 'for this login')
  if (!(await o.logins.check(a.app, c))) {
    o.log.info({ app: a.app, login: c.login, address: a.address }, 'login failed')
    throw new VvmError('UNAUTHORIZED', 'wrong login or password')
  }
  return { status: 200, body: await o.auth.issue(c.login, a.app) }
}

/** A fresh token for a valid one: same login, app and signed workspace roles, a new expiry. */
const refresh: Action = async (a, o) => {
  const caller = await o.auth.fromAuthorizationHeader(a.authorization, a.app)
  if (caller.kind !== 'token') throw new VvmError('UNAUTHORIZED', 'refresh needs a valid token: Authorization: Bearer <token>')
  return { status: 200, body: await o.auth.issue(caller.login, a.app, caller.workspaceRoles) }
}
