// The state API that extensions see. The same shape serves builtin JS and (through the host
// ABI) WASM extensions. Reads see everything committed plus what earlier commands of the same
// batch staged (the command processor's overlay).

export type Row = Record<string, unknown>

/** Who called: commands and queries see it as `state.principal`. */
export interface Principal {
  /** The login of the caller's token; '' without a token (anonymous), for jobs and with `--auth off`. */
  readonly login: string
  /** The caller's roles in this workspace: `owner`, `public` (everyone) and the app's own roles. */
  readonly roles: readonly string[]
}

/** A record as read: its fields plus `sys.ID`, `sys.QName`, `sys.IsActive`. */
export type RecordRow = Row & { readonly 'sys.ID': number; readonly 'sys.QName': string; readonly 'sys.IsActive': boolean }

export interface ViewRange {
  /** Clustering-column bounds: rows with from <= cc < to (each a partial tuple, by cc order). */
  readonly from?: Row
  readonly to?: Row
  readonly limit?: number
  readonly reverse?: boolean
}

export interface ReadState {
  readonly wsid: number
  /** A record of the workspace, or undefined when no such id exists. */
  record(id: number): Promise<RecordRow | undefined>
  /** One view row by full key (pk and cc fields), or undefined. */
  viewGet(view: string, key: Row): Promise<Row | undefined>
  /** View rows of one partition key (all pk fields), in clustering order. Bounded by `limit`. */
  viewRead(view: string, pk: Row, range?: ViewRange): AsyncIterable<Row>
}

export interface CommandState extends ReadState {
  readonly principal: Principal
  /** Stages a new record; returns its id, unique in the workspace. */
  create(table: string, fields: Row): number
  /** Stages new values for some fields of an existing record. */
  update(id: number, fields: Row): Promise<void>
}

export interface QueryState extends ReadState {
  readonly principal: Principal
}

export interface ProjectorState extends ReadState {
  /** Writes (inserts or replaces) one view row; `key` holds all pk and cc fields. */
  viewPut(view: string, key: Row, value: Row): void
}
