// Token signing keys: a JSON file (mode 0600) holding a list of HMAC-SHA256 secrets, each with a
// key id. The newest key signs; every key in the file verifies (the `kid` header picks it), so a
// rotation adds a key and removes old ones only after the longest token lifetime has passed.
// Read at start by the server and by the `vvm token` / `vvm keys` commands; nothing else opens it.

import { randomBytes } from 'node:crypto'
import { link, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { ConfigError } from '../config.js'

export const KEYS_FILE_NAME = 'auth-keys.json'
/** Why 32: HS256 wants a secret of at least the hash size (256 bits), RFC 7518 §3.2. */
const SECRET_BYTES = 32
/** Why 64: rotations add one key each; a longer list means old keys were never removed. */
export const KEYS_MAX = 64
const FILE_VERSION = 1
const KID_RE = /^[A-Za-z0-9_-]{1,64}$/

export interface SigningKey {
  readonly kid: string
  readonly secret: Uint8Array
  readonly createdAt: string
}

export interface KeyRing {
  readonly path: string
  /** The newest key: it signs. */
  readonly signing: SigningKey
  readonly byKid: ReadonlyMap<string, SigningKey>
  readonly keys: readonly SigningKey[]
}

interface KeysFile {
  version: number
  keys: { kid: string; alg: 'HS256'; secret: string; createdAt: string }[]
}

/** `--auth-keys-file`, or `<data-dir>/auth-keys.json`. */
export function keysFileOf(config: { authKeysFile: string; dataDir: string }): string {
  return resolve(config.authKeysFile !== '' ? config.authKeysFile : join(config.dataDir, KEYS_FILE_NAME))
}

function newKey(): SigningKey {
  const kid = `k${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
  return { kid, secret: randomBytes(SECRET_BYTES), createdAt: new Date().toISOString() }
}

function serialize(keys: readonly SigningKey[]): string {
  const file: KeysFile = {
    version: FILE_VERSION,
    keys: keys.map((k) => ({ kid: k.kid, alg: 'HS256', secret: Buffer.from(k.secret).toString('base64url'), createdAt: k.createdAt })),
  }
  return JSON.stringify(file, null, 2) + '\n'
}

/** Reads and checks the key file; a missing or malformed one is a ConfigError naming the path. */
export async function readKeys(path: string): Promise<KeyRing> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read the auth keys file ${path}: ${(err as Error).message} (the server creates it on first start; --auth-keys-file names another)`)
  }
  const bad = (what: string): never => { throw new ConfigError(`auth keys file ${path}: ${what}`) }
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch {
    bad('not valid JSON')
  }
  const f = v as Partial<KeysFile>
  if (typeof f !== 'object' || f === null || f.version !== FILE_VERSION || !Array.isArray(f.keys)) bad(`expected {"version": ${FILE_VERSION}, "keys": [...]}`)
  if (f.keys!.length === 0 || f.keys!.length > KEYS_MAX) bad(`expected 1..${KEYS_MAX} keys, found ${f.keys!.length}`)
  const keys = f.keys!.map((k, i): SigningKey => {
    if (typeof k !== 'object' || k === null || typeof k.kid !== 'string' || !KID_RE.test(k.kid) || k.alg !== 'HS256' || typeof k.secret !== 'string' || typeof k.createdAt !== 'string') {
      bad(`keys[${i}] must be {"kid", "alg": "HS256", "secret" (base64url), "createdAt"}`)
    }
    const secret = Buffer.from(k.secret, 'base64url')
    if (secret.length < SECRET_BYTES) bad(`keys[${i}] (${k.kid}): the secret has ${secret.length} bytes, at least ${SECRET_BYTES} are needed`)
    return { kid: k.kid, secret: new Uint8Array(secret), createdAt: k.createdAt }
  })
  const byKid = new Map(keys.map((k) => [k.kid, k]))
  if (byKid.size !== keys.length) bad('a key id appears twice')
  return { path, signing: keys.at(-1)!, byKid, keys }
}

/** Whether group or others may read the file (it should be 0600). */
export async function isExposed(path: string): Promise<boolean> {
  return ((await stat(path)).mode & 0o077) !== 0
}

/**
 * Reads the key file, creating it with one key if absent. Creation is atomic and exclusive (a
 * temporary file linked into place), so nodes starting together on one shared file agree.
 */
export async function loadOrCreateKeys(path: string): Promise<{ ring: KeyRing; created: boolean }> {
  await mkdir(dirname(path), { recursive: true })
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  let created = false
  try {
    await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    await writeFile(tmp, serialize([newKey()]), { mode: 0o600, flag: 'wx' })
    try {
      await link(tmp, path)
      created = true
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    } finally {
      await unlink(tmp)
    }
  }
  return { ring: await readKeys(path), created }
}

/** Adds a new signing key (`vvm keys rotate`); the file is replaced atomically. */
export async function rotateKeys(path: string): Promise<SigningKey> {
  const ring = await readKeys(path)
  if (ring.keys.length >= KEYS_MAX) throw new ConfigError(`auth keys file ${path} holds ${KEYS_MAX} keys already: remove old ones first (those older than the longest token lifetime)`)
  const key = newKey()
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  await writeFile(tmp, serialize([...ring.keys, key]), { mode: 0o600, flag: 'wx' })
  await rename(tmp, path)
  return key
}
