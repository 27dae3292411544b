// Value validation against field definitions: arguments, record fields, view keys and values.
// Bad input is a ValidationError (400) naming the field, never a crash.

import { ValidationError } from '../errors.js'
import type { FieldType, ResolvedField } from './types.js'

const INT32_MIN = -2147483648
const INT32_MAX = 2147483647
const QNAME_RE = /^[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*$/
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/

export type Mode = 'full' | 'partial'

/**
 * Checks `input` against `fields` and returns a fresh object with only declared fields.
 * `full`: required fields must be present (args, new records); `partial`: only given fields
 * are checked (record updates). `null` is allowed for optional fields only.
 */
export function validateFields(
  fields: ReadonlyMap<string, ResolvedField>, input: unknown, mode: Mode, owner: string, what: string,
): Record<string, unknown> {
  if (input === undefined || input === null) input = {}
  if (typeof input !== 'object' || Array.isArray(input)) throw new ValidationError(`${what} of ${owner} must be a JSON object`, owner)
  const out: Record<string, unknown> = {}
  const given = input as Record<string, unknown>
  // Object.keys, not entries: one array instead of a pair array per field.
  for (const name of Object.keys(given)) {
    const value = given[name]
    const f = fields.get(name)
    if (f === undefined) throw new ValidationError(`${what} of ${owner}: unknown field '${name}'`, owner)
    if (value === null) {
      if (f.required) throw new ValidationError(`${what} of ${owner}: field '${name}' is required and cannot be null`, owner)
      out[name] = null
      continue
    }
    checkValue(f, value, owner, what)
    out[name] = value
  }
  if (mode === 'full') {
    for (const f of fields.values()) {
      if (f.required && !(f.name in out)) throw new ValidationError(`${what} of ${owner}: field '${f.name}' (${f.type}) is required`, owner)
    }
  }
  return out
}

export function checkValue(f: ResolvedField, value: unknown, owner: string, what: string): void {
  const fail = (expected: string): never => {
    throw new ValidationError(`${what} of ${owner}: field '${f.name}' must be ${expected}, got ${describe(value)}`, owner)
  }
  if (!isOfType(f.type, value)) fail(expectedOf(f.type))
  if (typeof value === 'number' && f.min !== undefined && value < f.min) fail(`>= ${f.min}`)
  if (f.type === 'varchar' && (value as string).length > f.maxLen) fail(`at most ${f.maxLen} characters`)
  if (f.type === 'bytes' && Math.floor(((value as string).length * 3) / 4) > f.maxLen) fail(`at most ${f.maxLen} bytes (base64)`)
}

export function isOfType(type: FieldType, v: unknown): boolean {
  switch (type) {
    case 'int32': return Number.isInteger(v) && (v as number) >= INT32_MIN && (v as number) <= INT32_MAX
    case 'int64':
    case 'money': return Number.isSafeInteger(v)
    case 'ref': return Number.isSafeInteger(v) && (v as number) > 0
    case 'float32':
    case 'float64': return typeof v === 'number' && Number.isFinite(v)
    case 'bool': return typeof v === 'boolean'
    case 'varchar': return typeof v === 'string'
    case 'qname': return typeof v === 'string' && QNAME_RE.test(v)
    case 'bytes': return typeof v === 'string' && v.length % 4 === 0 && BASE64_RE.test(v)
  }
}

function expectedOf(type: FieldType): string {
  switch (type) {
    case 'int32': return 'a 32-bit integer'
    case 'int64': return 'an integer (at most 2^53-1 in magnitude)'
    case 'money': return 'an integer amount in minor units'
    case 'ref': return 'a positive record id'
    case 'float32':
    case 'float64': return 'a finite number'
    case 'bool': return 'true or false'
    case 'varchar': return 'a string'
    case 'qname': return "a qualified name 'pkg.Name'"
    case 'bytes': return 'base64 text'
  }
}

function describe(v: unknown): string {
  if (typeof v === 'string') return `string of length ${v.length}`
  if (Array.isArray(v)) return 'an array'
  return v === null ? 'null' : `${typeof v} ${typeof v === 'object' ? '' : String(v).slice(0, 32)}`.trim()
}
