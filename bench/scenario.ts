// What a scenario is: a module whose default export is `defineScenario({...})`. It prepares
// data once (`setup`, in the harness's main thread, over HTTP) and then, in every load worker,
// produces operations (`next`) and judges every reply (`check`). Operations are
// transport-neutral: the HTTP transport turns them into API v2 (or v1) requests, the binary
// transport into SDK calls. Shipped scenarios live in bench/scenarios/; a user's own is any
// .js module with the same shape (`vvm bench ./my-scenario.js`). See bench/README.md.

import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

/** One request, independent of the transport that carries it. */
export type Op =
  | { kind: 'command'; wsid: number; qname: string; args: Record<string, unknown>; idempotencyKey?: string }
  | { kind: 'query'; wsid: number; qname: string; args: Record<string, unknown> }
  | { kind: 'doc-get'; wsid: number; qname: string; id: number }
  | { kind: 'doc-create'; wsid: number; qname: string; fields: Record<string, unknown> }
  | { kind: 'view'; wsid: number; qname: string; where: Record<string, unknown> }
  /** The ceilings' request: the body comes back unchanged from a raw echo server. */
  | { kind: 'echo'; payload: Buffer }

/**
 * A reply as the scenario sees it: the HTTP status (or the binary protocol's equivalent) and
 * the decoded body (API v2 shape; `echo` replies keep the raw bytes). `status` 0 means the
 * transport failed (connection lost, timeout) and `body` is the reason.
 */
export interface Reply {
  status: number
  body: unknown
}

/** What `setup` gets: the target and an HTTP client for preparing data. */
export interface SetupContext {
  /** `http://host:port` of the server under test. */
  target: string
  /** The app the scenario runs against, `owner/name`. */
  app: string
  workspaces: number
  payloadBytes: number
  /** The workspace id of workspace number `i` (0-based); spreads over every partition. */
  wsid(i: number): number
  /** Sends one operation over HTTP and returns its reply (never throws on a status). */
  send(op: Op): Promise<Reply>
  /** Runs `fn(i)` for i in 0..count-1 with at most `concurrency` at once; the first failure stops it. */
  forEach(count: number, fn: (i: number) => Promise<void>, concurrency?: number): Promise<void>
  /** Progress for long setups, shown on the terminal. */
  progress(done: number, total: number): void
}

/** What `source` gets, in each load worker. */
export interface SourceContext {
  workspaces: number
  payloadBytes: number
  workerIndex: number
  workersCount: number
  wsid(i: number): number
  /** A deterministic pseudo-random number in [0, 1) (xorshift, seeded per worker). */
  random(): number
}

export interface OpSource {
  next(): Op
  /** `undefined` when the reply is right; otherwise a short, low-cardinality error kind
   *  (`status 503 BUSY`, `content: balance is not a number`) — errors are counted by it. */
  check(op: Op, reply: Reply): string | undefined
}

export interface Scenario<Data = unknown> {
  name: string
  description: string
  /** The app a server started by the harness deploys; default `demo/bank`. */
  app?: string
  /** Runs once before the load; its result (structured-cloneable) goes to every worker. */
  setup?(ctx: SetupContext): Promise<Data>
  source(ctx: SourceContext, data: Data): OpSource
}

/** Identity, for typing: `export default defineScenario({...})`. */
export function defineScenario<Data>(s: Scenario<Data>): Scenario<Data> {
  return s
}

/** The `check` result for a reply whose status is not the expected one. */
export function statusError(reply: Reply): string {
  if (reply.status === 0) return `transport: ${String(reply.body)}`
  const b = reply.body as { code?: unknown } | null
  const code = b !== null && typeof b === 'object' && typeof b.code === 'string' ? ` ${b.code}` : ''
  return `status ${reply.status}${code}`
}

/** The `body.field` path of a JSON reply, or undefined. */
export function field(body: unknown, ...path: string[]): unknown {
  let v = body
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined
    v = (v as Record<string, unknown>)[p]
  }
  return v
}

export const SHIPPED_SCENARIOS = ['deposit', 'transfer', 'transfer-wasm', 'point-query', 'mixed', 'echo'] as const

/** A shipped scenario's name or a path to a module; returns its file URL. */
export function resolveScenario(spec: string): string {
  if ((SHIPPED_SCENARIOS as readonly string[]).includes(spec)) return new URL(`./scenarios/${spec}.js`, import.meta.url).href
  const path = resolve(spec)
  if (!existsSync(path)) throw new BenchUsageError(`scenario '${spec}' is neither a shipped one (${SHIPPED_SCENARIOS.join(', ')}) nor a file (looked for ${path})`)
  return pathToFileURL(path).href
}

export async function loadScenario(url: string): Promise<Scenario> {
  const mod = (await import(url)) as { default?: unknown }
  const s = mod.default as Partial<Scenario> | undefined
  if (s === undefined || typeof s !== 'object' || typeof s.name !== 'string' || typeof s.source !== 'function') {
    throw new BenchUsageError(`scenario module ${url} must export default defineScenario({ name, description, setup?, source })`)
  }
  return s as Scenario
}

/** A mistake in the bench command line or a scenario file: exit code 2, no stack. */
export class BenchUsageError extends Error {
  readonly code = 'VVM_BENCH_USAGE'
}
