// Authentication on the main thread (issue #10; docs/security.md). What lives here:
//   keys.ts          the signing-key file: created on first start, rotated by `vvm keys rotate`
//   tokens.ts        HS256 JWTs (jose): sign, verify, claim shapes
//   authenticator.ts bearer token → Caller → the Principal each request carries (401s)
//   passwords.ts     scrypt on the libuv pool, bounded
//   logins.ts        the logins of each app in its storage
//   http-routes.ts   POST …/users, …/auth/login, …/auth/refresh
// Authorization (403) is decided in the processors' authorize stages (src/shared/authz.ts).
// May depend on src/shared and on ../http-api.ts, ../rate-limiter.ts, ../config.ts.

import type { Logger } from 'pino'
import type { AppDef } from '../../shared/appdef/types.js'
import type { VvmConfig } from '../config.js'
import { Authenticator } from './authenticator.js'
import { isExposed, keysFileOf, loadOrCreateKeys } from './keys.js'

export { Authenticator, type Caller } from './authenticator.js'
export { keysFileOf, loadOrCreateKeys, readKeys, rotateKeys, type KeyRing } from './keys.js'
export { signToken, verifyToken, type WorkspaceRoles } from './tokens.js'
export { LoginStore } from './logins.js'
export { registerAuthRoutes } from './http-routes.js'

/** The server's authenticator: with `--auth on` the key file is read, or created on first start. */
export async function openAuthenticator(config: VvmConfig, apps: ReadonlyMap<string, AppDef>, log: Logger): Promise<Authenticator> {
  if (config.auth === 'off') {
    log.info('authentication is off (--auth off): every request acts as the workspace owner')
    return new Authenticator({ enabled: false, keys: undefined, tokenTtlS: config.authTokenTtlS, apps })
  }
  const path = keysFileOf(config)
  const { ring, created } = await loadOrCreateKeys(path)
  if (created) log.info({ path, kid: ring.signing.kid }, 'auth: created the signing key file')
  if (await isExposed(path)) log.warn({ path }, 'auth: the signing key file is readable by group or others; chmod 600 it')
  return new Authenticator({ enabled: true, keys: ring, tokenTtlS: config.authTokenTtlS, apps })
}
