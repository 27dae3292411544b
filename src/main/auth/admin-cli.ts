// The admin's terminal commands: `vvm token` mints a token (with signed workspace roles) from the
// key file, `vvm keys rotate|list` manages the key file. Neither opens the database, so both
// work while the server runs.

import { pathToFileURL } from 'node:url'
import { resolve } from 'node:path'
import { ROLE_NAME_RE, LOGIN_RE, ROLE_PUBLIC } from '../../shared/appdef/acl.js'
import { loadApp } from '../../shared/app-loader.js'
import { ConfigError, loadConfig } from '../config.js'
import { keysFileOf, readKeys, rotateKeys } from './keys.js'
import { signToken } from './tokens.js'

const APP_QNAME_RE = /^[a-z0-9][a-z0-9_-]{0,62}\/[a-z0-9][a-z0-9_-]{0,62}$/
const WSID_RE = /^[1-9]\d{0,15}$/
const TTL_S_MAX = 30 * 86400

export const TOKEN_USAGE = `vvm token --login L [--app owner/app] [--wsid N --role R [--role R2 ...]] [--ttl-s S]
           [--data-dir D | --auth-keys-file F]
  prints a signed token for login L of the app (default demo/bank) on stdout; --wsid and --role
  sign workspace roles into it (e.g. --wsid 1001 --role owner). Reads the key file only.
`

export const KEYS_USAGE = `vvm keys rotate|list [--data-dir D | --auth-keys-file F]
  rotate: adds a signing key (new tokens use it; all keys in the file still verify). Restart the
  nodes to load it; remove old keys from the file after the longest token lifetime.
  list: key ids and creation times (never the secrets).
`

/** Splits this command's own flags from the config flags (`--data-dir`, `--auth-keys-file`, `--config`, …). */
function splitFlags(argv: readonly string[], own: readonly string[]): { mine: Map<string, string[]>; rest: string[] } {
  const mine = new Map<string, string[]>()
  const rest: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    const name = a.startsWith('--') ? a.slice(2).split('=')[0]! : ''
    if (!own.includes(name)) {
      rest.push(a)
      continue
    }
    let value: string | undefined
    if (a.includes('=')) value = a.slice(a.indexOf('=') + 1)
    else value = argv[++i]
    if (value === undefined || value.startsWith('--')) throw new ConfigError(`option --${name} needs a value`)
    mine.set(name, [...(mine.get(name) ?? []), value])
  }
  return { mine, rest }
}

export async function tokenCommand(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help')) {
    process.stdout.write(TOKEN_USAGE)
    return 0
  }
  const { mine, rest } = splitFlags(argv, ['login', 'app', 'wsid', 'role', 'ttl-s'])
  const config = loadConfig(rest)
  const one = (name: string): string | undefined => {
    const v = mine.get(name)
    if (v !== undefined && v.length > 1) throw new ConfigError(`--${name} is given more than once`)
    return v?.[0]
  }
  const login = one('login')
  if (login === undefined || !LOGIN_RE.test(login)) throw new ConfigError(`--login is required: 3..64 characters of a-z 0-9 . _ -\n\n${TOKEN_USAGE}`)
  const app = await appQNameOf(one('app') ?? config.apps[0]!)
  const wsid = one('wsid')
  const roles = mine.get('role') ?? []
  if ((wsid === undefined) !== (roles.length === 0)) throw new ConfigError('--wsid and --role go together: the roles are signed for that workspace')
  if (wsid !== undefined && !WSID_RE.test(wsid)) throw new ConfigError(`--wsid '${wsid}' is invalid: expected a positive integer`)
  for (const r of roles) {
    if (!ROLE_NAME_RE.test(r) || r === ROLE_PUBLIC) throw new ConfigError(`--role '${r}' is invalid: expected a role of the app such as owner (public is everyone's already)`)
  }
  const ttlText = one('ttl-s')
  const ttlS = ttlText === undefined ? config.authTokenTtlS : Number(ttlText)
  if (!Number.isInteger(ttlS) || ttlS < 1 || ttlS > TTL_S_MAX) throw new ConfigError(`--ttl-s '${ttlText}' is invalid: expected an integer 1..${TTL_S_MAX}`)
  const ring = await readKeys(keysFileOf(config))
  const { token } = await signToken(ring.signing, { login, app, workspaceRoles: wsid === undefined ? undefined : { [wsid]: [...new Set(roles)] } }, ttlS)
  process.stdout.write(token + '\n')
  return 0
}

/** `owner/app` as is; otherwise an app module whose qname is read. */
async function appQNameOf(spec: string): Promise<string> {
  if (APP_QNAME_RE.test(spec)) return spec
  try {
    return (await loadApp(pathToFileURL(resolve(spec)).href)).qname
  } catch (err) {
    throw new ConfigError(`--app '${spec}' is neither owner/app nor a loadable app module: ${(err as Error).message}`)
  }
}

export async function keysCommand(argv: readonly string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (sub !== 'rotate' && sub !== 'list') {
    process.stdout.write(KEYS_USAGE)
    return sub === '--help' ? 0 : 2
  }
  const path = keysFileOf(loadConfig(rest))
  if (sub === 'rotate') {
    const key = await rotateKeys(path)
    process.stdout.write(`${key.kid}\n`)
    process.stderr.write(`vvm: added signing key ${key.kid} to ${path}; restart every node to sign with it, and remove old keys after the longest token lifetime\n`)
    return 0
  }
  const ring = await readKeys(path)
  for (const k of ring.keys) process.stdout.write(`${k.kid}\t${k.createdAt}${k === ring.signing ? '\tsigning' : ''}\n`)
  return 0
}
