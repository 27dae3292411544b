// `vvm bench` options: declared once here (help text, defaults, bounds), parsed from flags and
// validated up front; a bad value names the flag, the value and what is allowed.

import { BenchUsageError } from './scenario.js'

export interface BenchOptions {
  command: 'run' | 'standard'
  /** `run`: a shipped scenario's name or a path to a scenario module. */
  scenario: string
  target: string | undefined
  token: string | undefined
  transport: 'http' | 'ws'
  api: 'v1' | 'v2'
  connections: number
  pipeline: number
  workers: number
  durationS: number
  warmupS: number
  workspaces: number
  wsidBase: number
  payloadBytes: number
  /** Open loop at this many operations per second; undefined: closed loop. */
  ratePerS: number | undefined
  intervalMs: number
  drainS: number
  ceiling: boolean
  partitions: number
  storage: 'level' | 'mem' | 'cassandra'
  serverArgs: string[]
  /** The variant's extra `vvm start` flags: rounds alternate between the server as configured and with these. */
  compareServerArgs: string[]
  /** Runs of the step, each on a fresh server (A/B pairs with compareServerArgs). */
  rounds: number
  cpuProf: boolean
  quick: boolean
  out: string | undefined
}

type Kind = 'int' | 'number' | 'string' | 'enum' | 'flag' | 'list'

interface Spec {
  key: keyof BenchOptions
  flag: string
  kind: Kind
  help: string
  min?: number
  max?: number
  values?: readonly string[]
}

const SPECS: readonly Spec[] = [
  { key: 'target', flag: 'target', kind: 'string', help: 'URL of a running server (http://host:port); default: start one (node bin/vvm.js start)' },
  { key: 'token', flag: 'token', kind: 'string', help: 'bearer token every request carries (HTTP authorization header, binary protocol HELLO); setup uses it too' },
  { key: 'transport', flag: 'transport', kind: 'enum', values: ['http', 'ws'], help: 'http: HTTP/1.1 keep-alive (API v2); ws: the binary WebSocket protocol through the SDK' },
  { key: 'api', flag: 'api', kind: 'enum', values: ['v2', 'v1'], help: 'HTTP API for commands: v2, or v1 (/api/{owner}/{app}/{wsid}/c.{pkg}.{Cmd})' },
  { key: 'connections', flag: 'connections', kind: 'int', min: 1, max: 10_000, help: 'connections, spread over the load workers' },
  { key: 'pipeline', flag: 'pipeline', kind: 'int', min: 1, max: 4096, help: 'operations in flight per connection (protocol requests; over HTTP only for the echo scenario: vvm does not support HTTP/1.1 pipelining)' },
  { key: 'workers', flag: 'workers', kind: 'int', min: 1, max: 64, help: 'load-generator worker threads' },
  { key: 'durationS', flag: 'duration-s', kind: 'number', min: 0.1, max: 3600, help: 'seconds measured, after the warm-up (standard report: 5 per step)' },
  { key: 'warmupS', flag: 'warmup-s', kind: 'number', min: 0, max: 600, help: 'seconds of load before measuring (standard report: 1 per step)' },
  { key: 'workspaces', flag: 'workspaces', kind: 'int', min: 1, max: 10_000_000, help: 'workspaces the scenario spreads over (setup opens their accounts)' },
  { key: 'wsidBase', flag: 'wsid-base', kind: 'int', min: 1, max: 2 ** 48, help: 'workspace id of the first workspace' },
  { key: 'payloadBytes', flag: 'payload-bytes', kind: 'int', min: 16, max: 1024 * 1024, help: 'request body size of the echo ceiling (and of scenarios that carry a payload)' },
  { key: 'ratePerS', flag: 'rate-per-s', kind: 'number', min: 1, max: 10_000_000, help: 'open loop at this rate (latency figures, corrected for coordinated omission); absent: closed loop (throughput)' },
  { key: 'intervalMs', flag: 'interval-ms', kind: 'int', min: 50, max: 60_000, help: 'timeline resolution (throughput and p99 over time)' },
  { key: 'drainS', flag: 'drain-s', kind: 'number', min: 0.1, max: 600, help: 'after the run, how long replies are waited for before they count as timeouts' },
  { key: 'ceiling', flag: 'no-ceiling', kind: 'flag', help: 'skip the ceiling (raw uWS echo) run' },
  { key: 'partitions', flag: 'partitions', kind: 'int', min: 1, max: 1024, help: 'partitions of the server the harness starts' },
  { key: 'storage', flag: 'storage', kind: 'enum', values: ['level', 'mem', 'cassandra'], help: 'storage of the server the harness starts (level: durable, sync on; cassandra: a fresh keyspace on 127.0.0.1:9042 or VVM_CASSANDRA_HOSTS)' },
  { key: 'serverArgs', flag: 'server-arg', kind: 'list', help: 'another `vvm start` flag for the server the harness starts, e.g. --server-arg=--ring-bytes=16777216; repeatable' },
  { key: 'compareServerArgs', flag: 'compare-server-arg', kind: 'list', help: 'an A/B: rounds alternate between the server as configured (A) and with this `vvm start` flag added (B), each on a fresh server, and the means are compared; repeatable' },
  { key: 'rounds', flag: 'rounds', kind: 'int', min: 1, max: 50, help: 'runs of the scenario, each on a fresh server (with --compare-server-arg: rounds of A then B)' },
  { key: 'cpuProf', flag: 'cpu-prof', kind: 'flag', help: 'profile the server the harness starts (node --cpu-prof) and list its top frames' },
  { key: 'quick', flag: 'quick', kind: 'flag', help: 'short steps and small sweeps (smoke test; figures are not a report)' },
  { key: 'out', flag: 'out', kind: 'string', help: 'directory for result.json, report.md, report.html and chart.png; default bench-results/<time>-<name>' },
]

export function defaultOptions(command: BenchOptions['command'], quick: boolean): BenchOptions {
  return {
    command, scenario: 'deposit', target: undefined, token: undefined, transport: 'http', api: 'v2',
    connections: 64, pipeline: 1, workers: 1,
    // The standard report runs some 25 steps: 5 s each keeps it near four minutes (its restart step's fill adds about two).
    durationS: quick ? 1 : command === 'standard' ? 5 : 10, warmupS: quick ? 0.5 : command === 'standard' ? 1 : 2,
    workspaces: quick ? 100 : 1000, wsidBase: 1_000_000, payloadBytes: 100,
    ratePerS: undefined, intervalMs: quick ? 250 : 1000, drainS: quick ? 3 : 10,
    ceiling: true, partitions: 2, storage: 'level', serverArgs: [], compareServerArgs: [], rounds: 1, cpuProf: false, quick, out: undefined,
  }
}

export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const args = [...argv]
  let command: BenchOptions['command'] = 'run'
  let scenario: string | undefined
  if (args[0] === 'standard') { command = 'standard'; args.shift() }
  else if (args[0] !== undefined && !args[0].startsWith('--')) scenario = args.shift()
  const o = defaultOptions(command, args.includes('--quick'))
  if (scenario !== undefined) o.scenario = scenario
  const raw = o as unknown as Record<string, unknown>
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (!a.startsWith('--')) throw new BenchUsageError(`unexpected argument '${a}' (options look like --name value; the scenario comes first)`)
    const eq = a.indexOf('=')
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2)
    const spec = SPECS.find((s) => s.flag === name)
    if (spec === undefined) throw new BenchUsageError(`unknown option --${name} (see vvm bench --help)`)
    if (spec.kind === 'flag') {
      if (eq > 0) throw new BenchUsageError(`option --${name} takes no value`)
      raw[spec.key] = spec.flag !== 'no-ceiling'
      continue
    }
    let value: string
    if (eq > 0) value = a.slice(eq + 1)
    else {
      const next = args[i + 1]
      if (next === undefined || (next.startsWith('--') && spec.kind !== 'list')) throw new BenchUsageError(`option --${name} needs a value`)
      value = next
      i++
    }
    raw[spec.key] = parseValue(spec, value, raw[spec.key])
  }
  if (o.target !== undefined) {
    let u: URL
    try { u = new URL(o.target) } catch { throw new BenchUsageError(`--target '${o.target}' is not a URL (expected http://host:port)`) }
    if (u.protocol !== 'http:') throw new BenchUsageError(`--target '${o.target}': expected an http:// URL`)
    o.target = u.origin
  }
  if (o.command === 'standard' && o.target !== undefined) throw new BenchUsageError('the standard report starts its own servers (its partition sweep restarts them): drop --target')
  // uWS closes a connection when a request arrives behind a reply not yet written (every vvm
  // route answers later), so requests pipelined over HTTP would fail as "connection closed".
  if (o.command === 'run' && o.transport === 'http' && o.pipeline > 1 && o.scenario !== 'echo') {
    throw new BenchUsageError(`--pipeline ${o.pipeline} over HTTP: vvm does not support HTTP/1.1 pipelining (docs/http-api.md); use --transport ws for requests in flight per connection, or more --connections`)
  }
  const repeated = o.rounds > 1 || o.compareServerArgs.length > 0
  if (repeated && o.command !== 'run') throw new BenchUsageError('--rounds and --compare-server-arg are for one scenario, not the standard report')
  if (repeated && o.target !== undefined) throw new BenchUsageError('--rounds and --compare-server-arg start a fresh server per round: drop --target')
  if (repeated && o.scenario === 'echo') throw new BenchUsageError('--rounds and --compare-server-arg compare vvm servers, not the echo ceiling')
  if (repeated && o.cpuProf) throw new BenchUsageError('--cpu-prof profiles one run: drop --rounds and --compare-server-arg')
  if (o.cpuProf && o.target !== undefined) throw new BenchUsageError('--cpu-prof profiles a server the harness starts: drop --target (or profile your server yourself)')
  return o
}

function parseValue(spec: Spec, value: string, previous: unknown): unknown {
  const bad = (what: string): never => { throw new BenchUsageError(`--${spec.flag} '${value}' is invalid: expected ${what}`) }
  switch (spec.kind) {
    case 'int': {
      const n = /^\d+$/.test(value) ? Number(value) : NaN
      if (!Number.isSafeInteger(n) || n < spec.min! || n > spec.max!) bad(`an integer ${spec.min}..${spec.max}`)
      return n
    }
    case 'number': {
      const n = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN
      if (!(n >= spec.min! && n <= spec.max!)) bad(`a number ${spec.min}..${spec.max}`)
      return n
    }
    case 'enum':
      if (!spec.values!.includes(value)) bad(`one of ${spec.values!.join(', ')}`)
      return value
    case 'list':
      if (value.length === 0) bad('a non-empty value')
      return [...(previous as string[]), value]
    default:
      if (value.length === 0) bad('a non-empty value')
      return value
  }
}

export function optionsHelp(): string {
  return SPECS.map((s) => {
    const values = s.values ? ` (${s.values.join('|')})` : ''
    const d = defaultOptions('run', false) as unknown as Record<string, unknown>
    const def = s.kind === 'flag' || d[s.key] === undefined || (Array.isArray(d[s.key]) && (d[s.key] as unknown[]).length === 0) ? '' : `; default ${String(d[s.key])}`
    return `  --${(s.flag + (s.kind === 'flag' ? '' : ' <v>')).padEnd(20)} ${s.help}${values}${def}`
  }).join('\n')
}

/** What a figure's "durable" means on the storage the harness started. */
export function durabilityOf(storage: BenchOptions['storage']): string {
  switch (storage) {
    case 'level': return 'level storage (LevelDB), every write batch synced before its replies: durable'
    case 'cassandra': return 'cassandra storage (commitlog_sync: batch, QUORUM writes), replies after the commit is applied: durable'
    case 'mem': return 'mem storage: NOT durable'
  }
}
