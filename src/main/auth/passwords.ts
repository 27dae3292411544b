// Password hashing: scrypt (node:crypto), a random 16-byte salt per login, N = 2^15, r = 8, p = 1
// (about 32 MiB and tens of milliseconds per hash: slow for a guesser, affordable per login).
// scrypt runs on the libuv thread pool, never on the main thread; the pool also serves storage
// I/O, so at most HASHES_CONCURRENT_MAX hashes run at once and at most HASHES_QUEUED_MAX wait
// (past it: 503). Passwords and hashes are never logged.

import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import { BusyError } from '../../shared/errors.js'
import type { StoredLogin } from '../../shared/layout.js'

const SALT_BYTES = 16
const HASH_BYTES = 32
const SCRYPT_LOG2_N = 15
const SCRYPT_R = 8
const SCRYPT_P = 1
/** scrypt needs 128·N·r bytes (32 MiB here); node's default limit is exactly that, so raise it. */
const SCRYPT_MAXMEM_BYTES = 64 * 1024 * 1024
/** Why 2: half of libuv's default 4 threads, so storage I/O always finds a free one. */
export const HASHES_CONCURRENT_MAX = 2
/** Why 256: a few seconds of hashing; more waiting attempts are a flood, answered with 503. */
export const HASHES_QUEUED_MAX = 256
export const PASSWORD_CHARS_MIN = 8
/** Why 1024: a password is typed or generated, not uploaded; bounds the work per attempt. */
export const PASSWORD_CHARS_MAX = 1024

let running = 0
const waiting: (() => void)[] = []

async function withHashSlot<T>(work: () => Promise<T>): Promise<T> {
  if (running >= HASHES_CONCURRENT_MAX) {
    if (waiting.length >= HASHES_QUEUED_MAX) throw new BusyError(`${HASHES_QUEUED_MAX} password checks are waiting already`)
    await new Promise<void>((resolve) => waiting.push(resolve))
  } else {
    running++
  }
  try {
    return await work()
  } finally {
    // The slot passes to the next waiter directly, so `running` stays the number of holders.
    const next = waiting.shift()
    if (next !== undefined) next()
    else running--
  }
}

function derive(password: string, salt: Uint8Array, log2N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, HASH_BYTES, { N: 2 ** log2N, r, p, maxmem: SCRYPT_MAXMEM_BYTES }, (err, key) => (err ? reject(err) : resolve(key)))
  })
}

export async function hashPassword(password: string, nowMs = Date.now()): Promise<StoredLogin> {
  const salt = randomBytes(SALT_BYTES)
  const hash = await withHashSlot(() => derive(password, salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P))
  return { s: salt, h: hash, n: SCRYPT_LOG2_N, r: SCRYPT_R, p: SCRYPT_P, t: nowMs }
}

/** A stored login that matches no password: unknown logins cost the same time as known ones. */
const DECOY: StoredLogin = { s: randomBytes(SALT_BYTES), h: randomBytes(HASH_BYTES), n: SCRYPT_LOG2_N, r: SCRYPT_R, p: SCRYPT_P, t: 0 }

/** Compares in constant time; `stored` undefined (no such login) runs the same work and fails. */
export async function checkPassword(password: string, stored: StoredLogin | undefined): Promise<boolean> {
  const s = stored ?? DECOY
  const hash = await withHashSlot(() => derive(password, s.s, s.n, s.r, s.p))
  return stored !== undefined && hash.length === s.h.length && timingSafeEqual(hash, s.h)
}
