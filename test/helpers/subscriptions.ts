// Helpers of the subscription tests (test/subscriptions*.test.ts).

import type { FrameType, ServerFrame } from '../../src/shared/protocol/index.js'
import type { TestServer } from './server.js'

export type Row = Record<string, unknown>
export type Push = Extract<ServerFrame, { type: typeof FrameType.PUSH }>

/** The sum of a metric's series (all labels) in the server's /metrics. */
export async function metric(t: TestServer, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${t.server.metricsPort}/metrics`)).text()
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0)
}

/** Polls `cond` every 10 ms until it holds; throws after `timeoutMs`. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timeout waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}
