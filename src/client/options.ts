// What the SDK's calls take and give (src/client/client.ts): the options of `connect()` and of
// each call, the raw request, and the shapes calls resolve with. Defaults are applied in
// client.ts, where they are named constants.

import type { WireOpCode, WireParams } from '../shared/protocol/index.js'
import type { WebSocketConstructor } from './websocket.js'

export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closing' | 'closed'

export interface ReconnectOptions {
  /** First delay after a lost connection; doubles per failed attempt up to delayMaxMs. Default 100. */
  delayMinMs?: number
  /** Default 5000. */
  delayMaxMs?: number
  /** Attempts in a row before the client gives up and closes; default unlimited. */
  attemptsMax?: number
}

export interface ConnectOptions {
  /** Default app (`owner/name`) of calls that do not name one. */
  app?: string
  /** Default workspace of calls that do not name one. */
  wsid?: number
  /**
   * Sent in HELLO (with `app`, so the server checks it at once: close 4401 if it is bad); a
   * function is asked again on every (re)connect, so it can hand out a fresh token.
   */
  token?: string | (() => string | Promise<string>)
  /** Per-call timeout, from the call until its reply. Default 30,000. */
  timeoutMs?: number
  /** Time for one connection attempt up to WELCOME. Default 10,000. */
  connectTimeoutMs?: number
  /** Reconnect after a lost connection (default true). */
  reconnect?: boolean | ReconnectOptions
  /** Times a call is sent again after a lost connection or a 503. Default 10. */
  retriesMax?: number
  /** Calls waiting to be sent (over inflightMax, or while reconnecting) at most. Default 100,000. */
  pendingMax?: number
  /** Keep-alive PING interval; a connection silent for two intervals is taken as dead. 0: off. Default: a third of the server's idle timeout, at most 30 s. */
  keepAliveMs?: number
  /** The WebSocket implementation; default the global one, else the `ws` package. */
  WebSocket?: WebSocketConstructor
  onStateChange?: (state: ClientState, detail: { closeCode?: number; closeReason?: string; error?: Error }) => void
  /** Every server push as it arrives (subscriptions also get theirs through `subscribe`). */
  onPush?: (subscriptionId: number, seq: number, body: unknown) => void
  /** Connection-level errors the server reported (request id 0) or undecodable server frames. */
  onError?: (error: Error) => void
}

export interface CallOptions {
  app?: string
  wsid?: number
  timeoutMs?: number
}

export interface WriteOptions extends CallOptions {
  /** Default: a fresh random key per call, kept across its retries. `false`: none (then a call in flight on a lost connection fails with CONNECTION_LOST instead of being sent again). */
  idempotencyKey?: string | false
}

export interface CommandOptions extends WriteOptions {
  unloggedArgs?: Record<string, unknown>
  /** CUDs in the v1 shape, as in the HTTP API. */
  cuds?: unknown[]
}

export interface ReadOptions extends CallOptions {
  where?: Record<string, unknown>
  order?: string
  limit?: number
  skip?: number
  keys?: string
}

export type Row = Record<string, unknown>
export interface CommandResult<R = Row> {
  currentWLogOffset: number
  newIDs: Record<string, number>
  result: R
}
export interface ReadResult<T = Row> {
  results: T[]
}

export interface RawRequest extends CallOptions {
  op: WireOpCode
  qname: string
  docId?: number
  body?: Record<string, unknown>
  params?: WireParams
  idempotencyKey?: string | false
}
