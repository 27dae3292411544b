// HTTP routes (Voedger API v2, and v1 commands) on uWebSockets.js. The main thread parses the
// route, checks sizes and names, authenticates the bearer token (401; src/main/auth), applies
// rate limits and hands the request on without blocking; bodies travel as raw bytes and are
// parsed by the processor, whose authorize stage decides 403.
//
// uWS rules followed here: everything needed from `req` is copied before returning (it is
// stack-allocated); every response answered later has `onAborted`; writes are corked.

import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js'
import type { AppDef } from '../shared/appdef/types.js'
import { Op, ReplyFormat, type EngineRequest, type OpCode, type ReadParams, type ReplyFormatCode } from '../shared/engine-messages.js'
import { BadRequestError, NotFoundError, VvmError, toVvmError } from '../shared/errors.js'
import { renderError } from '../shared/reply.js'
import type { ReplySink } from './partitions.js'
import type { Dispatcher } from './dispatcher.js'
import type { ServerMetrics } from './metrics.js'
import type { Authenticator, Caller } from './auth/authenticator.js'
import { appOfHost, hostOf } from './domain-apps.js'
import { SseSink, sseResumeFrom, type SseOptions } from './sse.js'

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK', 201: '201 Created', 400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden',
  404: '404 Not Found', 405: '405 Method Not Allowed', 409: '409 Conflict', 410: '410 Gone', 413: '413 Payload Too Large',
  429: '429 Too Many Requests', 500: '500 Internal Server Error', 503: '503 Service Unavailable',
}
const statusLine = (s: number): string => STATUS_TEXT[s] ?? `${s} Status`
const WSID_RE = /^[1-9]\d{0,15}$/
const ID_RE = WSID_RE
const QNAME_RE = /^[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*$/

/** One HTTP response waiting for its reply; never written after the client went away. */
class HttpSink implements ReplySink {
  aborted = false
  constructor(
    private readonly res: HttpResponse, private readonly route: string, private readonly startedMs: number,
    private readonly metrics: ServerMetrics, private readonly serving: () => boolean,
  ) {
    res.onAborted(() => { this.aborted = true })
  }

  reply(status: number, body: Uint8Array, retryAfterS: number): void {
    this.metrics.recordReply(this.route, status, this.startedMs)
    if (status >= 400) this.metrics.errors.inc({ code: errorCodeOf(body) })
    if (this.aborted) return
    this.aborted = true
    // While stopping, every reply closes its connection so that no client sends on a socket
    // that is about to close.
    writeReply(this.res, status, body, retryAfterS, undefined, !this.serving())
  }
}

/** The `code` of an error body (JSON v2 or v1); read only on the error path. */
function errorCodeOf(body: Uint8Array): string {
  try {
    const v = JSON.parse(Buffer.from(body).toString('utf8')) as { code?: unknown; 'sys.Error'?: unknown }
    return typeof v.code === 'string' ? v.code : v['sys.Error'] !== undefined ? 'V1_ERROR' : 'UNKNOWN'
  } catch {
    return 'UNKNOWN'
  }
}

export function writeReply(res: HttpResponse, status: number, body: Uint8Array, retryAfterS: number, allow?: string, closeConnection = false): void {
  res.cork(() => {
    res.writeStatus(statusLine(status)).writeHeader('content-type', 'application/json')
    if (retryAfterS > 0) res.writeHeader('retry-after', String(retryAfterS))
    if (allow !== undefined) res.writeHeader('allow', allow)
    // uWS closes the socket after `end(…, true)` but does not say so; the header tells the
    // client not to send its next request on this connection.
    if (closeConnection) res.writeHeader('connection', 'close')
    res.end(body, closeConnection)
  })
}

export function writeError(res: HttpResponse, format: ReplyFormatCode, err: unknown, allow?: string, closeConnection = false, metrics?: ServerMetrics, route = 'other', startedMs = performance.now()): void {
  const e = toVvmError(err)
  if (metrics !== undefined) {
    metrics.recordReply(route, e.status, startedMs)
    metrics.errors.inc({ code: e.code })
  }
  writeReply(res, e.status, renderError(format, e), e.retryAfterS ?? 0, allow, closeConnection || e.code === 'SHUTTING_DOWN')
}

interface Route {
  method: string
  op: OpCode
  /** Which definition map the qname must be in. */
  kind: 'command' | 'query' | 'table' | 'view'
  hasId: boolean
  hasBody: boolean
}

const V2_ROUTES: Record<string, Route[]> = {
  commands: [{ method: 'post', op: Op.COMMAND, kind: 'command', hasId: false, hasBody: true }],
  docs: [{ method: 'post', op: Op.DOC_CREATE, kind: 'table', hasId: false, hasBody: true }],
  'docs/id': [
    { method: 'get', op: Op.DOC_GET, kind: 'table', hasId: true, hasBody: false },
    { method: 'patch', op: Op.DOC_UPDATE, kind: 'table', hasId: true, hasBody: true },
    { method: 'delete', op: Op.DOC_DEACTIVATE, kind: 'table', hasId: true, hasBody: false },
  ],
  cdocs: [{ method: 'get', op: Op.CDOCS, kind: 'table', hasId: false, hasBody: false }],
  views: [{ method: 'get', op: Op.VIEW, kind: 'view', hasId: false, hasBody: false }],
  queries: [{ method: 'get', op: Op.QUERY, kind: 'query', hasId: false, hasBody: false }],
}

export interface HttpApiOptions {
  apps: ReadonlyMap<string, AppDef>
  dispatcher: Dispatcher
  bodyBytesMax: number
  idempotencyKeyBytesMax: number
  /** False while starting or shutting down: /readyz answers 503 and requests get 503. */
  serving: () => boolean
  metrics: ServerMetrics
  auth: Authenticator
  /** Host → app (`--domain-app`): on a bound host `/api/v2/workspaces/…` names that app (domain-apps.ts). */
  domainApps?: ReadonlyMap<string, string>
  /** Server-Sent Events subscriptions (sse.ts); without it `Accept: text/event-stream` is ignored. */
  subscriptions?: SseOptions
}

/** A sink other than the plain reply (SSE), made once the caller is known. */
type MakeSink = (caller: Caller) => ReplySink & { aborted: boolean }

export function registerHttpApi(app: TemplatedApp, o: HttpApiOptions): void {
  // Alive: the process answers. Ready: it serves requests (started, not stopping).
  app.get('/healthz', (res) => writeReply(res, 200, new TextEncoder().encode('{"status":"ok"}'), 0))
  app.get('/readyz', (res) => {
    const ok = o.serving()
    writeReply(res, ok ? 200 : 503, new TextEncoder().encode(JSON.stringify({ status: ok ? 'ready' : 'unavailable' })), ok ? 0 : 1)
  })

  const v2 = '/api/v2/apps/:owner/:app/workspaces/:wsid'
  for (const [path, routes] of Object.entries(V2_ROUTES)) {
    const pattern = path === 'docs/id' ? `${v2}/docs/:qname/:id` : `${v2}/${path}/:qname`
    const route = `v2/${path}`
    app.any(pattern, (res, req) => handleV2(res, req, routes, o, route))
  }
  // The same routes without owner/app, for hosts bound to an app (docs/operations.md).
  const domainApps = o.domainApps ?? new Map<string, string>()
  for (const [path, routes] of Object.entries(V2_ROUTES)) {
    const short = '/api/v2/workspaces/:wsid'
    const pattern = path === 'docs/id' ? `${short}/docs/:qname/:id` : `${short}/${path}/:qname`
    const route = `v2/${path}`
    app.any(pattern, (res, req) => handleV2(res, req, routes, o, route, domainApps))
  }
  app.any('/api/:owner/:app/:wsid/:func', (res, req) => handleV1(res, req, o))
  app.any('/*', (res, req) => {
    const v1 = req.getUrl().startsWith('/api/') && !req.getUrl().startsWith('/api/v2/')
    writeError(res, v1 ? ReplyFormat.JSON_V1 : ReplyFormat.JSON_V2, new NotFoundError(`no route for ${req.getMethod().toUpperCase()} ${req.getUrl()}`), undefined, false, o.metrics)
  })
}

/** `domainApps` given: the short form, whose app comes from the Host header (parameters shift by two). */
function handleV2(res: HttpResponse, req: HttpRequest, routes: readonly Route[], o: HttpApiOptions, routeName: string, domainApps?: ReadonlyMap<string, string>): void {
  const startedMs = performance.now()
  const format = ReplyFormat.JSON_V2
  const method = req.getMethod()
  const route = routes.find((r) => r.method === method)
  if (route === undefined) {
    const allow = routes.map((r) => r.method.toUpperCase()).join(', ')
    writeError(res, format, new VvmError('METHOD_NOT_ALLOWED', `${method.toUpperCase()} is not allowed here (allowed: ${allow})`), allow, false, o.metrics, routeName, startedMs)
    return
  }
  try {
    const at = domainApps === undefined ? 2 : 0
    const appQName = domainApps === undefined ? `${req.getParameter(0)}/${req.getParameter(1)}` : appOfHost(domainApps, req.getHeader('host'))
    if (appQName === undefined) throw new NotFoundError(`no app is bound to host '${hostOf(req.getHeader('host'))}': use /api/v2/apps/{owner}/{app}/workspaces/…`)
    const wsid = parseWsid(req.getParameter(at)!)
    const qname = parseQName(req.getParameter(at + 1)!)
    const id = route.hasId ? parseId(req.getParameter(at + 2)!) : 0
    const params = route.hasBody ? null : parseReadParams(req.getQuery() ?? '')
    const request = baseRequest(o, route.op, format, appQName, wsid, qname, id, params, route.kind)
    request.idempotencyKey = route.op === Op.COMMAND ? idempotencyHeader(req, o) : null
    const address = (): string => remoteAddress(res)
    if (!o.serving()) throw new VvmError('SHUTTING_DOWN', 'the server is not serving now', { retryAfterS: 1 })
    const ctx = { route: routeName, startedMs, url: urlOf(req) }
    const so = o.subscriptions
    if (method === 'get' && so !== undefined && req.getHeader('accept').includes('text/event-stream')) {
      // A subscription to the same read (sse.ts); its events are JSON v2.
      request.op = Op.SUBSCRIBE
      request.body = { resumeFrom: sseResumeFrom(req.getHeader('last-event-id'), req.getQuery() ?? '') }
      const partition = so.partitionOf(appQName, wsid)
      const sse: MakeSink = (c) => {
        const sink = new SseSink(res, `${routeName}/sse`, startedMs, o.metrics, so, appQName, partition, (status, body, retryAfterS) => writeReply(res, status, body, retryAfterS))
        sink.expiresAtMs = c.expiresAtMs
        return sink
      }
      admitAndSubmit(res, req, o, request, false, address, format, { ...ctx, route: `${routeName}/sse` }, sse)
      return
    }
    admitAndSubmit(res, req, o, request, route.hasBody, address, format, ctx)
  } catch (err) {
    writeError(res, format, err, undefined, false, o.metrics, routeName, startedMs)
  }
}

function handleV1(res: HttpResponse, req: HttpRequest, o: HttpApiOptions): void {
  const format = ReplyFormat.JSON_V1
  const ctx = { route: 'v1/commands', startedMs: performance.now(), url: urlOf(req) }
  try {
    const func = req.getParameter(3)!
    if (!func.startsWith('c.')) throw new NotFoundError(`v1 function '${func}' is not served: v1 supports commands (c.pkg.Name); use /api/v2 for queries`)
    if (req.getMethod() !== 'post') {
      writeError(res, format, new VvmError('METHOD_NOT_ALLOWED', 'v1 commands are POST'), 'POST', false, o.metrics, ctx.route, ctx.startedMs)
      return
    }
    const appQName = `${req.getParameter(0)}/${req.getParameter(1)}`
    const request = baseRequest(o, Op.COMMAND, format, appQName, parseWsid(req.getParameter(2)!), parseQName(func.slice(2)), 0, null, 'command')
    request.idempotencyKey = idempotencyHeader(req, o)
    if (!o.serving()) throw new VvmError('SHUTTING_DOWN', 'the server is not serving now', { retryAfterS: 1 })
    admitAndSubmit(res, req, o, request, true, () => remoteAddress(res), format, ctx)
  } catch (err) {
    writeError(res, format, err, undefined, false, o.metrics, ctx.route, ctx.startedMs)
  }
}

/**
 * The client's address, asked of the socket only when a rate by address needs it: it is a
 * getpeername system call per request.
 */
function remoteAddress(res: HttpResponse): string {
  return Buffer.from(res.getRemoteAddressAsText()).toString()
}

function baseRequest(
  o: HttpApiOptions, op: OpCode, format: ReplyFormatCode, app: string, wsid: number, qname: string, id: number,
  params: ReadParams | null, kind: Route['kind'],
): EngineRequest {
  const def = o.apps.get(app)
  if (def === undefined) throw new NotFoundError(`app ${app} is not deployed`)
  const known = kind === 'command' ? def.commands.has(qname) : kind === 'query' ? def.queries.has(qname) : kind === 'table' ? def.tables.has(qname) : def.views.has(qname)
  if (!known) throw new NotFoundError(`${kind} ${qname} is not defined in app ${app}`, qname)
  return { reqId: 0, op, format, app, wsid, qname, id, idempotencyKey: null, body: undefined, params }
}

/**
 * Authenticates (401), sets the request's principal, takes the rate (429) and submits. A token
 * seen before is known at once and all of it happens before the body is read; a new token is
 * verified while the body arrives.
 */
function admitAndSubmit(
  res: HttpResponse, req: HttpRequest, o: HttpApiOptions, request: EngineRequest, hasBody: boolean, address: () => string, format: ReplyFormatCode, ctx: RouteContext,
  makeSink?: MakeSink,
): void {
  const caller = o.auth.fromAuthorizationHeader(req.getHeader('authorization'), request.app)
  const admit = (c: Caller): void => {
    request.principal = o.auth.principalFor(c, request)
    o.dispatcher.checkRate(request, address)
  }
  if (!(caller instanceof Promise)) {
    admit(caller)
    const sinkOf = makeSink === undefined ? undefined : () => makeSink(caller)
    if (hasBody) readBody(res, req, o, format, ctx, (body) => submit(res, o, request, body, format, ctx, sinkOf))
    else submit(res, o, request, undefined, format, ctx, sinkOf)
    return
  }
  // Settled at once, so that a rejection is not unhandled while the body still arrives.
  const settled = caller.then((c) => ({ c }), (err: unknown) => ({ err }))
  const afterAuth = (body: Uint8Array | undefined): void => {
    let aborted = false
    res.onAborted(() => { aborted = true })
    void settled.then((r) => {
      if (aborted) return
      try {
        if ('err' in r) throw r.err
        admit(r.c)
      } catch (err) {
        writeError(res, format, err, undefined, false, o.metrics, ctx.route, ctx.startedMs)
        return
      }
      submit(res, o, request, body, format, ctx, makeSink === undefined ? undefined : () => makeSink(r.c))
    })
  }
  if (hasBody) readBody(res, req, o, format, ctx, afterAuth)
  else afterAuth(undefined)
}

export interface RouteContext {
  route: string
  startedMs: number
  /** Path and query as received, for redirects to the node that serves the partition. */
  url: string
}

function submit(
  res: HttpResponse, o: HttpApiOptions, request: EngineRequest, body: Uint8Array | undefined, format: ReplyFormatCode, ctx: RouteContext,
  makeSink?: () => ReplySink & { aborted: boolean },
): void {
  if (makeSink === undefined) request.body = body
  let sink: (ReplySink & { aborted: boolean }) | undefined
  try {
    sink = makeSink === undefined ? new HttpSink(res, ctx.route, ctx.startedMs, o.metrics, o.serving) : makeSink()
    o.dispatcher.submit(request, sink)
  } catch (err) {
    if (sink?.aborted === true) return
    if (sink !== undefined) {
      sink.aborted = true
      // An SSE sink holds a place among the server's subscriptions until its reply.
      if (sink instanceof SseSink) o.subscriptions!.hub.unreserve()
    }
    if (err instanceof VvmError && err.code === 'MOVED') {
      const location = String((err.data as { location: string }).location).replace(/\/$/, '') + ctx.url
      o.metrics.recordReply(ctx.route, 307, ctx.startedMs)
      res.cork(() => res.writeStatus('307 Temporary Redirect').writeHeader('location', location).writeHeader('content-type', 'application/json').end(renderError(format, err)))
      return
    }
    writeError(res, format, err, undefined, false, o.metrics, ctx.route, ctx.startedMs)
  }
}

/** Collects the body up to `bodyBytesMax`; past it answers 413 and closes the connection. */
export function readBody(res: HttpResponse, req: HttpRequest, o: HttpApiOptions, format: ReplyFormatCode, ctx: RouteContext, done: (body: Uint8Array) => void): void {
  const declared = Number(req.getHeader('content-length') || '0')
  if (declared > o.bodyBytesMax) {
    writeError(res, format, new VvmError('TOO_LARGE', `the body of ${declared} bytes exceeds the limit of ${o.bodyBytesMax} bytes`), undefined, true, o.metrics, ctx.route, ctx.startedMs)
    return
  }
  let chunks: Buffer[] = []
  let total = 0
  let failed = false
  res.onAborted(() => { failed = true })
  res.onData((chunk, isLast) => {
    if (failed) return
    total += chunk.byteLength
    if (total > o.bodyBytesMax) {
      failed = true
      chunks = []
      writeError(res, format, new VvmError('TOO_LARGE', `the body exceeds the limit of ${o.bodyBytesMax} bytes`), undefined, true, o.metrics, ctx.route, ctx.startedMs)
      return
    }
    // The chunk's memory is reused by uWS after this call: copy it.
    chunks.push(Buffer.from(Buffer.from(chunk)))
    if (isLast) done(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total))
  })
}

function urlOf(req: HttpRequest): string {
  const q = req.getQuery()
  return q ? `${req.getUrl()}?${q}` : req.getUrl()
}

function idempotencyHeader(req: HttpRequest, o: HttpApiOptions): string | null {
  const key = req.getHeader('idempotency-key')
  if (key === '') return null
  if (key.length > o.idempotencyKeyBytesMax || !/^[\x21-\x7e]+$/.test(key)) {
    throw new BadRequestError(`Idempotency-Key must be 1..${o.idempotencyKeyBytesMax} printable ASCII characters`)
  }
  return key
}

function parseWsid(s: string): number {
  if (!WSID_RE.test(s) || !Number.isSafeInteger(Number(s))) throw new BadRequestError(`workspace id '${s}' is invalid: expected a positive integer`)
  return Number(s)
}

function parseId(s: string): number {
  if (!ID_RE.test(s) || !Number.isSafeInteger(Number(s))) throw new BadRequestError(`document id '${s}' is invalid: expected a positive integer`)
  return Number(s)
}

function parseQName(s: string): string {
  if (!QNAME_RE.test(s)) throw new BadRequestError(`'${s}' is not a qualified name pkg.Name`)
  return s
}

function parseReadParams(query: string): ReadParams {
  const q = new URLSearchParams(query)
  const p: ReadParams = {}
  const json = (name: string): unknown => {
    const v = q.get(name)
    if (v === null) return undefined
    try {
      return JSON.parse(v)
    } catch {
      throw new BadRequestError(`${name} is not valid JSON`)
    }
  }
  const int = (name: string): number | undefined => {
    const v = q.get(name)
    if (v === null) return undefined
    if (!/^\d{1,9}$/.test(v)) throw new BadRequestError(`${name} '${v}' is invalid: expected a non-negative integer`)
    return Number(v)
  }
  const where = json('where')
  if (where !== undefined) p.where = where
  const args = json('args')
  if (args !== undefined) p.args = args
  const limit = int('limit')
  if (limit !== undefined) p.limit = limit
  const skip = int('skip')
  if (skip !== undefined) p.skip = skip
  const order = q.get('order')
  if (order !== null) p.order = order
  const keys = q.get('keys')
  if (keys !== null) p.keys = keys
  return p
}
