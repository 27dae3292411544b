// `vvm call`: one request over the binary protocol through the SDK, for a person at a terminal.
// Prints the reply body as JSON: the result on success (exit 0), the error reply
// {status, code, message, qname?, data?} otherwise (exit 1).

import { readFileSync } from 'node:fs'
import { ConnectionError, VvmClientError, WireOp, connect, type VvmClient } from '../client/index.js'

export const CALL_USAGE = `Usage: vvm call <url> <app> <wsid> <pkg.Name> [json] [options]

Sends one request over the binary protocol (docs/protocol.md) and prints the reply as JSON.
  <url>        ws://host:port/api/ws, or http://host:port (the /api/ws path is added)
  <app>        owner/app, e.g. demo/bank
  <wsid>       workspace id
  <pkg.Name>   the command, query, table or view
  [json]       arguments of a command or query, or the fields of a document to create or
               update; '-' reads them from standard input

Options:
  --op <op>                command (default), query, get, create, update, deactivate, cdocs, view
  --id <n>                 document id (get, update, deactivate)
  --where <json>           read constraint (query, cdocs, view), as in the HTTP API
  --order <fields>         e.g. -balance,name
  --limit <n>  --skip <n>  --keys <fields>
  --unlogged <json>        unlogged arguments of a command
  --idempotency-key <key>  for writes; default a fresh one per call
  --token <token>          bearer token; default the environment variable VVM_TOKEN
  --timeout-ms <n>         default 30000

Exit status: 0 for a 2xx reply, 1 for an error reply or no connection, 2 for bad usage.

Examples:
  vvm call http://127.0.0.1:8822 demo/bank 1 bank.Account '{"name":"a","balance":0}' --op create
  vvm call http://127.0.0.1:8822 demo/bank 1 bank.Deposit '{"account":65536,"amount":10}'
  vvm call http://127.0.0.1:8822 demo/bank 1 bank.Balance '{"account":65536}' --op query
  vvm call http://127.0.0.1:8822 demo/bank 1 bank.Movements --op view --where '{"account":65536}'
`

const OPS: Record<string, number> = {
  command: WireOp.COMMAND, query: WireOp.QUERY, get: WireOp.DOC_GET, create: WireOp.DOC_CREATE,
  update: WireOp.DOC_UPDATE, deactivate: WireOp.DOC_DEACTIVATE, cdocs: WireOp.CDOCS, view: WireOp.VIEW,
}
const VALUE_FLAGS = new Set(['op', 'id', 'where', 'order', 'limit', 'skip', 'keys', 'unlogged', 'idempotency-key', 'token', 'timeout-ms'])

class UsageError extends Error {}

interface CallArgs {
  url: string
  app: string
  wsid: number
  qname: string
  json: unknown
  flags: Map<string, string>
}

function parseArgs(argv: readonly string[]): CallArgs {
  const positional: string[] = []
  const flags = new Map<string, string>()
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=')
      const name = eq > 0 ? a.slice(2, eq) : a.slice(2)
      if (!VALUE_FLAGS.has(name)) throw new UsageError(`unknown option --${name}`)
      const value = eq > 0 ? a.slice(eq + 1) : argv[++i]
      if (value === undefined) throw new UsageError(`option --${name} needs a value`)
      flags.set(name, value)
    } else positional.push(a)
  }
  if (positional.length < 4 || positional.length > 5) throw new UsageError('expected <url> <app> <wsid> <pkg.Name> [json]')
  const [rawUrl, app, wsidText, qname, jsonText] = positional as [string, string, string, string, string | undefined]
  if (!/^[1-9]\d{0,15}$/.test(wsidText)) throw new UsageError(`workspace id '${wsidText}' is not a positive integer`)
  const text = jsonText === '-' ? readFileSync(0, 'utf8') : jsonText
  return { url: wsUrlOf(rawUrl), app, wsid: Number(wsidText), qname, json: text === undefined ? undefined : parseJson(text, 'json'), flags }
}

/** http(s)://host:port[/] → ws(s)://host:port/api/ws; a ws(s) URL is taken as it is. */
function wsUrlOf(raw: string): string {
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    throw new UsageError(`'${raw}' is not a URL (e.g. ws://127.0.0.1:8822/api/ws)`)
  }
  if (u.protocol === 'http:' || u.protocol === 'https:') {
    u.protocol = u.protocol === 'http:' ? 'ws:' : 'wss:'
    if (u.pathname === '/' || u.pathname === '') u.pathname = '/api/ws'
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new UsageError(`'${raw}' must be a ws://, wss://, http:// or https:// URL`)
  return u.toString()
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new UsageError(`${what} is not valid JSON: ${(err as Error).message}`)
  }
}

function intFlag(flags: Map<string, string>, name: string): number | undefined {
  const v = flags.get(name)
  if (v === undefined) return undefined
  if (!/^\d{1,15}$/.test(v)) throw new UsageError(`--${name} '${v}' is not a non-negative integer`)
  return Number(v)
}

function objectOf(v: unknown, what: string): Record<string, unknown> | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UsageError(`${what} must be a JSON object`)
  return v as Record<string, unknown>
}

async function send(client: VvmClient, a: CallArgs): Promise<unknown> {
  const f = a.flags
  const opName = f.get('op') ?? 'command'
  const op = OPS[opName]
  if (op === undefined) throw new UsageError(`--op '${opName}' is unknown (${Object.keys(OPS).join(', ')})`)
  const id = intFlag(f, 'id')
  const body = objectOf(a.json, '[json]')
  const where = objectOf(f.get('where') === undefined ? undefined : parseJson(f.get('where')!, '--where'), '--where')
  const read = { where, order: f.get('order'), limit: intFlag(f, 'limit'), skip: intFlag(f, 'skip'), keys: f.get('keys') }
  const write = { idempotencyKey: f.get('idempotency-key') }
  const needId = (): number => {
    if (id === undefined) throw new UsageError(`--op ${opName} needs --id`)
    return id
  }
  switch (op) {
    case WireOp.COMMAND: {
      const unlogged = objectOf(f.get('unlogged') === undefined ? undefined : parseJson(f.get('unlogged')!, '--unlogged'), '--unlogged')
      return client.command(a.qname, body ?? {}, { ...write, unloggedArgs: unlogged })
    }
    case WireOp.QUERY: return client.query(a.qname, body ?? {}, read)
    case WireOp.VIEW: return client.view(a.qname, read)
    case WireOp.CDOCS: return client.docs.list(a.qname, read)
    case WireOp.DOC_GET: return client.docs.get(a.qname, needId())
    case WireOp.DOC_CREATE: return client.docs.create(a.qname, body ?? {}, write)
    case WireOp.DOC_UPDATE: return client.docs.update(a.qname, needId(), body ?? {}, write)
    default: return client.docs.deactivate(a.qname, needId(), write)
  }
}

/** Binary values print as base64; everything else as JSON has it. */
function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (x instanceof Uint8Array ? { $base64: Buffer.from(x).toString('base64') } : x), 2)
}

export async function callCommand(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(CALL_USAGE)
    return 0
  }
  let args: CallArgs
  try {
    args = parseArgs(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`vvm call: ${err.message}\n\n${CALL_USAGE}`)
    return 2
  }
  const token = args.flags.get('token') ?? process.env.VVM_TOKEN
  const timeoutMs = intFlag(args.flags, 'timeout-ms') ?? 30_000
  let client: VvmClient
  try {
    client = await connect(args.url, {
      app: args.app, wsid: args.wsid, token: token === '' ? undefined : token, timeoutMs,
      connectTimeoutMs: Math.min(timeoutMs, 10_000), reconnect: false, keepAliveMs: 0,
    })
  } catch (err) {
    process.stderr.write(`vvm call: ${(err as Error).message}\n`)
    return 1
  }
  try {
    const reply = await send(client, args)
    process.stdout.write(toJson(reply) + '\n')
    return 0
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`vvm call: ${err.message}\n\n${CALL_USAGE}`)
      return 2
    }
    if (err instanceof VvmClientError && !(err instanceof ConnectionError) && err.status !== 0) {
      const e: Record<string, unknown> = { status: err.status, code: err.code, message: err.message }
      if (err.qname !== undefined) e.qname = err.qname
      if (err.data !== undefined) e.data = err.data
      process.stdout.write(toJson(e) + '\n')
      return 1
    }
    process.stderr.write(`vvm call: ${(err as Error).message}\n`)
    return 1
  } finally {
    await client.close({ drainTimeoutMs: 0 })
  }
}
