// Argument checks and expiry arithmetic every backend applies, so that all backends accept and
// reject the same inputs (the TCK relies on it). Bounds follow the tightest backend,
// Cassandra, so data written on mem or level can move to Cassandra unchanged.

import { VvmError } from '../errors.js'
import type { BatchItem, Bytes, ReadRange } from './types.js'

/** Cassandra's maximum TTL (20 years); larger values are rejected there. */
export const TTL_SECONDS_MAX = 630_720_000
/** Cassandra keeps clustering and partition key components below 64 KiB. */
export const PK_BYTES_MAX = 0xffff
export const CC_BYTES_MAX = 0xffff
/** Cassandra rejects mutations above half a commit-log segment (16 MiB by default). */
export const VALUE_BYTES_MAX = 8 * 1024 * 1024
/** One batch is one commit (one fsync on level); larger units of work should be split. */
export const BATCH_ITEMS_MAX = 65_536

export function checkPk(pk: Bytes): void {
  if (!(pk instanceof Uint8Array)) throw new VvmError('VALIDATION', 'storage: pk must be a Uint8Array')
  if (pk.length === 0) throw new VvmError('VALIDATION', 'storage: pk must not be empty')
  if (pk.length > PK_BYTES_MAX) throw new VvmError('TOO_LARGE', `storage: pk has ${pk.length} bytes, at most ${PK_BYTES_MAX} allowed`)
}

export function checkCc(cc: Bytes): void {
  if (!(cc instanceof Uint8Array)) throw new VvmError('VALIDATION', 'storage: cc must be a Uint8Array')
  if (cc.length > CC_BYTES_MAX) throw new VvmError('TOO_LARGE', `storage: cc has ${cc.length} bytes, at most ${CC_BYTES_MAX} allowed`)
}

export function checkValue(value: Bytes): void {
  if (!(value instanceof Uint8Array)) throw new VvmError('VALIDATION', 'storage: value must be a Uint8Array')
  if (value.length > VALUE_BYTES_MAX) {
    throw new VvmError('TOO_LARGE', `storage: value has ${value.length} bytes, at most ${VALUE_BYTES_MAX} allowed`)
  }
}

export function checkKey(pk: Bytes, cc: Bytes): void {
  checkPk(pk)
  checkCc(cc)
}

/** 0 means no expiry. Whole seconds because Cassandra's TTL is whole seconds. */
export function checkTtlSeconds(ttlSeconds: number | undefined): number {
  if (ttlSeconds === undefined) return 0
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 0 || ttlSeconds > TTL_SECONDS_MAX) {
    throw new VvmError('VALIDATION', `storage: ttlSeconds ${ttlSeconds} must be an integer in [0, ${TTL_SECONDS_MAX}]`)
  }
  return ttlSeconds
}

export function checkBatch(items: readonly BatchItem[]): void {
  if (items.length > BATCH_ITEMS_MAX) {
    throw new VvmError('TOO_LARGE', `storage: batch has ${items.length} items, at most ${BATCH_ITEMS_MAX} allowed`)
  }
  for (const item of items) {
    checkKey(item.pk, item.cc)
    checkValue(item.value)
    checkTtlSeconds(item.ttlSeconds)
  }
}

export interface NormalizedRange {
  readonly ccFrom: Bytes | undefined
  readonly ccTo: Bytes | undefined
  /** Infinity when the caller set no limit. */
  readonly limit: number
  readonly reverse: boolean
}

/** A limit of 0 asks for no rows (it is not "unlimited"). */
export function normalizeRange(range: ReadRange | undefined): NormalizedRange {
  if (range === undefined) return { ccFrom: undefined, ccTo: undefined, limit: Infinity, reverse: false }
  if (range.ccFrom !== undefined) checkCc(range.ccFrom)
  if (range.ccTo !== undefined) checkCc(range.ccTo)
  const limit = range.limit ?? Infinity
  if (limit !== Infinity && (!Number.isInteger(limit) || limit < 0)) {
    throw new VvmError('VALIDATION', `storage: read limit ${limit} must be a non-negative integer`)
  }
  return { ccFrom: range.ccFrom, ccTo: range.ccTo, limit, reverse: range.reverse === true }
}

/** Absolute expiry for a TTL starting now; 0 when the value never expires. */
export function expiresAtMsFor(ttlSeconds: number, nowMs: number): number {
  return ttlSeconds === 0 ? 0 : nowMs + ttlSeconds * 1000
}

export function isLive(expiresAtMs: number, nowMs: number): boolean {
  return expiresAtMs === 0 || expiresAtMs > nowMs
}
