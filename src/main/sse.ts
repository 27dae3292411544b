// Subscriptions over HTTP for browsers: Server-Sent Events (docs/subscriptions.md#sse). A GET of
// a doc, cdocs, view or query route with `Accept: text/event-stream` subscribes to that read;
// the response stays open and carries `snapshot` (or `resume`), `diff` and `end` events, each
// with the offset as its event id, so that EventSource's own reconnect (`Last-Event-ID`)
// resumes without gaps. A comment line every SSE_HEARTBEAT_MS keeps proxies (and uWS's idle
// timer) from closing a quiet stream, and checks the token's expiry.

import type { HttpResponse } from 'uWebSockets.js'
import { VvmError } from '../shared/errors.js'
import type { ReplySink } from './partitions.js'
import type { ServerMetrics } from './metrics.js'
import { PendingDiff, resyncError, type Push, type Subscriber, type SubscriptionHub } from './subscriptions.js'
import { endOf, type Diff } from '../shared/protocol/index.js'

export interface SseOptions {
  hub: SubscriptionHub
  partitionOf: (app: string, wsid: number) => number
  pendingOpsMax: number
}

/** Why 5 s: uWS closes an HTTP socket idle for 10 s; proxies commonly allow 30–60 s. */
const SSE_HEARTBEAT_MS = 5000
const HEARTBEAT = Buffer.from(': keepalive\n\n')

const streams = new Set<SseSubscription>()
let heartbeat: NodeJS.Timeout | undefined

function beat(): void {
  const now = Date.now()
  for (const s of streams) {
    if (s.expiresAtMs <= now) s.finish(new VvmError('TOKEN_EXPIRED', 'the token of this subscription has expired: subscribe again with a fresh token (Last-Event-ID resumes it)'))
    else s.write(HEARTBEAT)
  }
}

function track(s: SseSubscription): void {
  streams.add(s)
  if (heartbeat === undefined) {
    heartbeat = setInterval(beat, SSE_HEARTBEAT_MS)
    heartbeat.unref()
  }
}

function untrack(s: SseSubscription): void {
  streams.delete(s)
  if (streams.size === 0 && heartbeat !== undefined) {
    clearInterval(heartbeat)
    heartbeat = undefined
  }
}

/** Open SSE subscriptions, and the changed rows held back for those that do not read. */
export function sseStats(): { streams: number; pendingOps: number } {
  let pendingOps = 0
  for (const s of streams) pendingOps += s.pendingOps
  return { streams: streams.size, pendingOps }
}

/** `resumeFrom` of an SSE subscribe: the `Last-Event-ID` header (EventSource's reconnect) or `?resumeFrom=`. */
export function sseResumeFrom(lastEventId: string, query: string): number | undefined {
  const v = lastEventId !== '' ? lastEventId : new URLSearchParams(query).get('resumeFrom') ?? ''
  if (v === '') return undefined
  if (!/^\d{1,15}$/.test(v)) throw new VvmError('BAD_REQUEST', `Last-Event-ID / resumeFrom '${v.slice(0, 40)}' is not an offset`)
  return Number(v)
}

/** The reply of the SUBSCRIBE: an error is a plain JSON reply; success opens the event stream. */
export class SseSink implements ReplySink {
  aborted = false
  private sub: SseSubscription | undefined
  expiresAtMs = Infinity

  constructor(
    private readonly res: HttpResponse, private readonly route: string, private readonly startedMs: number,
    private readonly metrics: ServerMetrics, private readonly o: SseOptions, private readonly app: string, private readonly partition: number,
    private readonly writeJsonReply: (status: number, body: Uint8Array, retryAfterS: number) => void,
  ) {
    o.hub.reserve()
    res.onAborted(() => {
      this.aborted = true
      this.sub?.closed()
    })
  }

  reply(status: number, body: Uint8Array, retryAfterS: number, groupId?: number): void {
    this.metrics.recordReply(this.route, status, this.startedMs)
    if (status !== 200 || groupId === undefined) {
      this.o.hub.unreserve()
      if (this.aborted) return
      this.aborted = true
      return this.writeJsonReply(status, body, retryAfterS)
    }
    if (this.aborted) {
      this.o.hub.unreserve()
      this.o.hub.release(this.app, this.partition, groupId)
      return
    }
    const snapshot = JSON.parse(Buffer.from(body).toString('utf8')) as { offset: number; resumed: boolean }
    const sub = new SseSubscription(this.res, this.o, this.app, this.partition, groupId, this.expiresAtMs)
    this.sub = sub
    this.res.cork(() => {
      this.res.writeStatus('200 OK')
        .writeHeader('content-type', 'text/event-stream')
        .writeHeader('cache-control', 'no-cache')
        .writeHeader('x-accel-buffering', 'no')
      sub.write(event(snapshot.resumed ? 'resume' : 'snapshot', snapshot.offset, Buffer.from(body).toString('utf8')))
    })
    this.o.hub.add(this.app, this.partition, groupId, sub)
    track(sub)
  }
}

class SseSubscription implements Subscriber {
  private ended = false
  private congested = false
  private pending: PendingDiff | undefined

  constructor(
    private readonly res: HttpResponse, private readonly o: SseOptions, readonly app: string, readonly partition: number,
    readonly groupId: number, public expiresAtMs: number,
  ) {
    res.onWritable(() => {
      this.congested = false
      this.flushPending()
      return !this.congested
    })
  }

  get pendingOps(): number {
    return this.pending?.size ?? 0
  }

  deliver(p: Push): void {
    if (this.ended) return
    const d = p.decoded
    if (d.type === 'end') {
      // The group is gone already: nothing to release.
      this.ended = true
      untrack(this)
      this.endStream(event('end', undefined, p.json))
      return
    }
    if (this.pending === undefined && !this.congested) {
      this.write(event('diff', d.toOffset, p.json))
      return
    }
    this.pending ??= new PendingDiff(this.o.pendingOpsMax)
    if (!this.pending.add(d)) this.finish(resyncError(this.o.pendingOpsMax))
  }

  write(chunk: string | Buffer): void {
    if (this.ended && chunk === HEARTBEAT) return
    this.res.cork(() => {
      if (!this.res.write(chunk)) this.congested = true
    })
  }

  /** Ends the subscription from this side: an end event, the group released, the response ended. */
  finish(e: VvmError): void {
    if (this.ended) return
    this.ended = true
    untrack(this)
    this.o.hub.remove(this.app, this.partition, this.groupId, this)
    this.endStream(event('end', undefined, JSON.stringify(endOf(e))))
  }

  /** The client went away. */
  closed(): void {
    if (this.ended) return
    this.ended = true
    untrack(this)
    this.o.hub.remove(this.app, this.partition, this.groupId, this)
  }

  private flushPending(): void {
    if (this.pending === undefined || this.ended) return
    const d: Diff = this.pending.toDiff()
    this.pending = undefined
    this.write(event('diff', d.toOffset, JSON.stringify(d)))
  }

  private endStream(last: string): void {
    this.pending = undefined
    this.res.cork(() => this.res.end(last))
  }
}

function event(name: string, id: number | undefined, json: string): string {
  return `event: ${name}\n${id === undefined ? '' : `id: ${id}\n`}data: ${json}\n\n`
}
