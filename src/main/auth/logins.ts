// The logins of each app: one storage row per login (layout `loginKey`) with its scrypt hash,
// written once with insertIfNotExists so that two nodes creating the same login agree. Only
// the main thread reads and writes them (sign-up and login), never the processors.

import { LOGIN_RE } from '../../shared/appdef/acl.js'
import { VvmError, ValidationError } from '../../shared/errors.js'
import { decodeStored, encodeStored, loginKey, type StoredLogin } from '../../shared/layout.js'
import type { IAppStorage } from '../../shared/storage/types.js'
import { PASSWORD_CHARS_MAX, PASSWORD_CHARS_MIN, checkPassword, hashPassword } from './passwords.js'

export interface Credentials {
  login: string
  password: string
}

/** A body `{"login", "password"}`, checked; the message never repeats the password. */
export function parseCredentials(body: Uint8Array): Credentials {
  let v: unknown
  try {
    v = JSON.parse(Buffer.from(body).toString('utf8'))
  } catch {
    throw new VvmError('BAD_JSON', 'the body is not valid JSON')
  }
  const c = v as Partial<Credentials>
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw new ValidationError('the body must be {"login": "...", "password": "..."}')
  for (const k of Object.keys(c)) if (k !== 'login' && k !== 'password') throw new ValidationError(`unknown field '${k}': the body is {"login", "password"}`)
  if (typeof c.login !== 'string' || !LOGIN_RE.test(c.login)) throw new ValidationError('login must be 3..64 characters of a-z 0-9 . _ -')
  if (typeof c.password !== 'string' || c.password.length < PASSWORD_CHARS_MIN || c.password.length > PASSWORD_CHARS_MAX) {
    throw new ValidationError(`password must be a string of ${PASSWORD_CHARS_MIN}..${PASSWORD_CHARS_MAX} characters`)
  }
  return { login: c.login, password: c.password }
}

export class LoginStore {
  constructor(private readonly storageOf: (app: string) => Promise<IAppStorage>) {}

  /** Creates a login; 409 CONFLICT when it exists. */
  async create(app: string, c: Credentials): Promise<void> {
    const stored = await hashPassword(c.password)
    const k = loginKey(c.login)
    const wrote = await (await this.storageOf(app)).insertIfNotExists(k.pk, k.cc, encodeStored(stored), 0)
    if (!wrote) throw new VvmError('CONFLICT', `login '${c.login}' exists already`)
  }

  /** Whether the password is the login's; an unknown login costs the same time and is false. */
  async check(app: string, c: Credentials): Promise<boolean> {
    const k = loginKey(c.login)
    const bytes = await (await this.storageOf(app)).get(k.pk, k.cc)
    return checkPassword(c.password, bytes === undefined ? undefined : decodeStored<StoredLogin>(bytes))
  }
}
