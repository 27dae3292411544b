// definePackage / defineApp (seed 001). Definitions are validated here, at load: a bad one is
// refused with a DefinitionError that names the package, the item and what is wrong.

import { Cron } from 'croner'
import type {
  AppDef, AppOptions, CommandDef, JobDef, ResolvedJob, FieldSpec, FieldType, Fields, Package, PackageDef, ProjectorDef, QueryDef,
  Rate, ResolvedCommand, ResolvedField, ResolvedProjector, ResolvedQuery, ResolvedTable, ResolvedView, TableDef, ViewDef, WasmRef,
} from './types.js'
import {
  BUILTIN_ROLES, FIELD_IS_ACTIVE, GRANT_OPS, ROLE_NAME_RE, ROLE_OWNER, SYS_GRANT_ROLE, SYS_PACKAGE, SYS_REVOKE_ROLE, SYS_ROLE_COMMAND_ARGS,
  type Acl, type FieldGrant, type GrantDef, type GrantOp,
} from './acl.js'
import { VvmError } from '../errors.js'

export class DefinitionError extends Error {
  readonly code = 'VVM_DEFINITION'
  constructor(message: string) {
    super(message)
    this.name = 'DefinitionError'
  }
}

export const FIELD_TYPES: readonly FieldType[] = ['int32', 'int64', 'float32', 'float64', 'money', 'bool', 'varchar', 'bytes', 'ref', 'qname']
const TABLE_KINDS = ['cdoc', 'wdoc', 'crecord', 'wrecord'] as const
const NAME_RE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/
const APP_QNAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}\/[a-z0-9][a-z0-9_-]{0,62}$/
/** Why 1024: Voedger's varchar default limit is 255 and maximum 1024 (64 KiB as bytes). */
export const VARCHAR_LEN_DEFAULT = 1024
export const BYTES_LEN_DEFAULT = 65536
export const PARTITIONS_MAX = 1024

/** Field names reserved for the system (records carry them on read). */
const RESERVED_FIELD_PREFIX = 'sys.'

export function definePackage(name: string, def: PackageDef): Package {
  if (!NAME_RE.test(name)) throw new DefinitionError(`package name '${name}' is invalid: expected a letter then up to 63 letters, digits or '_'`)
  if (name === SYS_PACKAGE) throw new DefinitionError(`package name '${SYS_PACKAGE}' is reserved for the built-in commands (${SYS_GRANT_ROLE}, ${SYS_REVOKE_ROLE})`)
  return Object.freeze({ name, def })
}

export const perSecond = (count: number, scope?: Rate['scope']): Rate => ({ count, perSeconds: 1, scope })
export const perMinute = (count: number, scope?: Rate['scope']): Rate => ({ count, perSeconds: 60, scope })
export const perHour = (count: number, scope?: Rate['scope']): Rate => ({ count, perSeconds: 3600, scope })

export function wasm(file: string, exportName: string): WasmRef {
  return { wasm: file, export: exportName }
}

export function isWasmRef(x: unknown): x is WasmRef {
  return typeof x === 'object' && x !== null && typeof (x as WasmRef).wasm === 'string'
}

export function defineApp(qname: string, options: AppOptions): AppDef {
  if (!APP_QNAME_RE.test(qname)) throw new DefinitionError(`app name '${qname}' is invalid: expected 'owner/app' in lower case letters, digits, '-' or '_'`)
  if (options.partitions !== undefined && !(Number.isInteger(options.partitions) && options.partitions >= 1 && options.partitions <= PARTITIONS_MAX)) {
    throw new DefinitionError(`app ${qname}: partitions ${options.partitions} is invalid: expected an integer 1..${PARTITIONS_MAX}`)
  }
  const b = new AppBuilder(qname)
  const seen = new Set<string>()
  for (const pkg of options.packages) {
    if (seen.has(pkg.name)) throw new DefinitionError(`app ${qname}: package '${pkg.name}' is listed twice`)
    seen.add(pkg.name)
  }
  for (const pkg of options.packages) b.declare(pkg)
  for (const pkg of options.packages) b.resolve(pkg)
  return b.build(options)
}

class AppBuilder {
  readonly tables = new Map<string, ResolvedTable>()
  readonly views = new Map<string, ResolvedView>()
  readonly commands = new Map<string, ResolvedCommand>()
  readonly queries = new Map<string, ResolvedQuery>()
  readonly projectors = new Map<string, ResolvedProjector>()
  readonly jobs = new Map<string, ResolvedJob>()
  readonly roles = new Set<string>(BUILTIN_ROLES)
  private readonly grants: { pkg: string; g: GrantDef }[] = []
  private readonly names = new Set<string>()

  constructor(readonly qname: string) {}

  /** First pass: tables, so that refs and projector triggers can name any of them. */
  declare(pkg: Package): void {
    const roles = pkg.def.roles ?? []
    if (!Array.isArray(roles)) throw new DefinitionError(`app ${this.qname}: package ${pkg.name}: roles must be an array of role names`)
    for (const role of roles) {
      if (typeof role !== 'string' || !ROLE_NAME_RE.test(role)) throw new DefinitionError(`app ${this.qname}: package ${pkg.name}: role name '${String(role)}' is invalid: expected a lower-case letter then up to 63 of [a-z0-9_]`)
      if (this.roles.has(role)) throw new DefinitionError(`app ${this.qname}: package ${pkg.name}: role '${role}' is ${BUILTIN_ROLES.includes(role) ? 'built in' : 'declared twice'}`)
      this.roles.add(role)
    }
    const grants = pkg.def.grants ?? []
    if (!Array.isArray(grants)) throw new DefinitionError(`app ${this.qname}: package ${pkg.name}: grants must be an array of grant(...)`)
    for (const g of grants) this.grants.push({ pkg: pkg.name, g })
    for (const [name, t] of entries<TableDef>(pkg.def.tables)) {
      const q = this.claim(pkg, name, 'table')
      if (!TABLE_KINDS.includes(t?.kind as never)) throw this.err(q, `kind '${String(t?.kind)}' is invalid: expected one of ${TABLE_KINDS.join(', ')}`)
      this.tables.set(q, { qname: q, kind: t.kind, fields: this.fields(q, t.fields, 'fields') })
    }
  }

  resolve(pkg: Package): void {
    for (const [name, v] of entries<ViewDef>(pkg.def.views)) this.view(this.claim(pkg, name, 'view'), v)
    for (const [name, c] of entries<CommandDef>(pkg.def.commands)) {
      const q = this.claim(pkg, name, 'command')
      this.checkExec(q, c?.exec)
      this.commands.set(q, {
        qname: q,
        args: this.fields(q, c.args, 'args'),
        unloggedArgs: this.fields(q, c.unloggedArgs, 'unloggedArgs'),
        exec: c.exec,
        rate: this.rate(q, c.rate),
      })
    }
    for (const [name, qd] of entries<QueryDef>(pkg.def.queries)) {
      const q = this.claim(pkg, name, 'query')
      this.checkExec(q, qd?.exec)
      this.queries.set(q, { qname: q, args: this.fields(q, qd.args, 'args'), exec: qd.exec, rate: this.rate(q, qd.rate) })
    }
    for (const [name, p] of entries<ProjectorDef>(pkg.def.projectors)) {
      const q = this.claim(pkg, name, 'projector')
      this.checkExec(q, p?.exec)
      if (!Array.isArray(p.on) || p.on.length === 0) throw this.err(q, `'on' must list at least one command or table`)
      this.projectors.set(q, { qname: q, on: [...p.on], sync: p.sync === true, exec: p.exec })
    }
    for (const [name, j] of entries<JobDef>(pkg.def.jobs)) {
      const q = this.claim(pkg, name, 'job')
      this.checkExec(q, j?.exec)
      if (typeof j.cron !== 'string') throw this.err(q, `cron must be a cron expression string`)
      try {
        new Cron(j.cron, { paused: true }).stop()
      } catch (err) {
        throw this.err(q, `cron '${j.cron}' is invalid: ${(err as Error).message}`)
      }
      this.jobs.set(q, { qname: q, cron: j.cron, exec: j.exec })
    }
  }

  build(options: AppOptions): AppDef {
    for (const q of [SYS_GRANT_ROLE, SYS_REVOKE_ROLE]) {
      this.commands.set(q, { qname: q, args: this.fields(q, SYS_ROLE_COMMAND_ARGS, 'args'), unloggedArgs: new Map(), exec: sysCommandExec, rate: undefined })
    }
    const acl = this.acl()
    const syncOn = new Map<string, ResolvedProjector[]>()
    for (const p of this.projectors.values()) {
      for (const trigger of p.on) {
        if (!this.commands.has(trigger) && !this.tables.has(trigger) && !this.jobs.has(trigger) && trigger !== 'sys.CUD') throw this.err(p.qname, `'on' names '${trigger}', which is neither a command nor a table of the app`)
        if (!p.sync) continue
        const list = syncOn.get(trigger) ?? []
        list.push(p)
        syncOn.set(trigger, list)
      }
    }
    return Object.freeze({
      qname: this.qname,
      version: options.version ?? '0',
      partitions: options.partitions,
      tables: this.tables, views: this.views, commands: this.commands, queries: this.queries, projectors: this.projectors,
      syncProjectorsOn: syncOn,
      asyncProjectors: [...this.projectors.values()].filter((p) => !p.sync),
      jobs: this.jobs,
      roles: this.roles,
      acl,
    })
  }

  /** Resolves every grant after all packages are known: any role and resource of the app. */
  private acl(): Acl {
    const acl = new Map<string, Map<GrantOp, Map<string, FieldGrant>>>()
    for (const { pkg, g } of this.grants) {
      const where = `app ${this.qname}: package ${pkg}: grant to '${String(g?.role)}'`
      if (typeof g !== 'object' || g === null || !Array.isArray(g.ops) || !Array.isArray(g.resources)) throw new DefinitionError(`${where}: expected grant(role, ops, resources, { fields })`)
      if (!this.roles.has(g.role)) throw new DefinitionError(`${where}: role '${g.role}' is not declared (roles: ${[...this.roles].join(', ')})`)
      if (g.role === ROLE_OWNER) throw new DefinitionError(`${where}: the owner may do everything already`)
      if (g.ops.length === 0 || g.resources.length === 0) throw new DefinitionError(`${where}: ops and resources must not be empty`)
      for (const op of g.ops) if (!GRANT_OPS.includes(op)) throw new DefinitionError(`${where}: op '${String(op)}' is invalid: expected one of ${GRANT_OPS.join(', ')}`)
      for (const resource of g.resources) {
        const kind = this.kindOf(resource)
        if (kind === undefined) throw new DefinitionError(`${where}: resource '${String(resource)}' is not a command, query, table or view of the app`)
        if (resource.startsWith(SYS_PACKAGE + '.')) throw new DefinitionError(`${where}: ${resource} is for the owner only`)
        const fields = g.fields === undefined ? null : this.grantFields(where, resource, kind, g)
        for (const op of g.ops) {
          const ok = op === 'execute' ? kind === 'command' || kind === 'query' : op === 'select' ? kind === 'table' || kind === 'view' : kind === 'table'
          if (!ok) throw new DefinitionError(`${where}: op '${op}' does not apply to ${kind} ${resource} (execute: commands and queries; select: tables and views; insert, update: tables)`)
          if (fields !== null && op !== 'select' && op !== 'update') throw new DefinitionError(`${where}: a field list applies to select and update, not to ${op}`)
          let byOp = acl.get(resource)
          if (byOp === undefined) acl.set(resource, (byOp = new Map()))
          let byRole = byOp.get(op)
          if (byRole === undefined) byOp.set(op, (byRole = new Map()))
          // Two grants of the same op to the same role add up: a field list widens, none means all.
          const prev = byRole.get(g.role)
          byRole.set(g.role, prev === null || fields === null ? null : prev === undefined ? fields : new Set([...prev, ...fields]))
        }
      }
    }
    return acl
  }

  private grantFields(where: string, resource: string, kind: string, g: GrantDef): Set<string> {
    if (!Array.isArray(g.fields) || g.fields.length === 0) throw new DefinitionError(`${where}: fields must list at least one field`)
    const known = kind === 'table'
      ? new Set([...this.tables.get(resource)!.fields.keys(), FIELD_IS_ACTIVE])
      : kind === 'view' ? new Set([...this.views.get(resource)!.pk, ...this.views.get(resource)!.cc, ...this.views.get(resource)!.value.values()].map((f) => f.name)) : new Set<string>()
    for (const f of g.fields) if (!known.has(f)) throw new DefinitionError(`${where}: field '${String(f)}' is not a field of ${resource}`)
    return new Set(g.fields)
  }

  private kindOf(resource: unknown): 'command' | 'query' | 'table' | 'view' | undefined {
    if (typeof resource !== 'string') return undefined
    return this.commands.has(resource) ? 'command' : this.queries.has(resource) ? 'query' : this.tables.has(resource) ? 'table' : this.views.has(resource) ? 'view' : undefined
  }

  private view(q: string, v: ViewDef): void {
    if (typeof v !== 'object' || v === null || typeof v.key !== 'object' || v.key === null) throw this.err(q, `a view needs 'key: { pk: [...], cc: [...] }' and 'fields'`)
    const fields = this.fields(q, v.fields, 'fields')
    const keyField = (name: string, part: string): ResolvedField => {
      const f = fields.get(name)
      if (!f) throw this.err(q, `key.${part} names '${name}', which is not in its fields`)
      if (f.type === 'bytes') throw this.err(q, `key field '${name}' cannot be of type bytes`)
      return { ...f, required: true }
    }
    if (!Array.isArray(v.key.pk) || v.key.pk.length === 0) throw this.err(q, `key.pk must list at least one field`)
    const cc = Array.isArray(v.key.cc) ? v.key.cc : []
    const pk = v.key.pk.map((n) => keyField(n, 'pk'))
    const ccFields = cc.map((n) => keyField(n, 'cc'))
    const keyNames = new Set([...v.key.pk, ...cc])
    if (keyNames.size !== v.key.pk.length + cc.length) throw this.err(q, `a field appears twice in its key`)
    const value = new Map([...fields].filter(([n]) => !keyNames.has(n)))
    this.views.set(q, { qname: q, pk, cc: ccFields, value })
  }

  private fields(owner: string, fields: Fields | undefined, what: string): Map<string, ResolvedField> {
    const out = new Map<string, ResolvedField>()
    if (fields === undefined) return out
    if (typeof fields !== 'object' || fields === null) throw this.err(owner, `${what} must be an object of field specs`)
    for (const [name, spec] of Object.entries(fields)) {
      if (!NAME_RE.test(name) || name.startsWith(RESERVED_FIELD_PREFIX)) throw this.err(owner, `${what}: field name '${name}' is invalid`)
      out.set(name, this.field(owner, name, spec))
    }
    return out
  }

  private field(owner: string, name: string, spec: FieldSpec): ResolvedField {
    const s = typeof spec === 'string' ? { type: spec } : spec
    if (typeof s !== 'object' || s === null || !FIELD_TYPES.includes(s.type)) {
      throw this.err(owner, `field '${name}': type '${String((s as { type?: unknown })?.type ?? s)}' is invalid: expected one of ${FIELD_TYPES.join(', ')}`)
    }
    const limitDefault = s.type === 'bytes' ? BYTES_LEN_DEFAULT : VARCHAR_LEN_DEFAULT
    const maxLen = 'maxLen' in s && s.maxLen !== undefined ? s.maxLen : limitDefault
    if (!Number.isInteger(maxLen) || maxLen < 1 || maxLen > BYTES_LEN_DEFAULT) throw this.err(owner, `field '${name}': maxLen ${maxLen} is invalid: expected 1..${BYTES_LEN_DEFAULT}`)
    const min = 'min' in s ? s.min : undefined
    if (min !== undefined && typeof min !== 'number') throw this.err(owner, `field '${name}': min must be a number`)
    // Bare types are required; `{ required: false }` makes a field optional.
    const required = typeof spec === 'string' ? true : s.required !== false
    return { name, type: s.type, required, maxLen, min }
  }

  private rate(q: string, rate: Rate | undefined): Rate | undefined {
    if (rate === undefined) return undefined
    const ok = Number.isInteger(rate.count) && rate.count >= 1 && typeof rate.perSeconds === 'number' && rate.perSeconds > 0
    if (!ok) throw this.err(q, `rate {count: ${rate.count}, perSeconds: ${rate.perSeconds}} is invalid: expected a positive integer count over a positive period`)
    if (rate.scope !== undefined && !['workspace', 'partition', 'address'].includes(rate.scope)) throw this.err(q, `rate scope '${rate.scope}' is invalid`)
    return rate
  }

  private checkExec(q: string, exec: unknown): void {
    if (typeof exec !== 'function' && !isWasmRef(exec)) throw this.err(q, `exec must be a function or wasm('file.wasm', 'export')`)
  }

  private claim(pkg: Package, name: string, what: string): string {
    if (!NAME_RE.test(name)) throw new DefinitionError(`app ${this.qname}: ${what} name '${pkg.name}.${name}' is invalid`)
    const q = `${pkg.name}.${name}`
    if (this.names.has(q)) throw new DefinitionError(`app ${this.qname}: name '${q}' is defined twice`)
    this.names.add(q)
    return q
  }

  private err(q: string, message: string): DefinitionError {
    return new DefinitionError(`app ${this.qname}: ${q}: ${message}`)
  }
}

/** sys.GrantRole and sys.RevokeRole are carried out by the command processor itself. */
function sysCommandExec(): never {
  throw new VvmError('INTERNAL', 'a built-in sys command reached the extension runner')
}

function entries<T>(rec: Readonly<Record<string, T>> | undefined): [string, T][] {
  return rec === undefined ? [] : Object.entries(rec)
}
