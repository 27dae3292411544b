// Roles and grants (issue #10), after Voedger's ACL: a package declares roles and grants
// `grant(role, ops, resources, { fields })`; the built-in role `owner` may do everything in its
// workspace (and grant roles), `public` is every caller, with or without a token. Grants are
// resolved and checked when the app loads (define.ts); `allowedFields` is the one question the
// processors ask (src/workers/authorize.ts), and the main thread asks it for anonymous callers.
//
// Ops: `execute` (commands, queries), `select` (tables, views), `insert` and `update` (tables;
// deactivating a record is an update of `sys.IsActive`). Field lists: `select` returns only
// the listed fields (and filters and sorts only by them), `update` may change only them.

import type { Fields } from './types.js'

export type GrantOp = 'execute' | 'select' | 'insert' | 'update'
export const GRANT_OPS: readonly GrantOp[] = ['execute', 'select', 'insert', 'update']

export const ROLE_OWNER = 'owner'
export const ROLE_PUBLIC = 'public'
export const BUILTIN_ROLES: readonly string[] = [ROLE_OWNER, ROLE_PUBLIC]
export const ROLE_NAME_RE = /^[a-z][a-z0-9_]{0,63}$/

/** The record flag a deactivation changes; an `update` field list must name it to allow DELETE. */
export const FIELD_IS_ACTIVE = 'sys.IsActive'

/** Logins: 3..64 characters of [a-z0-9._-]. */
export const LOGIN_RE = /^[a-z0-9._-]{3,64}$/

/** The built-in commands that change a workspace's stored grants; only an owner runs them. */
export const SYS_GRANT_ROLE = 'sys.GrantRole'
export const SYS_REVOKE_ROLE = 'sys.RevokeRole'
export const SYS_PACKAGE = 'sys'
export const SYS_ROLE_COMMAND_ARGS: Fields = { login: { type: 'varchar', maxLen: 64 }, role: { type: 'varchar', maxLen: 64 } }

export interface GrantDef {
  readonly role: string
  readonly ops: readonly GrantOp[]
  /** Qualified names of commands, queries, tables and views of the app. */
  readonly resources: readonly string[]
  /** select: the fields returned; update: the fields that may change. Absent: all. */
  readonly fields?: readonly string[]
}

export function grant(role: string, ops: readonly GrantOp[], resources: readonly string[], options: { fields?: readonly string[] } = {}): GrantDef {
  return Object.freeze({ role, ops: [...ops], resources: [...resources], ...(options.fields === undefined ? {} : { fields: [...options.fields] }) })
}

/** Allowed fields: `null` for every field. */
export type FieldGrant = ReadonlySet<string> | null

/** resource qname → op → role → allowed fields. */
export type Acl = ReadonlyMap<string, ReadonlyMap<GrantOp, ReadonlyMap<string, FieldGrant>>>

/**
 * What `roles` may do with `resource`: `undefined` when the op is not granted, `null` when it
 * is granted for every field, else the union of the granted field lists.
 */
export function allowedFields(acl: Acl, roles: readonly string[], op: GrantOp, resource: string): FieldGrant | undefined {
  if (roles.includes(ROLE_OWNER)) return null
  const byRole = acl.get(resource)?.get(op)
  if (byRole === undefined) return undefined
  let union: Set<string> | undefined
  for (const role of roles) {
    const f = byRole.get(role)
    if (f === undefined) continue
    if (f === null) return null
    union ??= new Set()
    for (const name of f) union.add(name)
  }
  return union
}
