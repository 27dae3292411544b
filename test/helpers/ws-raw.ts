// A raw binary-protocol client for tests: frames in, frames out, no SDK logic, so tests see
// exactly what the server sends (and can send what no SDK would).

import WebSocket from 'ws'
import {
  FrameType, PROTOCOL_VERSIONS, decodeServerFrame, encodeHello, encodeRequest, type ServerFrame, type WireRequest,
} from '../../src/shared/protocol/index.js'

export type Reply = Extract<ServerFrame, { type: typeof FrameType.REPLY }>

export interface Closed {
  code: number
  reason: string
}

export class RawWs {
  readonly frames: ServerFrame[] = []
  readonly closed: Promise<Closed>
  closeInfo: Closed | undefined
  /** REPLY frames in `frames` (kept so that waiting for n replies is not quadratic). */
  private replyCount = 0
  private waiters: (() => void)[] = []
  private wakeScheduled = false

  private constructor(readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() }
        resolve(this.closeInfo)
        this.wake()
      })
    })
    ws.on('error', () => { /* the close event carries what the tests check */ })
    ws.on('message', (data: Buffer) => {
      const f = decodeServerFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
      this.frames.push(f)
      if (f.type === FrameType.REPLY) this.replyCount++
      // Waiters for many replies are woken once per burst, not per frame.
      if (this.waiters.length > 0 && !this.wakeScheduled) {
        this.wakeScheduled = true
        setImmediate(() => { this.wakeScheduled = false; this.wake() })
      }
    })
  }

  static async open(port: number, path = '/api/ws'): Promise<RawWs> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`)
    const raw = new RawWs(ws)
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    return raw
  }

  /** Opens and says HELLO; resolves with the WELCOME. */
  static async hello(port: number): Promise<{ raw: RawWs; welcome: Extract<ServerFrame, { type: typeof FrameType.WELCOME }> }> {
    const raw = await RawWs.open(port)
    raw.send(encodeHello(PROTOCOL_VERSIONS, null, { client: 'test' }))
    const f = await raw.next()
    if (f.type !== FrameType.WELCOME) throw new Error(`expected WELCOME, got ${JSON.stringify(f)}`)
    return { raw, welcome: f }
  }

  send(bytes: Uint8Array | string): void {
    this.ws.send(bytes)
  }

  request(r: Partial<WireRequest> & Pick<WireRequest, 'reqId' | 'op' | 'qname'>): void {
    this.send(encodeRequest({ app: 'demo/bank', wsid: 1, docId: 0, body: null, params: null, idempotencyKey: null, ...r }))
  }

  private wake(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  private async until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!cond()) {
      if (this.closeInfo !== undefined) throw new Error(`closed (${this.closeInfo.code} ${this.closeInfo.reason}) while waiting for ${what}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timeout waiting for ${what}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.waiters.push(() => { clearTimeout(t); resolve() })
      })
    }
  }

  /** The next frame not yet taken. */
  async next(timeoutMs = 10_000): Promise<ServerFrame> {
    await this.until(() => this.frames.length > 0, timeoutMs, 'a frame')
    const f = this.frames.shift()!
    if (f.type === FrameType.REPLY) this.replyCount--
    return f
  }

  /** Waits for `n` REPLY frames (taking them) and returns them by request id, in arrival order. */
  async replies(n: number, timeoutMs = 30_000): Promise<Reply[]> {
    await this.until(() => this.replyCount >= n, timeoutMs, `${n} replies`)
    const out: Reply[] = []
    const rest: ServerFrame[] = []
    for (const f of this.frames) {
      if (f.type === FrameType.REPLY && out.length < n) out.push(f)
      else rest.push(f)
    }
    this.frames.splice(0, this.frames.length, ...rest)
    this.replyCount -= out.length
    return out
  }

  async reply(reqId: number, timeoutMs = 10_000): Promise<Reply> {
    let found: Reply | undefined
    await this.until(() => {
      const i = this.frames.findIndex((f) => f.type === FrameType.REPLY && f.reqId === reqId)
      if (i >= 0) {
        found = this.frames.splice(i, 1)[0] as Reply
        this.replyCount--
      }
      return found !== undefined
    }, timeoutMs, `the reply to ${reqId}`)
    return found!
  }

  close(): Promise<Closed> {
    if (this.closeInfo === undefined) this.ws.close(1000)
    return this.closed
  }
}

/** Figures of the binary protocol from the server's metrics registry. */
export function wsMetrics(render: string): { connections: number; inflight: number; closed: Record<string, number> } {
  const num = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(render)?.[1] ?? NaN)
  const closed: Record<string, number> = {}
  for (const m of render.matchAll(/^vvm_ws_closed_total\{code="(\d+)"\} (\d+)$/gm)) closed[m[1]!] = Number(m[2])
  return { connections: num('vvm_ws_connections'), inflight: num('vvm_ws_requests_in_flight'), closed }
}
