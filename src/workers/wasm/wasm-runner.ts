// The extension runner of every worker (src/workers/wasm/: WASM extensions; guide and ABI in
// docs/extensions.md). Builtin functions run as BuiltinRunner runs them; a function bound with
// `wasm('file.wasm', 'export')` (the file relative to its app module's URL) runs in an instance
// borrowed from this worker's engine pools, made at start for every WASM function of every
// deployed app and the processor kinds this worker serves.
//
// One call: encode the input, run the guest with a HostSession answering its host calls, and
// if a read needed storage, await it and run again (host-api.ts says why that is safe). Only
// after a run succeeds are its writes applied to the processor's state; a failed call throws
// and leaves nothing, and the processor guarantees that a failed command writes nothing.
//
// Depends on: src/shared (app model, errors), the command processor's CommandTx (for reads
// without I/O), native/ through engine-pool.ts.

import { readFile } from 'node:fs/promises'
import { isWasmRef } from '../../shared/appdef/define.js'
import type { AppDef, ProjectorEvent, ResolvedCommand, ResolvedProjector, ResolvedQuery, WasmRef } from '../../shared/appdef/types.js'
import type { CommandState, ProjectorState, QueryState, Row } from '../../shared/appdef/state.js'
import { BusyError, ExtensionError, VvmError } from '../../shared/errors.js'
import type { WasmOptions } from '../../shared/partition-protocol.js'
import { BuiltinRunner, type ExtensionRunner, type MaybePromise, type ProcessorKind } from '../extensions.js'
import { InstancePool, WasmEngines } from './engine-pool.js'
import { HostSession, abiCodec, abiError } from './host-api.js'

/**
 * Why 64: every run after the first costs one storage read, an instance and up to the
 * deadline; an extension that needs more reads from storage per call belongs in a query.
 */
export const RUNS_PER_CALL_MAX = 64

export interface AppModule {
  readonly app: AppDef
  /** The module URL the app was loaded from: `wasm(file)` paths are relative to it. */
  readonly url: string
}

interface WasmFunction {
  qname: string
  kind: ProcessorKind
  ref: WasmRef
}

interface Binding {
  exportName: string
  pool: InstancePool
}

export class WasmRunner implements ExtensionRunner {
  private readonly builtin = new BuiltinRunner()
  /** Per deployed app version: function qname → its export and pool. */
  private readonly bound = new WeakMap<AppDef, Map<string, Binding>>()
  /** The pools each deployed app (by qname) holds a reference to, one per function. */
  private readonly held = new Map<string, InstancePool[]>()
  private engines: WasmEngines | undefined

  private constructor(readonly kinds: readonly ProcessorKind[], readonly opts: WasmOptions) {}

  /** Engine pool usage of this worker (for metrics). */
  usage(): { instances: number; borrows: number; replaced: number } {
    return this.engines?.usage() ?? { instances: 0, borrows: 0, replaced: 0 }
  }

  /** Makes the engine pools of every WASM function of `apps` that runs on `kinds`. */
  static async start(apps: readonly AppModule[], kinds: readonly ProcessorKind[], opts: WasmOptions): Promise<WasmRunner> {
    const runner = new WasmRunner(kinds, opts)
    await runner.openEngines(apps.flatMap((a) => runner.functionsOf(a)))
    for (const a of apps) await runner.deploy(a)
    return runner
  }

  /**
   * A new app version (partition workers on redeploy): its pools are made before it serves;
   * then the previous version's references are dropped, so pools it alone used are closed.
   */
  async deploy(a: AppModule): Promise<void> {
    const fns = this.functionsOf(a)
    const bindings = new Map<string, Binding>()
    const pools: InstancePool[] = []
    try {
      if (fns.length > 0) {
        await this.openEngines(fns)
        const files = new Map<string, Promise<Buffer>>()
        for (const f of fns) {
          const url = new URL(f.ref.wasm, a.url)
          let bytes = files.get(url.href)
          if (bytes === undefined) files.set(url.href, (bytes = readModule(url, a.app, f)))
          const { pool, module } = await this.engines!.pool(await bytes, f.kind, `${a.app.qname} ${f.ref.wasm}`)
          pools.push(pool)
          if (!module.entryPoints.includes(f.ref.export)) {
            throw new Error(`app ${a.app.qname}: ${f.qname}: ${f.ref.wasm} has no entry point '${f.ref.export}' (entry points: ${module.entryPoints.join(', ') || 'none'})`)
          }
          bindings.set(f.qname, { exportName: f.ref.export, pool })
        }
      }
    } catch (err) {
      for (const p of pools) this.engines!.release(p)
      throw err
    }
    this.bound.set(a.app, bindings)
    const previous = this.held.get(a.app.qname) ?? []
    this.held.set(a.app.qname, pools)
    for (const p of previous) this.engines!.release(p)
  }

  // A builtin's value or promise is handed on as it is: an async wrapper around it costs a few
  // more microtask turns per call.
  command(app: AppDef, cmd: ResolvedCommand, args: Row, state: CommandState): MaybePromise<Row | undefined | void> {
    return isWasmRef(cmd.exec) ? this.wasmCommand(app, cmd, args, state) : this.builtin.command(app, cmd, args, state)
  }

  query(app: AppDef, q: ResolvedQuery, args: Row, state: QueryState): Promise<Iterable<Row> | AsyncIterable<Row>> {
    return isWasmRef(q.exec) ? this.wasmQuery(app, q, args, state) : this.builtin.query(app, q, args, state)
  }

  projector(app: AppDef, p: ResolvedProjector, event: ProjectorEvent, state: ProjectorState): MaybePromise<void> {
    return isWasmRef(p.exec) ? this.wasmProjector(app, p, event, state) : this.builtin.projector(app, p, event, state)
  }

  private async wasmCommand(app: AppDef, cmd: ResolvedCommand, args: Row, state: CommandState): Promise<Row | undefined> {
    const s = new HostSession(app, 'command', cmd.qname, state)
    const value = await this.call(this.binding(app, cmd.qname, 'command'), s, { qname: cmd.qname, wsid: state.wsid, args })
    if (value === undefined || value === null) return undefined
    if (typeof value !== 'object' || Array.isArray(value)) throw abiError(cmd.qname, 'a command result must be a map or nil')
    return value as Row
  }

  private async wasmQuery(app: AppDef, q: ResolvedQuery, args: Row, state: QueryState): Promise<Iterable<Row> | AsyncIterable<Row>> {
    const s = new HostSession(app, 'query', q.qname, state)
    const value = await this.call(this.binding(app, q.qname, 'query'), s, { qname: q.qname, wsid: state.wsid, args })
    if (value === undefined || value === null) return []
    if (!Array.isArray(value) || value.some((r) => typeof r !== 'object' || r === null || Array.isArray(r))) throw abiError(q.qname, 'a query result must be an array of maps')
    return value as Row[]
  }

  private async wasmProjector(app: AppDef, p: ResolvedProjector, event: ProjectorEvent, state: ProjectorState): Promise<void> {
    const s = new HostSession(app, 'projector', p.qname, state)
    await this.call(this.binding(app, p.qname, 'projector'), s, event)
  }

  async close(): Promise<void> {
    this.engines?.close()
  }

  private async call(b: Binding, s: HostSession, input: unknown): Promise<unknown> {
    const bytes = abiCodec.pack(input)
    for (let run = 1; ; run++) {
      s.beginRun()
      const inst = b.pool.borrow()
      let value: unknown
      try {
        value = decodeOutput(inst.invoke(b.exportName, bytes, s.callback), s)
      } catch (err) {
        if (s.pending === undefined) throw extensionError(err, s, this.opts)
      } finally {
        b.pool.giveBack(inst)
      }
      if (s.pending === undefined) {
        await s.apply()
        return value
      }
      if (run >= RUNS_PER_CALL_MAX) {
        throw new VvmError('EXTENSION_LIMIT', `${s.qname}: ${run} of its reads needed storage in one call; at most ${RUNS_PER_CALL_MAX - 1} may`, { qname: s.qname })
      }
      await s.pending()
    }
  }

  private binding(app: AppDef, qname: string, kind: ProcessorKind): Binding {
    const b = this.bound.get(app)?.get(qname)
    if (b !== undefined) return b
    const why = this.kinds.includes(kind) ? `app ${app.qname} was not deployed to this worker's engines` : `this worker has no ${kind} engines`
    throw new VvmError('INTERNAL', `${qname} is bound to a WASM export and ${why}`, { qname })
  }

  private functionsOf(a: AppModule): WasmFunction[] {
    const out: WasmFunction[] = []
    const add = (qname: string, kind: ProcessorKind, exec: unknown): void => {
      if (isWasmRef(exec) && this.kinds.includes(kind)) out.push({ qname, kind, ref: exec })
    }
    for (const c of a.app.commands.values()) add(c.qname, 'command', c.exec)
    // A job runs through the command path (processor.ts: jobAsCommand).
    for (const j of a.app.jobs.values()) add(j.qname, 'command', j.exec)
    for (const q of a.app.queries.values()) add(q.qname, 'query', q.exec)
    for (const p of a.app.projectors.values()) add(p.qname, 'projector', p.exec)
    return out
  }

  private async openEngines(fns: readonly WasmFunction[]): Promise<void> {
    if (this.engines !== undefined || fns.length === 0) return
    const poolsPlanned = new Set(fns.map((f) => `${f.ref.wasm}/${f.kind}`)).size
    this.engines = await WasmEngines.open(this.opts, poolsPlanned * this.opts.poolSize)
  }
}

async function readModule(url: URL, app: AppDef, f: WasmFunction): Promise<Buffer> {
  try {
    return await readFile(url)
  } catch (err) {
    throw new Error(`app ${app.qname}: ${f.qname}: cannot read ${url.href}: ${(err as Error).message} (an AssemblyScript extension is built by scripts/build-wasm.mjs)`, { cause: err })
  }
}

/** The output of an entry point: MessagePack `[value, writes]` (docs/extensions.md). */
function decodeOutput(out: Buffer, s: HostSession): unknown {
  if (out.length === 0) return undefined
  let v: unknown
  try {
    v = abiCodec.unpack(out)
  } catch (err) {
    throw abiError(s.qname, `the result is not MessagePack: ${(err as Error).message}`)
  }
  if (!Array.isArray(v) || v.length < 1 || v.length > 2) throw abiError(s.qname, 'the result must be [value] or [value, writes]')
  if (v.length === 2 && v[1] !== null) s.writeAll(v[1])
  return v[0]
}

/** What the client gets for a failed call; anything unexpected is rethrown as is (500, logged). */
function extensionError(err: unknown, s: HostSession, opts: WasmOptions): unknown {
  const e = err as Error & { code?: string; cause?: unknown }
  const qname = s.qname
  switch (e.code) {
    case 'WASM_GUEST_ERROR':
      return guestError(e.message)
    case 'WASM_HOST_ERROR':
      // A host operation refused (a VvmError: 400, 404, EXTENSION_ABI, ...) or failed (a bug).
      return e.cause ?? e
    case 'WASM_DEADLINE':
      return new VvmError('EXTENSION_TIMEOUT', `${qname}: the extension ran past its deadline of ${opts.deadlineMs} ms`, { qname })
    case 'WASM_MEMORY_LIMIT':
      return new VvmError('EXTENSION_MEMORY', `${qname}: the extension needs more than its ${opts.memoryBytesMax} bytes of memory`, { qname })
    case 'WASM_TRAP':
      return new VvmError('EXTENSION_TRAP', s.abortText !== undefined ? `${qname}: the extension aborted: ${s.abortText}` : `${qname}: ${e.message}`, { qname })
    case 'WASM_BAD_POINTER':
    case 'WASM_LINK':
      return abiError(qname, e.message)
    case 'WASM_INSTANCE_LIMIT':
      return new BusyError(`${qname}: no WASM instance slot is free: ${e.message}`)
    default:
      return err
  }
}

/**
 * A guest's error result: JSON `{status, message, data?}` keeps its status (400..599) as an
 * ExtensionError thrown by a builtin does; any other text is a 500 with that text.
 */
function guestError(text: string): VvmError {
  const parsed = parseJsonObject(text)
  if (parsed !== undefined && typeof parsed.message === 'string') {
    return new ExtensionError(Number.isInteger(parsed.status) ? (parsed.status as number) : 500, parsed.message, parsed.data)
  }
  return new ExtensionError(500, text)
}

function parseJsonObject(text: string): Record<string, unknown> | undefined {
  if (!text.startsWith('{')) return undefined
  try {
    const v: unknown = JSON.parse(text)
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined
  } catch {
    return undefined // not JSON: the caller uses the text itself as the message
  }
}
