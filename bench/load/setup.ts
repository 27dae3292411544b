// Runs a scenario's `setup` in the harness's main thread: an HTTP client with a small pool of
// keep-alive connections (API v2), handed to the scenario as `SetupContext`.

import { HttpTransport } from '../transport/http.js'
import type { Connection } from '../transport/types.js'
import type { Op, Reply, Scenario, SetupContext } from '../scenario.js'

/** Why 32: enough to keep a 2-core server busy while accounts are opened, few enough to be polite. */
const SETUP_CONNECTIONS = 32

export interface SetupOptions {
  target: string
  token: string | undefined
  app: string
  workspaces: number
  wsidBase: number
  payloadBytes: number
  progress(done: number, total: number): void
}

export async function runSetup(scenario: Scenario, o: SetupOptions): Promise<unknown> {
  if (scenario.setup === undefined) return undefined
  const pool = new SetupPool(new HttpTransport({ kind: 'http', target: o.target, app: o.app, api: 'v2', pipeline: 1, token: o.token }))
  const ctx: SetupContext = {
    target: o.target,
    app: o.app,
    workspaces: o.workspaces,
    payloadBytes: o.payloadBytes,
    wsid: (i) => o.wsidBase + i,
    send: (op) => pool.send(op),
    forEach: (count, fn, concurrency = SETUP_CONNECTIONS) => forEachBounded(count, fn, Math.min(concurrency, SETUP_CONNECTIONS)),
    progress: o.progress,
  }
  try {
    return await scenario.setup(ctx)
  } finally {
    pool.close()
  }
}

async function forEachBounded(count: number, fn: (i: number) => Promise<void>, concurrency: number): Promise<void> {
  let next = 0
  let failed: unknown
  const lane = async (): Promise<void> => {
    while (failed === undefined && next < count) {
      const i = next++
      try {
        await fn(i)
      } catch (err) {
        failed ??= err
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane))
  if (failed !== undefined) throw failed
}

/** One request at a time per connection; callers wait for a free connection (bounded by forEach). */
class SetupPool {
  private readonly idle: Connection[] = []
  private readonly waiting: ((c: Connection | undefined) => void)[] = []
  private readonly pending = new Map<number, (r: Reply) => void>()
  private opened = 0
  private nextToken = 0
  private closed = false

  constructor(private readonly transport: HttpTransport) {}

  async send(op: Op): Promise<Reply> {
    const c = await this.acquire()
    try {
      return await new Promise<Reply>((resolve) => {
        const token = this.nextToken++
        this.pending.set(token, resolve)
        c.send(op, token)
      })
    } finally {
      this.release(c)
    }
  }

  private async acquire(): Promise<Connection> {
    for (;;) {
      const c = this.idle.pop()
      if (c !== undefined && c.open) return c
      if (c !== undefined) { this.opened--; continue }
      if (this.opened < SETUP_CONNECTIONS) {
        this.opened++
        try {
          return await this.transport.connect({
            reply: (token, r) => { const done = this.pending.get(token); this.pending.delete(token); done?.(r) },
            closed: () => {},
          })
        } catch (err) {
          this.opened--
          throw err
        }
      }
      const handed = await new Promise<Connection | undefined>((resolve) => this.waiting.push(resolve))
      if (handed !== undefined) {
        if (handed.open) return handed
        this.opened--
      }
    }
  }

  private release(c: Connection): void {
    if (this.closed) { c.close(); return }
    const w = this.waiting.shift()
    if (w !== undefined) w(c)
    else this.idle.push(c)
  }

  close(): void {
    this.closed = true
    for (const c of this.idle) c.close()
    this.idle.length = 0
    for (const w of this.waiting) w(undefined)
  }
}
