// How processors run extensions (seed 000: Invoke(extName, extIO)). A builtin extension is a
// function of the app module, called directly; a WASM extension (`wasm('file.wasm', 'export')`)
// runs in an engine borrowed from the worker's pool for its processor kind.
//
// Every worker (partition workers, query workers) creates its runner at start, which
// pre-instantiates its engine pools, as seed 000 asks.

import { isWasmRef } from '../shared/appdef/define.js'
import type { AppDef, ProjectorEvent, ResolvedCommand, ResolvedProjector, ResolvedQuery } from '../shared/appdef/types.js'
import type { CommandState, ProjectorState, QueryState, Row } from '../shared/appdef/state.js'
import { VvmError } from '../shared/errors.js'

export type ProcessorKind = 'command' | 'query' | 'projector'

export type MaybePromise<T> = T | Promise<T>

/** Whether an extension handed back a promise (or any thenable) to await. */
export function isPromiseLike<T>(v: MaybePromise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown } | null | undefined)?.then === 'function'
}

export interface ExtensionRunner {
  /**
   * A command's result, or a promise of it: a builtin's own value is handed on as it is (an
   * async wrapper costs an await per command), so callers await only what is a promise.
   */
  command(app: AppDef, cmd: ResolvedCommand, args: Row, state: CommandState): MaybePromise<Row | undefined | void>
  query(app: AppDef, q: ResolvedQuery, args: Row, state: QueryState): Promise<Iterable<Row> | AsyncIterable<Row>>
  /** Undefined when the projector finished synchronously; else the promise of its end. */
  projector(app: AppDef, p: ResolvedProjector, event: ProjectorEvent, state: ProjectorState): MaybePromise<void>
  /** Releases engines and pools. */
  close(): Promise<void>
}

/** Runs builtin extensions; a WASM-bound function is refused with a clear error. */
export class BuiltinRunner implements ExtensionRunner {
  command(_app: AppDef, cmd: ResolvedCommand, args: Row, state: CommandState): MaybePromise<Row | undefined | void> {
    if (isWasmRef(cmd.exec)) throw noWasm(cmd.qname)
    return cmd.exec(args, state)
  }

  async query(_app: AppDef, q: ResolvedQuery, args: Row, state: QueryState): Promise<Iterable<Row> | AsyncIterable<Row>> {
    if (isWasmRef(q.exec)) throw noWasm(q.qname)
    return q.exec(args, state)
  }

  projector(_app: AppDef, p: ResolvedProjector, event: ProjectorEvent, state: ProjectorState): MaybePromise<void> {
    if (isWasmRef(p.exec)) throw noWasm(p.qname)
    return p.exec(event, state)
  }

  async close(): Promise<void> {}
}

function noWasm(qname: string): VvmError {
  return new VvmError('INTERNAL', `${qname} is bound to a WASM export, and this worker has no WASM engines`, { qname })
}
