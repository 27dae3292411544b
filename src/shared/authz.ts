// Authorization decisions shared by the main thread (anonymous callers: 401 before anything is
// queued) and the processors (the authorize stages: 403 before any extension runs or anything
// is staged). The grants themselves are the app's ACL (appdef/acl.ts); the roles a login holds
// in a workspace are its token's signed claims plus the grants stored by sys.GrantRole.

import { ROLE_OWNER, ROLE_PUBLIC, allowedFields, type FieldGrant, type GrantOp } from './appdef/acl.js'
import type { AppDef } from './appdef/types.js'
import type { Principal } from './appdef/state.js'
import { Op } from './engine-messages.js'
import { VvmError } from './errors.js'

/** A request without a token (roles: none but `public`, added by the processors). */
export const ANONYMOUS: Principal = Object.freeze({ login: '', roles: Object.freeze([]) as readonly string[] })
/** `--auth off`, and jobs: the owner of every workspace. */
export const SYSTEM_OWNER: Principal = Object.freeze({ login: '', roles: Object.freeze([ROLE_OWNER]) as readonly string[] })

/** The grant op an engine op needs; undefined for jobs (run by the system). */
export function grantOpOf(op: number): GrantOp | undefined {
  switch (op) {
    case Op.COMMAND:
    case Op.QUERY: return 'execute'
    case Op.DOC_CREATE: return 'insert'
    case Op.DOC_UPDATE:
    case Op.DOC_DEACTIVATE: return 'update'
    case Op.DOC_GET:
    case Op.CDOCS:
    case Op.VIEW: return 'select'
    default: return undefined
  }
}

/** The grant op of a request; a subscription needs what its read needs (execute a query, select the rest). */
export function grantOpFor(app: AppDef | undefined, op: number, qname: string): GrantOp | undefined {
  if (op !== Op.SUBSCRIBE) return grantOpOf(op)
  return app?.queries.has(qname) === true ? 'execute' : 'select'
}

/** Whether the roles of `p` depend on grants stored in the workspace (owners and anonymous callers need none). */
export function needsStoredGrants(p: Principal): boolean {
  return p.login !== '' && !p.roles.includes(ROLE_OWNER)
}

/** The caller's roles in the workspace: the token's, the stored grants, and `public`. */
export function effectiveRoles(p: Principal, stored: readonly string[]): Principal {
  // No stored grants (owners, and logins without any): no Set, and no copy when nothing is added.
  if (stored.length === 0 && !hasDuplicates(p.roles)) {
    return p.roles.includes(ROLE_PUBLIC) ? p : { login: p.login, roles: [...p.roles, ROLE_PUBLIC] }
  }
  const roles = new Set(p.roles)
  for (const r of stored) roles.add(r)
  roles.add(ROLE_PUBLIC)
  return { login: p.login, roles: [...roles] }
}

function hasDuplicates(roles: readonly string[]): boolean {
  for (let i = 1; i < roles.length; i++) if (roles.lastIndexOf(roles[i]!, i - 1) >= 0) return true
  return false
}

/**
 * Throws 403 FORBIDDEN unless `p` may do `op` on `resource` and, when `fields` are given, use
 * each of them; returns the fields it may use (null: all).
 */
export function authorize(app: AppDef, p: Principal, op: GrantOp, resource: string, wsid: number, fields?: Iterable<string>): FieldGrant {
  const allowed = allowedFields(app.acl, p.roles, op, resource)
  if (allowed === undefined) throw forbidden(p, `${op} ${resource}`, resource, wsid)
  if (allowed !== null && fields !== undefined) {
    for (const f of fields) if (!allowed.has(f)) throw forbidden(p, `${op} field '${f}' of ${resource}`, resource, wsid)
  }
  return allowed
}

function forbidden(p: Principal, what: string, resource: string, wsid: number): VvmError {
  const who = p.login === '' ? 'an anonymous caller' : `login '${p.login}'`
  return new VvmError('FORBIDDEN', `${who} may not ${what} in workspace ${wsid}`, { qname: resource })
}

const SYSTEM_FIELD_PREFIX = 'sys.'

/** A record or view row cut to the granted fields; a record keeps its system fields. */
export function projectRow(row: Record<string, unknown>, allowed: ReadonlySet<string>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(row)) if (allowed.has(k) || k.startsWith(SYSTEM_FIELD_PREFIX)) out[k] = v
  return out
}
