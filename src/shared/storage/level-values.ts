// A value as the LevelDB backend stores it (level.ts): a tag byte, the expiry when there is one,
// then the value's bytes.
//
//   0x00 · value                     never expires
//   0x01 · u64 expiresAtMs · value   expires; skipped by reads once past

import { StorageError } from '../errors.js'
import { readU64be, u64be } from './keys.js'
import type { Bytes, TtlValue } from './types.js'

export const TAG_PLAIN = 0x00
export const TAG_EXPIRING = 0x01
const EXPIRING_HEADER_BYTES = 9

/** Scratch of `storedView`; larger values get their own buffer, so the scratch stays small. */
let storedScratch = new Uint8Array(4096)
const STORED_SCRATCH_MAX = 64 * 1024

/** `encodeStored` into a scratch buffer: valid until the next call (for a batch's put, which copies). */
export function storedView(value: Bytes, expiresAtMs: number): Uint8Array {
  const length = storedLength(value, expiresAtMs)
  if (length > STORED_SCRATCH_MAX) return encodeStored(value, expiresAtMs)
  if (length > storedScratch.length) storedScratch = new Uint8Array(Math.max(length, storedScratch.length * 2))
  return writeStored(storedScratch.subarray(0, length), value, expiresAtMs)
}

export function encodeStored(value: Bytes, expiresAtMs: number): Uint8Array {
  return writeStored(new Uint8Array(storedLength(value, expiresAtMs)), value, expiresAtMs)
}

export const storedLength = (value: Bytes, expiresAtMs: number): number => (expiresAtMs === 0 ? 1 : EXPIRING_HEADER_BYTES) + value.length

/** The tag, the expiry when there is one, then the value, into `out` (exactly `storedLength` bytes). */
function writeStored(out: Uint8Array, value: Bytes, expiresAtMs: number): Uint8Array {
  if (expiresAtMs === 0) {
    out[0] = TAG_PLAIN
  } else {
    out[0] = TAG_EXPIRING
    out.set(u64be(expiresAtMs), 1)
  }
  out.set(value, out.length - value.length)
  return out
}

/**
 * The returned value is a view into `stored`, which LevelDB allocated for this call alone, so
 * callers may keep or mutate it without touching the database.
 */
export function decodeStored(stored: Uint8Array): TtlValue {
  const tag = stored[0]
  if (tag === TAG_PLAIN) return { value: stored.subarray(1), expiresAtMs: 0 }
  if (tag === TAG_EXPIRING && stored.length >= EXPIRING_HEADER_BYTES) {
    return { value: stored.subarray(EXPIRING_HEADER_BYTES), expiresAtMs: readU64be(stored, 1) }
  }
  throw new StorageError(`level: corrupt value header (tag ${String(tag)}, ${stored.length} bytes)`)
}
