// A TemplatedApp that records the routes registered on it and replays them onto real uWS apps.
// HTTPS needs this because uWS keeps routes per app and per SNI domain: every certificate
// generation (frontend.ts) is a new SSLApp with one router for the default certificate and one
// per domain, and each gets the same routes. server.ts registers on the recorder as on any app;
// `listen` and `close` go to the TLS frontend that owns the generations.

import assert from 'node:assert/strict'
import type { HttpRequest, HttpResponse, RecognizedString, TemplatedApp, WebSocketBehavior, us_listen_socket } from 'uWebSockets.js'

type Handler = (res: HttpResponse, req: HttpRequest) => void | Promise<void>
type HttpMethod = 'get' | 'post' | 'options' | 'del' | 'patch' | 'put' | 'head' | 'connect' | 'trace' | 'any'
type Registration =
  | { kind: HttpMethod; pattern: RecognizedString; handler: Handler }
  | { kind: 'ws'; pattern: RecognizedString; behavior: WebSocketBehavior<unknown> }
  | { kind: 'filter'; handler: (res: HttpResponse, count: Number) => void | Promise<void> }

export interface RecorderHost {
  listen(host: string, port: number, cb: (listenSocket: us_listen_socket | false) => void | Promise<void>): void
  close(): void
  /** The apps serving now (publish reaches all of them). */
  servingApps(): readonly TemplatedApp[]
}

export class RouteRecorder implements TemplatedApp {
  private readonly registrations: Registration[] = []
  /** After listen, the generations are built: a route added later would be served by none. */
  private sealed = false

  constructor(private readonly host: RecorderHost) {}

  /** Registers every recorded route on `target`'s current router. */
  replay(target: TemplatedApp): void {
    for (const r of this.registrations) {
      if (r.kind === 'ws') target.ws(r.pattern, r.behavior)
      else if (r.kind === 'filter') target.filter(r.handler)
      else target[r.kind](r.pattern, r.handler)
    }
  }

  private add(r: Registration): this {
    assert(!this.sealed, 'routes must be registered before listen (the TLS frontend has replayed them)')
    this.registrations.push(r)
    return this
  }

  get(pattern: RecognizedString, handler: Handler): this { return this.add({ kind: 'get', pattern, handler }) }
  post(pattern: RecognizedString, handler: Handler): this { return this.add({ kind: 'post', pattern, handler }) }
  options(pattern: RecognizedString, handler: Handler): this { return this.add({ kind: 'options', pattern, handler }) }
  del(pattern: RecognizedString, handler: Handler): this { return this.add({ kind: 'del', pattern, handler }) }
  patch(pattern: RecognizedString, handler: Handler): this { return this.add({ kind: 'patch', pattern, handler }) }
  put(pattern: RecognizedString, handler: Handler): this { return this.add({ kind: 'put', pattern, handler }) }
  head(pattern: RecognizedString, handler: Handler): this { return this.add({ kind: 'head', pattern, handler }) }
  connect(pattern: RecognizedString, handler: Handler): this { return this.add({ kind: 'connect', pattern, handler }) }
  trace(pattern: RecognizedString, handler: Handler): this { return this.add({ kind: 'trace', pattern, handler }) }
  any(pattern: RecognizedString, handler: Handler): this { return this.add({ kind: 'any', pattern, handler }) }
  ws<UserData>(pattern: RecognizedString, behavior: WebSocketBehavior<UserData>): this {
    return this.add({ kind: 'ws', pattern, behavior: behavior as WebSocketBehavior<unknown> })
  }
  filter(handler: (res: HttpResponse, count: Number) => void | Promise<void>): this { return this.add({ kind: 'filter', handler }) }

  listen(host: RecognizedString, port: number, cb: (listenSocket: us_listen_socket | false) => void | Promise<void>): this
  listen(port: number, cb: (listenSocket: us_listen_socket | false) => void | Promise<void>): this
  listen(port: number, options: number, cb: (listenSocket: us_listen_socket | false) => void | Promise<void>): this
  listen(a: RecognizedString | number, b: number | ((s: us_listen_socket | false) => void | Promise<void>), c?: (s: us_listen_socket | false) => void | Promise<void>): this {
    this.sealed = true
    if (typeof a === 'number') this.host.listen('', a, (typeof b === 'function' ? b : c)!)
    else this.host.listen(String(a), b as number, c!)
    return this
  }

  close(): this {
    this.host.close()
    return this
  }

  publish(topic: RecognizedString, message: RecognizedString, isBinary?: boolean, compress?: boolean): boolean {
    let published = false
    for (const app of this.host.servingApps()) published = app.publish(topic, message, isBinary, compress) || published
    return published
  }

  numSubscribers(topic: RecognizedString): number {
    return this.host.servingApps().reduce((n, app) => n + app.numSubscribers(topic), 0)
  }

  listen_unix(): this { throw new Error('HTTPS listens on --https-port, not on a unix socket') }
  addServerName(): this { throw new Error('server names are managed by the TLS frontend (src/main/tls)') }
  removeServerName(): this { throw new Error('server names are managed by the TLS frontend (src/main/tls)') }
  missingServerName(): this { throw new Error('server names are managed by the TLS frontend (src/main/tls)') }
  domain(): this { throw new Error('routes are served on every domain; per-domain routes are not supported with TLS') }
}
