// The seam between the load generator and a protocol. A transport opens connections; a
// connection carries operations with a numeric token and hands each reply back with that token,
// in any order. The load generator bounds what is in flight (connections × pipeline), so a
// connection needs no queue of its own beyond the tokens it is waiting for.

import type { Op, Reply } from '../scenario.js'

export type TransportKind = 'http' | 'ws'

export interface TransportSpec {
  /** `http`: HTTP/1.1 keep-alive with pipelining. `ws`: the binary protocol through the SDK
   *  (vvm/client), or raw WebSocket messages when the operations are `echo` (the ceiling). */
  kind: TransportKind
  /** `http://host:port` */
  target: string
  /** `owner/name` of the app the operations address. */
  app: string
  /** HTTP API flavour for commands: v2 (default) or v1 (`/api/{owner}/{app}/{wsid}/c.{pkg}.{Cmd}`). */
  api: 'v1' | 'v2'
  /** Pipeline depth: the most operations a connection has in flight. */
  pipeline: number
  /** Sent as `authorization: Bearer …` over HTTP and in the binary protocol's HELLO. */
  token?: string | undefined
}

export interface ConnectionEvents {
  reply(token: number, reply: Reply): void
  /** The connection is gone; replies for every token in flight were delivered (status 0) first. */
  closed(reason: string): void
}

export interface Connection {
  /** False once the connection is gone; sending then is a bug. */
  readonly open: boolean
  /** Sends soon: writes are gathered and flushed once per burst (a microtask later). */
  send(op: Op, token: number): void
  close(): void
}

export interface Transport {
  connect(events: ConnectionEvents): Promise<Connection>
}

export async function createTransport(spec: TransportSpec, echo: boolean): Promise<Transport> {
  if (spec.kind === 'http') {
    const { HttpTransport } = await import('./http.js')
    return new HttpTransport(spec)
  }
  if (echo) {
    const { WsEchoTransport } = await import('./ws-echo.js')
    return new WsEchoTransport(spec)
  }
  const { openBinaryTransport } = await import('./binary.js')
  return openBinaryTransport(spec)
}
