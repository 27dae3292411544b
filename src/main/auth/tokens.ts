// Principal tokens: JWTs signed with HMAC-SHA256 (jose). Header `{alg: "HS256", kid, typ: "JWT"}`;
// claims `sub` (the login), `app` (owner/app), `iat`, `exp`, and optionally `wsr`, signed
// workspace roles `{"<wsid>": ["owner"]}` that only the admin's `vvm token` command mints.
// Verification picks the key by `kid`, accepts HS256 only and maps every failure to a coded
// error: TOKEN_EXPIRED for an expired token, UNAUTHORIZED for anything else.

import { webcrypto } from 'node:crypto'
import { SignJWT, errors, jwtVerify, type JWTPayload } from 'jose'
import { LOGIN_RE, ROLE_NAME_RE } from '../../shared/appdef/acl.js'
import { VvmError } from '../../shared/errors.js'
import type { KeyRing, SigningKey } from './keys.js'

/** Signed workspace roles: wsid (decimal) → roles. */
export type WorkspaceRoles = Readonly<Record<string, readonly string[]>>

export interface TokenClaims {
  readonly login: string
  readonly app: string
  readonly workspaceRoles: WorkspaceRoles | undefined
  readonly issuedAtS: number
  readonly expiresAtS: number
}

const WSID_RE = /^[1-9]\d{0,15}$/
/** Why 64: a token carrying more workspaces is a sign that grants belong in the workspaces (sys.GrantRole). */
const WSR_WORKSPACES_MAX = 64
const ROLES_PER_WORKSPACE_MAX = 16

/** CryptoKeys imported once per secret: jose would otherwise import the raw secret per call. */
const cryptoKeys = new WeakMap<SigningKey, Promise<webcrypto.CryptoKey>>()
function cryptoKeyOf(k: SigningKey): Promise<webcrypto.CryptoKey> {
  let p = cryptoKeys.get(k)
  if (p === undefined) {
    p = webcrypto.subtle.importKey('raw', k.secret, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify'])
    cryptoKeys.set(k, p)
  }
  return p
}

export async function signToken(
  key: SigningKey, claims: { login: string; app: string; workspaceRoles?: WorkspaceRoles | undefined }, ttlS: number, nowS = Math.floor(Date.now() / 1000),
): Promise<{ token: string; expiresAtS: number }> {
  const payload: JWTPayload = { app: claims.app }
  if (claims.workspaceRoles !== undefined) payload.wsr = claims.workspaceRoles as Record<string, string[]>
  const expiresAtS = nowS + ttlS
  const token = await new SignJWT(payload)
    .setProtectedHeader({ alg: 'HS256', kid: key.kid, typ: 'JWT' })
    .setSubject(claims.login)
    .setIssuedAt(nowS)
    .setExpirationTime(expiresAtS)
    .sign(await cryptoKeyOf(key))
  return { token, expiresAtS }
}

/** Verifies signature, algorithm, expiry and claim shapes; never echoes the token. */
export async function verifyToken(ring: KeyRing, token: string): Promise<TokenClaims> {
  let payload: JWTPayload
  try {
    ({ payload } = await jwtVerify(token, async (header) => {
      const key = header.kid === undefined ? undefined : ring.byKid.get(header.kid)
      if (key === undefined) throw new VvmError('UNAUTHORIZED', 'the token is signed with an unknown key')
      return cryptoKeyOf(key)
    }, { algorithms: ['HS256'], requiredClaims: ['sub', 'iat', 'exp'], clockTolerance: 0 }))
  } catch (err) {
    if (err instanceof VvmError) throw err
    if (err instanceof errors.JWTExpired) throw new VvmError('TOKEN_EXPIRED', 'the token has expired: log in again or refresh it before it expires')
    if (err instanceof errors.JOSEError) throw new VvmError('UNAUTHORIZED', `the token is invalid (${err.code})`)
    throw err
  }
  const { sub, app, wsr, iat, exp } = payload
  if (typeof sub !== 'string' || !LOGIN_RE.test(sub) || typeof app !== 'string' || typeof iat !== 'number' || typeof exp !== 'number') {
    throw new VvmError('UNAUTHORIZED', 'the token is invalid (claims sub, app, iat, exp)')
  }
  return { login: sub, app, workspaceRoles: checkWorkspaceRoles(wsr), issuedAtS: iat, expiresAtS: exp }
}

/** `wsr` as the admin command writes it; anything else makes the token invalid. */
export function checkWorkspaceRoles(wsr: unknown): WorkspaceRoles | undefined {
  if (wsr === undefined) return undefined
  const bad = (): never => { throw new VvmError('UNAUTHORIZED', 'the token is invalid (claim wsr)') }
  if (typeof wsr !== 'object' || wsr === null || Array.isArray(wsr)) bad()
  const entries = Object.entries(wsr as Record<string, unknown>)
  if (entries.length > WSR_WORKSPACES_MAX) bad()
  for (const [wsid, roles] of entries) {
    if (!WSID_RE.test(wsid) || !Array.isArray(roles) || roles.length > ROLES_PER_WORKSPACE_MAX) bad()
    for (const r of roles as unknown[]) if (typeof r !== 'string' || !ROLE_NAME_RE.test(r)) bad()
  }
  return wsr as WorkspaceRoles
}
