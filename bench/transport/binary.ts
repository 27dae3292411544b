// The binary WebSocket protocol, through the TypeScript SDK (src/client, `vvm/client`) exactly
// as a user's program calls it: one VvmClient per connection, one promise per call.
//
// Settings that keep the measurement honest: no reconnect and no retries (a lost connection or
// a 503 is an error to count, not something to hide by sending again), and commands without an
// idempotency key unless the scenario gives one (as the HTTP transport sends them), so both
// transports carry the same work. Replies are mapped to the HTTP shape scenarios check:
// success is 200 (201 for doc-create, as over HTTP), an error reply keeps its status and
// `{status, code, message}`, and a failure with no reply (status 0) is a transport error.

import { connect, VvmClientError, type VvmClient } from '../../src/client/index.js'
import type { Op, Reply } from '../scenario.js'
import type { Connection, ConnectionEvents, Transport, TransportSpec } from './types.js'

/** Why 60 s: longer than any drain; a reply later than that is counted as a timeout by the harness. */
const CALL_TIMEOUT_MS = 60_000

export async function openBinaryTransport(spec: TransportSpec): Promise<Transport> {
  return new BinaryTransport(spec)
}

class BinaryTransport implements Transport {
  private readonly url: string

  constructor(private readonly spec: TransportSpec) {
    this.url = spec.target.replace(/^http/, 'ws') + '/api/ws'
  }

  async connect(events: ConnectionEvents): Promise<Connection> {
    let conn: BinaryConnection | undefined
    const client = await connect(this.url, {
      app: this.spec.app,
      ...(this.spec.token === undefined ? {} : { token: this.spec.token }),
      reconnect: false,
      retriesMax: 0,
      timeoutMs: CALL_TIMEOUT_MS,
      onStateChange: (state, detail) => {
        if (state === 'closed' || state === 'reconnecting') conn?.lost(detail.closeReason || detail.error?.message || `connection ${state} (${detail.closeCode ?? 'no code'})`)
      },
    })
    conn = new BinaryConnection(client, events)
    return conn
  }
}

class BinaryConnection implements Connection {
  private gone = false

  constructor(private readonly client: VvmClient, private readonly events: ConnectionEvents) {}

  get open(): boolean {
    return !this.gone
  }

  send(op: Op, token: number): void {
    if (this.gone) throw new Error('bug: send on a closed connection')
    const c = this.client
    let call: Promise<unknown>
    let okStatus = 200
    switch (op.kind) {
      case 'command':
        call = c.command(op.qname, op.args, { wsid: op.wsid, idempotencyKey: op.idempotencyKey ?? false })
        break
      case 'query':
        call = c.query(op.qname, op.args, { wsid: op.wsid })
        break
      case 'doc-get':
        call = c.docs.get(op.qname, op.id, { wsid: op.wsid })
        break
      case 'doc-create':
        okStatus = 201
        call = c.docs.create(op.qname, op.fields, { wsid: op.wsid, idempotencyKey: false })
        break
      case 'view':
        call = c.view(op.qname, { wsid: op.wsid, where: op.where })
        break
      case 'echo':
        throw new Error('echo operations go to the raw WebSocket ceiling, not through the SDK')
    }
    call.then(
      (body) => this.events.reply(token, { status: okStatus, body }),
      (err: unknown) => this.events.reply(token, replyOf(err)),
    )
  }

  lost(reason: string): void {
    if (this.gone) return
    this.gone = true
    this.events.closed(reason)
  }

  close(): void {
    this.gone = true
    void this.client.close({ drainTimeoutMs: 0 })
  }
}

function replyOf(err: unknown): Reply {
  if (err instanceof VvmClientError && err.status > 0) return { status: err.status, body: { status: err.status, code: err.code, message: err.message } }
  if (err instanceof VvmClientError) return { status: 0, body: `${err.code}: ${err.message}` }
  return { status: 0, body: (err as Error).message ?? String(err) }
}
