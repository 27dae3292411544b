// HTTP/1.1 over plain `node:net` sockets, keep-alive and pipelined. Why not fetch/undici:
// undici is not importable on its own here (Node ships it only as `fetch`, which cannot
// pipeline), and a load generator must be cheaper than the server it measures — like wrk, it
// writes request bytes it built itself and parses only the status line, the framing headers and
// the body. Replies on one connection come in request order (HTTP/1.1), so a FIFO of tokens
// matches them.

import { connect, type Socket } from 'node:net'
import type { Op, Reply } from '../scenario.js'
import type { Connection, ConnectionEvents, Transport, TransportSpec } from './types.js'

const CRLF2 = Buffer.from('\r\n\r\n')
/** Why 64 KiB: no reply of a shipped scenario comes near; larger heads are a broken server. */
const HEAD_BYTES_MAX = 64 * 1024
/** Replies larger than this are refused as a protocol error rather than buffered without end. */
const BODY_BYTES_MAX = 64 * 1024 * 1024

export class HttpTransport implements Transport {
  private readonly host: string
  private readonly port: number
  private readonly hostHeader: string
  private readonly appBase: string
  private readonly v1Base: string
  /** Header lines every request carries (authorization). */
  private readonly fixedHeaders: string

  constructor(private readonly spec: TransportSpec) {
    const u = new URL(spec.target)
    if (u.protocol !== 'http:') throw new Error(`target ${spec.target}: only http:// is supported`)
    this.host = u.hostname.replace(/^\[|\]$/g, '')
    this.port = Number(u.port || 80)
    this.hostHeader = u.host
    this.appBase = `/api/v2/apps/${spec.app}/workspaces/`
    this.v1Base = `/api/${spec.app}/`
    this.fixedHeaders = spec.token === undefined ? '' : `authorization: Bearer ${spec.token}\r\n`
  }

  connect(events: ConnectionEvents): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: this.host, port: this.port, noDelay: true })
      const fail = (err: Error): void => reject(new Error(`cannot connect to ${this.spec.target}: ${err.message}`))
      socket.once('error', fail)
      socket.once('connect', () => {
        socket.off('error', fail)
        resolve(new HttpConnection(socket, this, this.spec.pipeline, events))
      })
    })
  }

  /** The request bytes of one operation. */
  encode(op: Op): Buffer {
    let method: string
    let path: string
    let body: string | Buffer | undefined
    let extra = ''
    switch (op.kind) {
      case 'command':
        method = 'POST'
        path = this.spec.api === 'v1' ? `${this.v1Base}${op.wsid}/c.${op.qname}` : `${this.appBase}${op.wsid}/commands/${op.qname}`
        body = `{"args":${JSON.stringify(op.args)}}`
        if (op.idempotencyKey !== undefined) extra = `idempotency-key: ${op.idempotencyKey}\r\n`
        break
      case 'query':
        method = 'GET'
        path = `${this.appBase}${op.wsid}/queries/${op.qname}?args=${encodeURIComponent(JSON.stringify(op.args))}`
        break
      case 'doc-get':
        method = 'GET'
        path = `${this.appBase}${op.wsid}/docs/${op.qname}/${op.id}`
        break
      case 'doc-create':
        method = 'POST'
        path = `${this.appBase}${op.wsid}/docs/${op.qname}`
        body = JSON.stringify(op.fields)
        break
      case 'view':
        method = 'GET'
        path = `${this.appBase}${op.wsid}/views/${op.qname}?where=${encodeURIComponent(JSON.stringify(op.where))}`
        break
      case 'echo':
        method = 'POST'
        path = '/echo'
        body = op.payload
        break
    }
    extra += this.fixedHeaders
    if (body === undefined) return Buffer.from(`${method} ${path} HTTP/1.1\r\nhost: ${this.hostHeader}\r\n${extra}\r\n`, 'latin1')
    const head = `${method} ${path} HTTP/1.1\r\nhost: ${this.hostHeader}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n`
    if (typeof body === 'string') return Buffer.from(head + body)
    return Buffer.concat([Buffer.from(head, 'latin1'), body])
  }

  /** The reply body as a scenario sees it: raw bytes for echo, the v2 JSON shape otherwise. */
  decode(op: Op, body: Buffer): unknown {
    if (op.kind === 'echo') return body
    if (body.length === 0) return undefined
    let v: unknown
    try {
      v = JSON.parse(body.toString('utf8'))
    } catch {
      return body.toString('utf8')
    }
    return op.kind === 'command' && this.spec.api === 'v1' ? fromV1(v) : v
  }
}

/** v1 replies (`CurrentWLogOffset`, `sys.Error`) in the v2 shape, so one check fits both. */
function fromV1(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v
  const o = v as Record<string, unknown>
  const err = o['sys.Error'] as Record<string, unknown> | undefined
  if (err !== undefined) return { status: err.HTTPStatus, message: err.Message, qname: err.QName, data: err.Data }
  return { currentWLogOffset: o.CurrentWLogOffset, newIDs: o.NewIDs, result: o.Result }
}

class HttpConnection implements Connection {
  /** Tokens and operations in flight, in request order: a ring of `pipeline` slots. */
  private readonly tokens: Int32Array
  private readonly ops: (Op | undefined)[]
  private head = 0
  private count = 0
  private out: Buffer[] = []
  private flushQueued = false
  private rest: Buffer | null = null
  private gone = false

  constructor(
    private readonly socket: Socket,
    private readonly transport: HttpTransport,
    private readonly pipeline: number,
    private readonly events: ConnectionEvents,
  ) {
    this.tokens = new Int32Array(pipeline)
    this.ops = new Array<Op | undefined>(pipeline)
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', (err: NodeJS.ErrnoException) => this.fail(err.code ?? err.message))
    socket.on('close', () => this.fail('connection closed by the server'))
  }

  send(op: Op, token: number): void {
    if (this.gone) throw new Error('bug: send on a closed connection')
    if (this.count === this.pipeline) throw new Error(`bug: more than ${this.pipeline} requests in flight on one connection`)
    const slot = (this.head + this.count) % this.pipeline
    this.tokens[slot] = token
    this.ops[slot] = op
    this.count++
    this.out.push(this.transport.encode(op))
    if (!this.flushQueued) {
      this.flushQueued = true
      queueMicrotask(this.flush)
    }
  }

  private readonly flush = (): void => {
    this.flushQueued = false
    if (this.gone || this.out.length === 0) return
    this.socket.write(this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out))
    this.out = []
  }

  get open(): boolean {
    return !this.gone
  }

  close(): void {
    this.gone = true
    this.socket.destroy()
  }

  private onData(chunk: Buffer): void {
    let buf = this.rest === null ? chunk : Buffer.concat([this.rest, chunk])
    let pos = 0
    for (;;) {
      const headEnd = buf.indexOf(CRLF2, pos)
      if (headEnd < 0) {
        if (buf.length - pos > HEAD_BYTES_MAX) return this.protocolError(`reply head over ${HEAD_BYTES_MAX} bytes`)
        break
      }
      const head = buf.toString('latin1', pos, headEnd)
      const status = Number(head.slice(9, 12))
      if (!head.startsWith('HTTP/1.') || !(status >= 100 && status <= 599)) return this.protocolError(`not an HTTP/1.x reply: ${JSON.stringify(head.slice(0, 40))}`)
      const lower = head.toLowerCase()
      const bodyStart = headEnd + 4
      let body: Buffer
      let end: number
      const lengthAt = lower.indexOf('\r\ncontent-length:')
      if (lengthAt >= 0) {
        const length = parseInt(lower.slice(lengthAt + 17), 10)
        if (!(length >= 0 && length <= BODY_BYTES_MAX)) return this.protocolError(`bad content-length in ${JSON.stringify(head.slice(0, 200))}`)
        end = bodyStart + length
        if (buf.length < end) break
        body = buf.subarray(bodyStart, end)
      } else if (/\r\ntransfer-encoding:[ \t]*chunked/.test(lower)) {
        const chunked = parseChunked(buf, bodyStart)
        if (chunked === 'error') return this.protocolError('bad chunked encoding')
        if (chunked === undefined) break
        ;[body, end] = chunked
      } else if (status === 204 || status === 304 || (status >= 100 && status < 200)) {
        body = Buffer.alloc(0)
        end = bodyStart
      } else {
        return this.protocolError('reply without content-length or chunked encoding (pipelining needs one)')
      }
      pos = end
      if (status < 200) continue
      if (this.count === 0) return this.protocolError('a reply nobody asked for')
      const token = this.tokens[this.head]!
      const op = this.ops[this.head]!
      this.ops[this.head] = undefined
      this.head = (this.head + 1) % this.pipeline
      this.count--
      this.events.reply(token, { status, body: this.transport.decode(op, body) })
      if (/\r\nconnection:[ \t]*close/.test(lower)) return this.fail('the server closed the connection (connection: close)')
    }
    this.rest = pos < buf.length ? buf.subarray(pos) : null
  }

  private protocolError(what: string): void {
    this.fail(`protocol error: ${what}`)
  }

  /** Answers every token in flight with status 0, once, then reports the connection closed. */
  private fail(reason: string): void {
    const wasGone = this.gone
    this.gone = true
    this.rest = null
    this.socket.destroy()
    while (this.count > 0) {
      const token = this.tokens[this.head]!
      this.ops[this.head] = undefined
      this.head = (this.head + 1) % this.pipeline
      this.count--
      this.events.reply(token, { status: 0, body: reason })
    }
    if (!wasGone) this.events.closed(reason)
  }
}

/** A chunked body starting at `at`: [body, end], undefined while incomplete, 'error' if malformed. */
function parseChunked(buf: Buffer, at: number): [Buffer, number] | undefined | 'error' {
  const parts: Buffer[] = []
  let pos = at
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', pos)
    if (lineEnd < 0) return undefined
    const size = parseInt(buf.toString('latin1', pos, lineEnd), 16)
    if (!(size >= 0)) return 'error'
    if (size === 0) {
      // Trailers (none expected) end with an empty line.
      const trailerEnd = buf.indexOf(CRLF2, lineEnd)
      if (buf.length >= lineEnd + 4 && buf[lineEnd + 2] === 13 && buf[lineEnd + 3] === 10) return [Buffer.concat(parts), lineEnd + 4]
      if (trailerEnd < 0) return undefined
      return [Buffer.concat(parts), trailerEnd + 4]
    }
    const dataEnd = lineEnd + 2 + size
    if (buf.length < dataEnd + 2) return undefined
    parts.push(buf.subarray(lineEnd + 2, dataEnd))
    pos = dataEnd + 2
  }
}
