// The admin dashboard (issue 14): the page at /admin (static files built from admin/ into
// dist/admin/) and its data at /admin/stream (Server-Sent Events, one JSON AdminSnapshot per
// second), both behind the admin token. Off unless `adminToken` is configured: the server then
// registers nothing here and /admin is the API's 404.
//
// The token (docs/admin.md): `Authorization: Bearer <token>` for programs; for a browser,
// `/admin/?token=<token>` once: the server answers 303 to `/admin/` with an HttpOnly,
// SameSite=Strict session cookie (an HMAC of the token, not the token), so the page's assets
// and its EventSource, which cannot set headers, are authorized by the cookie and the token
// leaves the address bar.

import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { hostname } from 'node:os'
import { extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js'
import type { Logger } from 'pino'
import type { AppDef } from '../shared/appdef/types.js'
import { AdminSampler, type SamplerSources, type VvmSources } from './admin-snapshot.js'
import type { EnginePoolRow } from './admin-wire.js'
import type { VvmConfig } from './config.js'
import type { ServerMetrics } from './metrics.js'
import type { PartitionSet } from './partitions.js'
import type { QueryPool } from './query-pool.js'

/** dist/src/main/admin.js → dist/admin/, where `npm run build:admin` puts the page. */
const STATIC_DIR = fileURLToPath(new URL('../../admin/', import.meta.url))
const SNAPSHOT_INTERVAL_MS = 1000
/** Why 16: a dashboard is for the few people running the node; each stream costs one write a second. */
const STREAMS_MAX = 16
/**
 * A client that has not taken a snapshot for this many ticks is closed. While it lags, ticks
 * are skipped for it, so uWS buffers at most the one snapshot that met backpressure.
 */
const STREAM_STALLED_TICKS_MAX = 10
/** Why: EventSource waits this long before reconnecting after the stream ends (a restart). */
const STREAM_RETRY_MS = 2000
/** The built page is a few hundred KiB; these bound what a wrong STATIC_DIR could load. */
const STATIC_BYTES_MAX = 8 * 1024 * 1024
const STATIC_FILES_MAX = 256
const COOKIE_NAME = 'vvm_admin'

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.json': 'application/json', '.map': 'application/json',
  '.woff2': 'font/woff2', '.txt': 'text/plain; charset=utf-8',
}
/** The page loads nothing from outside the server; the browser enforces it. uPlot sets inline styles. */
const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

export interface AdminOptions {
  config: VvmConfig
  apps: ReadonlyMap<string, AppDef>
  appPartitions: ReadonlyMap<string, number>
  partitions: PartitionSet
  queries: QueryPool | undefined
  metrics: ServerMetrics
  serving: () => boolean
  ownerOf?: SamplerSources['ownerOf']
  enginePools?: () => readonly EnginePoolRow[]
  log: Logger
  /** Tests: where the built page is (default dist/admin/). */
  staticDir?: string
  /** Tests: a short interval fills a non-reading client's socket in seconds (default 1000). */
  snapshotIntervalMs?: number
}

export interface AdminDashboard {
  /** The VVM's leadership and problem, known only to it (vvm.ts). */
  attach(vvm: VvmSources): void
  readonly streamsCount: number
  /** Ends every stream and stops the sampling timer. */
  close(): void
}

interface StaticFile {
  body: Buffer
  contentType: string
  etag: string
  cacheControl: string
}

type Auth = 'header' | 'cookie' | 'query' | undefined

export function registerAdmin(app: TemplatedApp, o: AdminOptions): AdminDashboard {
  const token = o.config.adminToken
  if (token === '') throw new Error('registerAdmin needs config.adminToken')
  const session = createHmac('sha256', token).update('vvm admin session v1').digest('hex')
  const files = loadStatic(o.staticDir ?? STATIC_DIR, o.log)
  const sampler = new AdminSampler({
    nodeId: o.config.nodeId || `${hostname()}:${process.pid}`, storage: o.config.storage, ringBytes: o.config.ringBytes,
    queryQueueMax: o.config.queryQueueMax, apps: o.apps, appPartitions: o.appPartitions, partitions: o.partitions,
    queries: o.queries, metrics: o.metrics, serving: o.serving, ownerOf: o.ownerOf, enginePools: o.enginePools,
  })
  const streams = new SnapshotStreams(sampler, o.log, o.snapshotIntervalMs ?? SNAPSHOT_INTERVAL_MS)

  const authorize = (req: HttpRequest): Auth => {
    const header = req.getHeader('authorization')
    if (header.startsWith('Bearer ') && sameSecret(header.slice(7), token)) return 'header'
    const query = req.getQuery('token')
    if (query !== undefined && sameSecret(query, token)) return 'query'
    const cookie = cookieValue(req.getHeader('cookie'), COOKIE_NAME)
    if (cookie !== undefined && sameSecret(cookie, session)) return 'cookie'
    return undefined
  }

  const page = (res: HttpResponse, req: HttpRequest): void => {
    const auth = authorize(req)
    if (auth === undefined) return refuse(res)
    if (auth === 'query') {
      // The token leaves the address bar and history; the cookie carries the session on.
      res.cork(() => res.writeStatus('303 See Other').writeHeader('location', '/admin/')
        .writeHeader('set-cookie', `${COOKIE_NAME}=${session}; Path=/admin; HttpOnly; SameSite=Strict`)
        .writeHeader('cache-control', 'no-store').writeHeader('referrer-policy', 'no-referrer').end())
      return
    }
    const index = files.get('index.html')
    if (index === undefined) {
      res.cork(() => res.writeStatus('503 Service Unavailable').writeHeader('content-type', 'text/plain; charset=utf-8')
        .end('the admin page is not built (npm run build:admin); its data is at /admin/stream\n'))
      return
    }
    serveFile(res, index, '', PAGE_CSP)
  }
  app.get('/admin', page)
  app.get('/admin/', page)
  app.get('/admin/stream', (res, req) => {
    if (authorize(req) === undefined) return refuse(res)
    streams.open(res)
  })
  app.get('/admin/*', (res, req) => {
    if (authorize(req) === undefined) return refuse(res)
    const file = files.get(req.getUrl().slice('/admin/'.length))
    if (file === undefined) {
      res.cork(() => res.writeStatus('404 Not Found').writeHeader('content-type', 'text/plain; charset=utf-8').end('no such file\n'))
      return
    }
    serveFile(res, file, req.getHeader('if-none-match'))
  })

  return {
    attach: (vvm) => sampler.attach(vvm),
    get streamsCount() { return streams.size },
    close: () => streams.close(),
  }
}

/** Equal-length digests, compared in constant time: the comparison reveals nothing of the token. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

function cookieValue(header: string, name: string): string | undefined {
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

function refuse(res: HttpResponse): void {
  res.cork(() => res.writeStatus('401 Unauthorized').writeHeader('www-authenticate', 'Bearer realm="vvm admin"')
    .writeHeader('content-type', 'text/plain; charset=utf-8').writeHeader('cache-control', 'no-store')
    .end('the admin dashboard needs the admin token: open /admin/?token=<token>, or send Authorization: Bearer <token>\n'))
}

function serveFile(res: HttpResponse, f: StaticFile, ifNoneMatch: string, csp?: string): void {
  res.cork(() => {
    res.writeStatus(ifNoneMatch === f.etag ? '304 Not Modified' : '200 OK')
    res.writeHeader('etag', f.etag).writeHeader('cache-control', f.cacheControl)
      .writeHeader('x-content-type-options', 'nosniff').writeHeader('referrer-policy', 'no-referrer')
    if (csp !== undefined) res.writeHeader('content-security-policy', csp)
    if (ifNoneMatch === f.etag) res.endWithoutBody()
    else res.writeHeader('content-type', f.contentType).end(f.body)
  })
}

/**
 * Reads the built page into memory once: requests never touch the filesystem, and a path is
 * only ever a key of this map (no traversal). Vite's hashed assets are immutable; the rest
 * is revalidated.
 */
function loadStatic(dir: string, log: Logger): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>()
  if (!existsSync(join(dir, 'index.html'))) {
    log.warn({ dir }, 'admin page not built (npm run build:admin): /admin answers 503, /admin/stream works')
    return files
  }
  let bytes = 0
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    const rel = path.slice(dir.length).replace(/^[/\\]+/, '').split('\\').join('/')
    const body = readFileSync(path)
    bytes += body.length
    if (files.size >= STATIC_FILES_MAX || bytes > STATIC_BYTES_MAX) throw new Error(`admin page in ${dir} exceeds ${STATIC_FILES_MAX} files or ${STATIC_BYTES_MAX} bytes`)
    files.set(rel, {
      body,
      contentType: CONTENT_TYPES[extname(rel)] ?? 'application/octet-stream',
      etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
      cacheControl: rel.startsWith('assets/') ? 'private, max-age=31536000, immutable' : 'private, no-cache',
    })
  }
  return files
}

/** One open /admin/stream; never written after it was aborted or ended. */
class SnapshotStream {
  done = false
  /** The last write met backpressure and uWS has not drained it yet. */
  private waiting = false
  private stalledTicks = 0

  constructor(readonly res: HttpResponse, private readonly onGone: (s: SnapshotStream) => void) {
    res.onAborted(() => this.gone())
    res.onWritable(() => {
      this.waiting = false
      this.stalledTicks = 0
      return true
    })
  }

  start(first: string): void {
    let ok = false
    this.res.cork(() => {
      this.res.writeStatus('200 OK').writeHeader('content-type', 'text/event-stream').writeHeader('cache-control', 'no-store')
        .writeHeader('x-content-type-options', 'nosniff').writeHeader('x-accel-buffering', 'no')
      ok = this.res.write(`retry: ${STREAM_RETRY_MS}\n\n${first}`)
    })
    this.waiting = !ok
  }

  /** Writes a snapshot, or skips it while the client lags; false: the stream was closed as stalled. */
  send(event: string): boolean {
    if (this.done) return true
    if (this.waiting) {
      if (++this.stalledTicks < STREAM_STALLED_TICKS_MAX) return true
      this.res.close()
      return false
    }
    let ok = false
    this.res.cork(() => { ok = this.res.write(event) })
    this.waiting = !ok
    return true
  }

  end(): void {
    if (this.done) return
    this.res.cork(() => this.res.end(undefined, true))
    this.gone()
  }

  private gone(): void {
    if (this.done) return
    this.done = true
    this.onGone(this)
  }
}

/** The open streams and the one timer that feeds them; the timer runs only while one is open. */
class SnapshotStreams {
  private readonly open_ = new Set<SnapshotStream>()
  private timer: NodeJS.Timeout | undefined
  private last: { event: string; timeMs: number } | undefined
  private closed = false

  constructor(private readonly sampler: AdminSampler, private readonly log: Logger, private readonly intervalMs: number) {}

  get size(): number {
    return this.open_.size
  }

  open(res: HttpResponse): void {
    if (this.closed || this.open_.size >= STREAMS_MAX) {
      const why = this.closed ? 'the server is stopping' : `${STREAMS_MAX} admin streams are open already`
      res.cork(() => res.writeStatus('503 Service Unavailable').writeHeader('retry-after', '5').writeHeader('content-type', 'text/plain; charset=utf-8').end(why + '\n'))
      return
    }
    const s = new SnapshotStream(res, (gone) => this.remove(gone))
    this.open_.add(s)
    // A new page gets the latest snapshot at once rather than after up to a second.
    const fresh = this.last !== undefined && Date.now() - this.last.timeMs < this.intervalMs ? this.last.event : this.sample()
    s.start(fresh)
    this.timer ??= setInterval(() => this.tick(), this.intervalMs).unref()
  }

  private sample(): string {
    const event = `data: ${JSON.stringify(this.sampler.sample())}\n\n`
    this.last = { event, timeMs: Date.now() }
    return event
  }

  private tick(): void {
    let event: string
    try {
      event = this.sample()
    } catch (err) {
      // A view that cannot be drawn must not take the server down; the next tick tries again.
      this.log.error({ err }, 'admin snapshot failed')
      return
    }
    for (const s of [...this.open_]) {
      if (!s.send(event)) this.log.warn('admin stream closed: its client took no snapshot for %d ticks', STREAM_STALLED_TICKS_MAX)
    }
  }

  private remove(s: SnapshotStream): void {
    this.open_.delete(s)
    if (this.open_.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }

  close(): void {
    this.closed = true
    for (const s of [...this.open_]) s.end()
    clearInterval(this.timer)
    this.timer = undefined
  }
}
