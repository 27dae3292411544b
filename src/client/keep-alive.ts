// Keep-alive of the SDK's connection: a PING when the connection was quiet in either direction
// for about an interval, and the connection taken for dead when nothing at all came in the
// interval after a PING.

import { encodePing } from '../shared/protocol/index.js'

/** Why 30 s: under the idle timeouts of common proxies and load balancers (60 s and up). */
export const KEEP_ALIVE_MAX_MS = 30_000

export interface KeepAliveHooks {
  /** Sends a frame on the current connection; false when there is none. */
  send(frame: Uint8Array): boolean
  /** Nothing came for two intervals: the connection is to be dropped. */
  dead(): void
}

export class KeepAlive {
  /** When a frame last came from the server. */
  lastFrameMs = 0
  /** When a frame was last sent: the server's idle timeout counts the client's frames only. */
  lastSentMs = 0
  private timer: ReturnType<typeof setInterval> | undefined
  /** When the PING still unanswered by any frame was sent. */
  private pingMs: number | undefined

  constructor(private readonly hooks: KeepAliveHooks) {}

  /**
   * Starts for a new connection: every `configuredMs` when given, else a third of the
   * server's idle timeout (at most KEEP_ALIVE_MAX_MS); 0 or less: none.
   */
  start(configuredMs: number | undefined, serverIdleTimeoutS: number): void {
    this.stop()
    this.lastFrameMs = Date.now()
    const intervalMs = configuredMs ?? (serverIdleTimeoutS > 0 ? Math.min(KEEP_ALIVE_MAX_MS, (serverIdleTimeoutS * 1000) / 3) : KEEP_ALIVE_MAX_MS)
    if (intervalMs <= 0) return
    this.timer = setInterval(() => this.tick(intervalMs), intervalMs)
    // The socket keeps the process alive while connected; this timer need not.
    ;(this.timer as { unref?: () => void }).unref?.()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.pingMs = undefined
  }

  private tick(intervalMs: number): void {
    const now = Date.now()
    if (this.pingMs !== undefined && this.lastFrameMs < this.pingMs) {
      // Nothing at all since our PING an interval ago: the peer or the path is gone.
      this.hooks.dead()
      return
    }
    // Quiet in either direction: a client that only receives pushes pings too.
    if (now - Math.min(this.lastFrameMs, this.lastSentMs) >= intervalMs * 0.9 && this.hooks.send(encodePing(0))) {
      this.pingMs = now
      this.lastSentMs = now
    } else {
      this.pingMs = undefined
    }
  }
}
