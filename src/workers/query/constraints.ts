// Parse-style read constraints: `where` ($eq $gt $gte $lt $lte $in, or a plain value for
// equality), `order` ("field" or "-field", comma-separated), `skip`, `limit`, `keys`
// (comma-separated fields to return). Bad constraints are a 400 naming what is wrong.

import { BadRequestError } from '../../shared/errors.js'
import type { ReadParams } from '../../shared/engine-messages.js'

type Row = Record<string, unknown>
export type Predicate = (row: Row) => boolean

const OPERATORS = new Set(['$eq', '$gt', '$gte', '$lt', '$lte', '$in'])
export const LIMIT_DEFAULT = 100
/** Why 10,000: one reply stays a few MiB; larger reads page with skip/limit. */
export const LIMIT_MAX = 10_000
const IN_VALUES_MAX = 1000

export interface Constraints {
  where: Record<string, Record<string, unknown>>
  filter: Predicate
  order: { field: string; desc: boolean }[]
  skip: number
  limit: number
  keys: string[] | undefined
}

export function parseConstraints(p: ReadParams | null): Constraints {
  const where = normalizeWhere(p?.where)
  const limit = p?.limit ?? LIMIT_DEFAULT
  if (!Number.isInteger(limit) || limit < 0 || limit > LIMIT_MAX) throw new BadRequestError(`limit ${String(limit)} is invalid: expected an integer 0..${LIMIT_MAX}`)
  const skip = p?.skip ?? 0
  if (!Number.isInteger(skip) || skip < 0) throw new BadRequestError(`skip ${String(skip)} is invalid: expected an integer >= 0`)
  const order = (p?.order ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0)
    .map((s) => (s.startsWith('-') ? { field: s.slice(1), desc: true } : { field: s, desc: false }))
  const keys = p?.keys === undefined ? undefined : p.keys.split(',').map((s) => s.trim()).filter((s) => s.length > 0)
  return { where, filter: compileWhere(where), order, skip, limit, keys }
}

function normalizeWhere(where: unknown): Record<string, Record<string, unknown>> {
  if (where === undefined || where === null) return {}
  if (typeof where !== 'object' || Array.isArray(where)) throw new BadRequestError('where must be a JSON object')
  const out: Record<string, Record<string, unknown>> = {}
  for (const [field, cond] of Object.entries(where as Row)) {
    const isOps = typeof cond === 'object' && cond !== null && !Array.isArray(cond)
    const ops = isOps ? (cond as Row) : { $eq: cond }
    for (const [op, v] of Object.entries(ops)) {
      if (!OPERATORS.has(op)) throw new BadRequestError(`where.${field}: unknown operator '${op}' (allowed: ${[...OPERATORS].join(' ')})`)
      if (op === '$in' && (!Array.isArray(v) || v.length > IN_VALUES_MAX)) throw new BadRequestError(`where.${field}.$in must be an array of at most ${IN_VALUES_MAX} values`)
      if (op !== '$in' && (typeof v === 'object' && v !== null)) throw new BadRequestError(`where.${field}.${op} must be a scalar`)
    }
    out[field] = ops
  }
  return out
}

function compileWhere(where: Record<string, Record<string, unknown>>): Predicate {
  const tests: Predicate[] = []
  for (const [field, ops] of Object.entries(where)) {
    for (const [op, v] of Object.entries(ops)) {
      switch (op) {
        case '$eq': tests.push((r) => r[field] === v); break
        case '$gt': tests.push((r) => compare(r[field], v) > 0); break
        case '$gte': tests.push((r) => compare(r[field], v) >= 0); break
        case '$lt': tests.push((r) => compare(r[field], v) < 0); break
        case '$lte': tests.push((r) => compare(r[field], v) <= 0); break
        case '$in': { const set = new Set(v as unknown[]); tests.push((r) => set.has(r[field])); break }
      }
    }
  }
  return (r) => tests.every((t) => t(r))
}

/** Numbers with numbers, strings with strings; anything else (or a missing field) is not comparable. */
function compare(a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b)
  return Number.NaN
}

/** Order, skip, limit and keys on rows already filtered. */
export function finishRows(rows: Row[], c: Constraints): Row[] {
  if (c.order.length > 0) {
    rows.sort((x, y) => {
      for (const o of c.order) {
        const d = compareForSort(x[o.field], y[o.field])
        if (d !== 0) return o.desc ? -d : d
      }
      return 0
    })
  }
  const page = rows.slice(c.skip, c.skip + c.limit)
  if (c.keys === undefined) return page
  const keys = c.keys
  return page.map((r) => Object.fromEntries(keys.filter((k) => k in r).map((k) => [k, r[k]])))
}

function compareForSort(a: unknown, b: unknown): number {
  if (a === b) return 0
  if (a === undefined || a === null) return -1
  if (b === undefined || b === null) return 1
  const d = compare(a, b)
  return Number.isNaN(d) ? String(a).localeCompare(String(b)) : d
}
