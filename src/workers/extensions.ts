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

export interface ExtensionRunner {
  command(app: AppDef, cmd: ResolvedCommand, args: Row, state: CommandState): Promise<Row | undefined>
  query(app: AppDef, q: ResolvedQuery, args: Row, state: QueryState): Promise<Iterable<Row> | AsyncIterable<Row>>
  projector(app: AppDef, p: ResolvedProjector, event: ProjectorEvent, state: ProjectorState): Promise<void>
  /** Releases engines and pools. */
  close(): Promise<void>
}

/** Runs builtin extensions; a WASM-bound function is refused with a clear error. */
export class BuiltinRunner implements ExtensionRunner {
  async command(_app: AppDef, cmd: ResolvedCommand, args: Row, state: CommandState): Promise<Row | undefined> {
    if (isWasmRef(cmd.exec)) throw noWasm(cmd.qname)
    const ret = await cmd.exec(args, state)
    return ret === undefined || ret === null ? undefined : (ret as Row)
  }

  async query(_app: AppDef, q: ResolvedQuery, args: Row, state: QueryState): Promise<Iterable<Row> | AsyncIterable<Row>> {
    if (isWasmRef(q.exec)) throw noWasm(q.qname)
    return q.exec(args, state)
  }

  async projector(_app: AppDef, p: ResolvedProjector, event: ProjectorEvent, state: ProjectorState): Promise<void> {
    if (isWasmRef(p.exec)) throw noWasm(p.qname)
    await p.exec(event, state)
  }

  async close(): Promise<void> {}
}

function noWasm(qname: string): VvmError {
  return new VvmError('INTERNAL', `${qname} is bound to a WASM export, and this worker has no WASM engines`, { qname })
}
