// Errors of the SDK. Every error a call rejects with is a VvmClientError carrying `code` and
// `status`: the server's for an error reply (the same codes and statuses as the HTTP API), 0
// for failures on the client's side (no reply was received).

export class VvmClientError extends Error {
  readonly code: string
  readonly status: number
  readonly qname: string | undefined
  readonly data: unknown
  /** Seconds the server asked to wait before retrying (429, 503). */
  readonly retryAfterS: number | undefined

  constructor(code: string, status: number, message: string, options: { qname?: string; data?: unknown; retryAfterS?: number } = {}) {
    super(message)
    this.name = 'VvmClientError'
    this.code = code
    this.status = status
    this.qname = options.qname
    this.data = options.data
    this.retryAfterS = options.retryAfterS
  }
}

/** The server answered with an error: `status`, `code` (e.g. 'VALIDATION'), `qname`, `data` as sent. */
export class ReplyError extends VvmClientError {
  constructor(status: number, body: unknown, retryAfterS: number) {
    const b = (typeof body === 'object' && body !== null ? body : {}) as { message?: unknown; code?: unknown; qname?: unknown; data?: unknown }
    super(
      typeof b.code === 'string' ? b.code : 'UNKNOWN', status, typeof b.message === 'string' ? b.message : `status ${status}`,
      { qname: typeof b.qname === 'string' ? b.qname : undefined, data: b.data, retryAfterS: retryAfterS > 0 ? retryAfterS : undefined },
    )
    this.name = 'ReplyError'
  }
}

/** No reply within the call's timeout. A write may still have been applied: retry it with the same idempotency key. */
export class TimeoutError extends VvmClientError {
  constructor(message: string) {
    super('CLIENT_TIMEOUT', 0, message)
    this.name = 'TimeoutError'
  }
}

export type ConnectionErrorCode =
  /** The connection was lost while a write without idempotency key was in flight: it may or may not be applied. */
  | 'CONNECTION_LOST'
  /** The client was closed (by `close()`, or for good after a close the SDK cannot recover from). */
  | 'CONNECTION_CLOSED'
  /** No connection could be made (refused, wrong URL, handshake refused). */
  | 'CONNECT_FAILED'

export class ConnectionError extends VvmClientError {
  constructor(code: ConnectionErrorCode, message: string, readonly closeCode?: number, readonly closeReason?: string) {
    super(code, 0, message)
    this.name = 'ConnectionError'
  }
}
