// Coded errors, mapped to statuses in one table (undici `errors.js` style). Every layer that
// answers a client (HTTP, binary protocol) maps `code` → status through `statusOf`; nothing
// else builds status numbers.

export const ErrorCodes = {
  /** Cluster mode: another node serves this workspace's partition (`data.location`). */
  MOVED: 307,
  BAD_REQUEST: 400,
  BAD_JSON: 400,
  VALIDATION: 400,
  UNAUTHORIZED: 401,
  TOKEN_EXPIRED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  GONE: 410,
  TOO_LARGE: 413,
  RATE_LIMITED: 429,
  /** A connection has as many subscriptions as `subscriptionsPerConnectionMax` allows. */
  SUBSCRIPTIONS_LIMIT: 429,
  /** A subscriber fell too far behind; its pending diffs were dropped: subscribe again (fresh snapshot). */
  RESYNC: 409,
  INTERNAL: 500,
  BUSY: 503,
  TIMEOUT: 503,
  SHUTTING_DOWN: 503,
  /** An extension's own error: the status is the one the extension chose. */
  EXTENSION: 0,
  /** A WASM extension ran past its deadline (`--wasm-deadline-ms`); nothing it wrote is applied. */
  EXTENSION_TIMEOUT: 500,
  /** A WASM extension needed more linear memory than `--wasm-memory-bytes-max`. */
  EXTENSION_MEMORY: 500,
  /** A WASM extension trapped: out-of-bounds access, stack overflow, `unreachable`, an abort. */
  EXTENSION_TRAP: 500,
  /** A WASM extension broke the host ABI: a pointer outside its memory, a malformed payload or result. */
  EXTENSION_ABI: 500,
  /** A WASM extension crossed a bound of one call (reads that needed storage, writes). */
  EXTENSION_LIMIT: 500,
} as const

export type ErrorCode = keyof typeof ErrorCodes

export class VvmError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly qname: string | undefined
  readonly data: unknown
  /** Seconds a client should wait before retrying (429, 503). */
  readonly retryAfterS: number | undefined

  constructor(code: ErrorCode, message: string, options: { status?: number; qname?: string; data?: unknown; retryAfterS?: number } = {}) {
    super(message)
    this.name = 'VvmError'
    this.code = code
    this.status = options.status ?? statusOf(code)
    this.qname = options.qname
    this.data = options.data
    this.retryAfterS = options.retryAfterS
  }
}

export class BadRequestError extends VvmError {
  constructor(message: string, qname?: string) { super('BAD_REQUEST', message, { qname }) }
}
export class ValidationError extends VvmError {
  constructor(message: string, qname?: string) { super('VALIDATION', message, { qname }) }
}
export class NotFoundError extends VvmError {
  constructor(message: string, qname?: string) { super('NOT_FOUND', message, { qname }) }
}
export class BusyError extends VvmError {
  constructor(message: string, retryAfterS = 1) { super('BUSY', message, { retryAfterS }) }
}
export class RateLimitedError extends VvmError {
  constructor(message: string, retryAfterS: number, qname?: string) { super('RATE_LIMITED', message, { retryAfterS, qname }) }
}

/**
 * Thrown by application code (extensions) to fail a command or query with a status of its
 * choice, e.g. `throw new ExtensionError(409, 'insufficient funds')`.
 */
export class ExtensionError extends VvmError {
  constructor(status: number, message: string, data?: unknown) {
    if (!Number.isInteger(status) || status < 400 || status > 599) status = 500
    super('EXTENSION', message, { status, data })
  }
}

export function statusOf(code: ErrorCode): number {
  const status = ErrorCodes[code]
  return status === 0 ? 500 : status
}

/** Anything thrown becomes a VvmError; unknown throwables are internal errors. */
export function toVvmError(err: unknown): VvmError {
  if (err instanceof VvmError) return err
  const message = err instanceof Error ? err.message : String(err)
  return new VvmError('INTERNAL', message)
}

/** Storage failures: the backend could not do what was asked (I/O, connection, corruption). */
export class StorageError extends VvmError {
  constructor(message: string, cause?: unknown) {
    super('INTERNAL', message)
    if (cause !== undefined) (this as { cause?: unknown }).cause = cause
  }
}
