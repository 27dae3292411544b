// Numbers of the binary protocol (docs/protocol.md): frame types, operations, close codes and
// the default limits. They are the wire contract: never renumber, only add.

/** Versions this build speaks, newest first. A hello proposes some; the server picks the highest common one. */
export const PROTOCOL_VERSIONS: readonly number[] = [2, 1]

/** Element 0 of every frame. */
export const FrameType = {
  /** client → server, first frame: `[1, versions, token, options]` */
  HELLO: 1,
  /** server → client, answer to HELLO: `[2, version, limits, options]` */
  WELCOME: 2,
  /** client → server: `[3, reqId, op, app, wsid, qname, docId, body, params, idempotencyKey]` */
  REQUEST: 3,
  /** server → client: `[4, reqId, status, retryAfterS, body]` */
  REPLY: 4,
  /** client → server: `[5, pingId]` */
  PING: 5,
  /** server → client: `[6, pingId, serverTimeMs]` */
  PONG: 6,
  /** server → client, a subscription's diff or end (version 2): `[7, subscriptionId, seq, body]` */
  PUSH: 7,
  /** client → server, a new token for this connection (re-auth): `[8, reqId, token, options]`, answered by REPLY */
  AUTH: 8,
} as const
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType]

/** The `op` of a REQUEST. Same numbers as the engine's operations (asserted by the server). */
export const WireOp = {
  COMMAND: 1,
  DOC_CREATE: 2,
  DOC_UPDATE: 3,
  DOC_DEACTIVATE: 4,
  QUERY: 10,
  DOC_GET: 11,
  CDOCS: 12,
  VIEW: 13,
  /** Version 2: subscribe to a view, a cdocs collection, one doc or a query; the reply carries the subscription id of its PUSH frames. */
  SUBSCRIBE: 20,
  /** Version 2: end a subscription (docId = subscription id). */
  UNSUBSCRIBE: 21,
} as const
export type WireOpCode = (typeof WireOp)[keyof typeof WireOp]

export const WIRE_OP_NAMES: Readonly<Record<number, string>> = {
  1: 'command', 2: 'doc create', 3: 'doc update', 4: 'doc deactivate',
  10: 'query', 11: 'doc get', 12: 'cdocs', 13: 'view', 20: 'subscribe', 21: 'unsubscribe',
}

/** WebSocket close codes the server uses, each with one meaning. */
export const CloseCode = {
  NORMAL: 1000,
  /** The server is shutting down: reconnect (with backoff). */
  GOING_AWAY: 1001,
  /** A text frame: frames are binary MessagePack. */
  UNSUPPORTED_DATA: 1003,
  /** A frame larger than `frameBytesMax`. */
  TOO_BIG: 1009,
  /** A bug in the server; the reason says more. */
  INTERNAL_ERROR: 1011,
  /** The first frame was not a valid HELLO. */
  HELLO_EXPECTED: 4000,
  /** No common protocol version; the reason lists the server's. */
  VERSION_UNSUPPORTED: 4001,
  /** No HELLO within HELLO_TIMEOUT_MS of the upgrade. */
  HELLO_TIMEOUT: 4002,
  /** More than `bufferedBytesMax` bytes of replies wait for the client to read them. */
  SLOW_READER: 4008,
  /** Nothing in flight and no frame from the client for `idleTimeoutS`. */
  IDLE_TIMEOUT: 4010,
  /** The hello's token is invalid or expired (checked at hello when the hello names its app). */
  UNAUTHORIZED: 4401,
  /** Reserved: the token is valid but may not use this server. */
  FORBIDDEN: 4403,
} as const

/** Why 10 s: a client on a slow link finishes TLS and the upgrade well within it; a socket that never says hello is freed soon. */
export const HELLO_TIMEOUT_MS = 10_000
/** Why 8 KiB: a JWT with many claims fits; a header-sized bound on what is held before hello. */
export const TOKEN_BYTES_MAX = 8192
/** Versions a hello may propose at most. */
export const HELLO_VERSIONS_MAX = 16
/** Why 64: deeper request bodies are not business data; the bound keeps recursion off the stack's edge. */
export const BODY_DEPTH_MAX = 64
/** Request ids are uint32 and never 0 (0 is the id of connection-level error replies). */
export const REQUEST_ID_MAX = 0xffff_ffff
export const APP_NAME_BYTES_MAX = 256

/** What the server tells the client in WELCOME. */
export interface ServerLimits {
  /** Largest frame the server accepts; larger ones close the connection with 1009. */
  frameBytesMax: number
  /** Requests in flight on one connection at most; more get status 503 code BUSY. */
  inflightMax: number
  /** Reply bytes the server buffers for a client that does not read; past it, close 4008. */
  bufferedBytesMax: number
  /** Seconds without a frame from the client (and nothing in flight) before close 4010; 0: never. */
  idleTimeoutS: number
  /** Longest idempotency key. */
  idempotencyKeyBytesMax: number
  /** Version 2: subscriptions of one connection at most; more get 429 SUBSCRIPTIONS_LIMIT. */
  subscriptionsMax?: number
  /** Version 2: changed rows held for a subscription that is not read; past it the subscription ends with RESYNC. */
  subscriptionPendingOpsMax?: number
}
