// The application model (seed 001: DefinePackage / DefineApp). Types only; `define.ts` builds
// and validates, `state.ts` is the state API extensions see.

import type { CommandState, ProjectorState, QueryState } from './state.js'
import type { Acl, GrantDef } from './acl.js'

export type FieldType =
  | 'int32' | 'int64' | 'float32' | 'float64' | 'money'
  | 'bool' | 'varchar' | 'bytes' | 'ref' | 'qname'

/** A field: a bare type (required) or `{ type, required?, maxLen? }`. */
export type FieldSpec = FieldType | { readonly type: FieldType; readonly required?: boolean; readonly maxLen?: number; readonly min?: number }
export type Fields = Readonly<Record<string, FieldSpec>>

export type TableKind = 'cdoc' | 'wdoc' | 'crecord' | 'wrecord'

export interface TableDef {
  readonly kind: TableKind
  readonly fields: Fields
}

export interface ViewDef {
  readonly key: { readonly pk: readonly string[]; readonly cc: readonly string[] }
  /** Types of key fields and value fields. Key fields must be listed here too. */
  readonly fields: Fields
}

export interface Rate {
  readonly count: number
  readonly perSeconds: number
  /** Whose bucket: per workspace (default), per app partition, or per client address. */
  readonly scope?: 'workspace' | 'partition' | 'address'
}

export type Builtin<S, A, R> = (args: A, state: S) => R | Promise<R>

/** A function bound to an export of a WebAssembly module (engine issue: WASM extensions). */
export interface WasmRef {
  readonly wasm: string
  readonly export: string
}

export interface CommandDef {
  readonly args?: Fields
  readonly unloggedArgs?: Fields
  readonly result?: Fields
  readonly exec: Builtin<CommandState, Record<string, unknown>, Record<string, unknown> | void> | WasmRef
  readonly rate?: Rate
}

export interface QueryDef {
  readonly args?: Fields
  readonly result?: Fields
  /** Returns the rows of `{"results": [...]}`. */
  readonly exec: Builtin<QueryState, Record<string, unknown>, Iterable<Record<string, unknown>> | AsyncIterable<Record<string, unknown>>> | WasmRef
  readonly rate?: Rate
}

export interface ProjectorEvent {
  readonly qname: string
  readonly wsid: number
  readonly plogOffset: number
  readonly wlogOffset: number
  readonly registeredAtMs: number
  readonly args: Record<string, unknown>
  readonly cuds: readonly ProjectorCud[]
}

export interface ProjectorCud {
  readonly id: number
  readonly table: string
  readonly isNew: boolean
  readonly fields: Record<string, unknown>
}

export interface ProjectorDef {
  /** Qualified names of commands and tables whose events trigger the projector. */
  readonly on: readonly string[]
  /** Sync projectors commit with the command's batch; async ones follow the PLog. */
  readonly sync?: boolean
  readonly exec: ((event: ProjectorEvent, state: ProjectorState) => void | Promise<void>) | WasmRef
}

export interface JobDef {
  /** Cron expression (croner): 5 fields, or 6 with seconds first (every 10 s: '0/10 * * * * *'). */
  readonly cron: string
  /** Runs per app partition, in the partition's app workspace, through the command path. */
  readonly exec: ((state: CommandState) => void | Promise<void>) | WasmRef
}

export interface PackageDef {
  readonly tables?: Readonly<Record<string, TableDef>>
  readonly views?: Readonly<Record<string, ViewDef>>
  readonly commands?: Readonly<Record<string, CommandDef>>
  readonly queries?: Readonly<Record<string, QueryDef>>
  readonly projectors?: Readonly<Record<string, ProjectorDef>>
  readonly jobs?: Readonly<Record<string, JobDef>>
  /** Roles this package declares (lower case; unique in the app). `owner` and `public` are built in. */
  readonly roles?: readonly string[]
  /** `grant(role, ops, resources, { fields })` (acl.ts); any role and resource of the app. */
  readonly grants?: readonly GrantDef[]
}

export interface Package {
  readonly name: string
  readonly def: PackageDef
}

export interface AppOptions {
  readonly packages: readonly Package[]
  /** Fixed once data exists. */
  readonly partitions?: number
  readonly version?: string
}

/** A resolved, validated application: every name qualified `pkg.Name`. */
export interface AppDef {
  readonly qname: string
  readonly version: string
  readonly partitions: number | undefined
  readonly tables: ReadonlyMap<string, ResolvedTable>
  readonly views: ReadonlyMap<string, ResolvedView>
  readonly commands: ReadonlyMap<string, ResolvedCommand>
  readonly queries: ReadonlyMap<string, ResolvedQuery>
  readonly projectors: ReadonlyMap<string, ResolvedProjector>
  /** Sync projectors by the qname that triggers them. */
  readonly syncProjectorsOn: ReadonlyMap<string, readonly ResolvedProjector[]>
  /** Async projectors, in definition order (an actualizer each per partition). */
  readonly asyncProjectors: readonly ResolvedProjector[]
  readonly jobs: ReadonlyMap<string, ResolvedJob>
  /** Declared roles plus the built-in `owner` and `public`. */
  readonly roles: ReadonlySet<string>
  readonly acl: Acl
}

export interface ResolvedJob {
  readonly qname: string
  readonly cron: string
  readonly exec: JobDef['exec']
}

export interface ResolvedField {
  readonly name: string
  readonly type: FieldType
  readonly required: boolean
  readonly maxLen: number
  readonly min: number | undefined
}

export interface ResolvedTable {
  readonly qname: string
  readonly kind: TableKind
  readonly fields: ReadonlyMap<string, ResolvedField>
}

export interface ResolvedView {
  readonly qname: string
  readonly pk: readonly ResolvedField[]
  readonly cc: readonly ResolvedField[]
  readonly value: ReadonlyMap<string, ResolvedField>
}

export interface ResolvedCommand {
  readonly qname: string
  readonly args: ReadonlyMap<string, ResolvedField>
  readonly unloggedArgs: ReadonlyMap<string, ResolvedField>
  readonly exec: CommandDef['exec']
  readonly rate: Rate | undefined
}

export interface ResolvedQuery {
  readonly qname: string
  readonly args: ReadonlyMap<string, ResolvedField>
  readonly exec: QueryDef['exec']
  readonly rate: Rate | undefined
}

export interface ResolvedProjector {
  readonly qname: string
  readonly on: readonly string[]
  readonly sync: boolean
  readonly exec: ProjectorDef['exec']
}
