// Raw WebSocket messages for the ceiling: each `echo` operation is one binary message to the
// ceiling server's `/echo`, which sends it back. Echoes come back in order, so a FIFO of tokens
// matches them. The client is the `ws` package used the way the SDK uses it (src/client:
// `sendInBurst`, the messages of one event-loop turn in one socket write), so the ratio to this
// ceiling compares servers, not clients.

import { WebSocket } from 'ws'
import { sendInBurst, type WebSocketLike } from '../../src/client/websocket.js'
import type { Op } from '../scenario.js'
import type { Connection, ConnectionEvents, Transport, TransportSpec } from './types.js'

export class WsEchoTransport implements Transport {
  constructor(private readonly spec: TransportSpec) {}

  connect(events: ConnectionEvents): Promise<Connection> {
    const url = this.spec.target.replace(/^http/, 'ws') + '/echo'
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false })
      const fail = (err: Error): void => reject(new Error(`cannot open ${url}: ${err.message}`))
      ws.once('error', fail)
      ws.once('open', () => {
        ws.off('error', fail)
        resolve(new WsEchoConnection(ws, this.spec.pipeline, events))
      })
    })
  }
}

class WsEchoConnection implements Connection {
  private readonly tokens: Int32Array
  private head = 0
  private count = 0
  private gone = false

  constructor(private readonly ws: WebSocket, private readonly pipeline: number, private readonly events: ConnectionEvents) {
    this.tokens = new Int32Array(pipeline)
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (this.count === 0) return this.fail('protocol error: a message nobody asked for')
      const token = this.tokens[this.head]!
      this.head = (this.head + 1) % this.pipeline
      this.count--
      this.events.reply(token, { status: isBinary ? 200 : 0, body: isBinary ? data : 'text frame instead of binary' })
    })
    ws.on('error', (err: Error) => this.fail(err.message))
    ws.on('close', (code: number) => this.fail(`connection closed (${code})`))
  }

  send(op: Op, token: number): void {
    if (op.kind !== 'echo') throw new Error(`the raw WebSocket transport carries echo operations only, not ${op.kind}`)
    if (this.gone) throw new Error('bug: send on a closed connection')
    if (this.count === this.pipeline) throw new Error(`bug: more than ${this.pipeline} messages in flight on one connection`)
    this.tokens[(this.head + this.count) % this.pipeline] = token
    this.count++
    sendInBurst(this.ws as unknown as WebSocketLike, op.payload)
  }

  get open(): boolean {
    return !this.gone
  }

  close(): void {
    this.gone = true
    this.ws.terminate()
  }

  private fail(reason: string): void {
    const wasGone = this.gone
    this.gone = true
    this.ws.terminate()
    while (this.count > 0) {
      const token = this.tokens[this.head]!
      this.head = (this.head + 1) % this.pipeline
      this.count--
      this.events.reply(token, { status: 0, body: reason })
    }
    if (!wasGone) this.events.closed(reason)
  }
}
