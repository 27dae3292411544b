// The engine under test, started the way a user starts it: `node bin/vvm.js start` in a child
// process, on 127.0.0.1 with a free port, in a fresh data directory removed afterwards — or in
// a data directory the caller gives and keeps (the restart step starts a server twice on one).

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startChildServer, type ChildServer } from './child.js'
import { v8PoolSizeFor, V8_POOL_SIZE_AUTO } from '../../src/main/v8-pool.js'

const VVM_BIN = fileURLToPath(new URL('../../../bin/vvm.js', import.meta.url))

export interface EngineOptions {
  partitions: number
  storage: 'level' | 'mem' | 'cassandra'
  app: string
  /** More `vvm start` flags, as given. */
  extraArgs: readonly string[]
  /** Write V8 CPU profiles (every thread) into this directory when the server exits. */
  cpuProfDir?: string | undefined
  /** Run on this data directory and leave it when the server stops (the caller removes it); default: a fresh one, removed on stop. */
  dataDir?: string | undefined
}

export interface EngineServer extends ChildServer {
  readonly commandLine: string
  /** `http://127.0.0.1:<port>/metrics` (Prometheus text), from the port the server printed. */
  readonly metricsUrl: string | undefined
}

export async function startEngine(o: EngineOptions): Promise<EngineServer> {
  const ownDataDir = o.dataDir === undefined
  const dataDir = o.dataDir ?? await mkdtemp(join(tmpdir(), 'vvm-bench-'))
  const removeOwnDataDir = async (): Promise<void> => {
    if (ownDataDir) await rm(dataDir, { recursive: true, force: true })
  }
  // A profiled server does not restart itself with its V8 pool size (src/main/v8-pool.ts): it is
  // given here, so that it runs as an unprofiled one does.
  const nodeFlags = o.cpuProfDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', o.cpuProfDir, `--v8-pool-size=${v8PoolSizeFor(V8_POOL_SIZE_AUTO)}`]
  const args = [
    ...nodeFlags, VVM_BIN, 'start', '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir,
    '--storage', o.storage, '--partitions', String(o.partitions), '--app', o.app, '--log-level', 'warn', '--metrics-port', '0',
    // Cassandra: a keyspace of this run's own, so every run starts empty.
    ...(o.storage === 'cassandra' ? ['--cassandra-hosts', process.env['VVM_CASSANDRA_HOSTS'] ?? '127.0.0.1:9042', '--cassandra-keyspace-prefix', `vvmbench_${process.pid}_${Date.now() % 1e6}_`] : []),
    // The load scenarios send no tokens; `--auth on` among extraArgs (later flags win) measures with auth.
    '--auth', 'off', ...o.extraArgs,
  ]
  let server: ChildServer
  try {
    server = await startChildServer(args, 'vvm server')
  } catch (err) {
    await removeOwnDataDir()
    throw err
  }
  const metricsPort = /metrics on port (\d+)/.exec(server.output())?.[1]
  return {
    ...server,
    url: server.url,
    pid: server.pid,
    commandLine: ['node', ...args.map((a) => (a === VVM_BIN ? 'bin/vvm.js' : a === dataDir ? '<tmp>' : a))].join(' '),
    metricsUrl: metricsPort === undefined ? undefined : `http://127.0.0.1:${metricsPort}/metrics`,
    stop: async () => {
      await server.stop()
      await removeOwnDataDir()
    },
    kill: async () => {
      await server.kill()
      await removeOwnDataDir()
    },
  }
}
