// The engine under test, started the way a user starts it: `node bin/vvm.js start` in a child
// process, on 127.0.0.1 with a free port, in a fresh data directory removed afterwards.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startChildServer, type ChildServer } from './child.js'

const VVM_BIN = fileURLToPath(new URL('../../../bin/vvm.js', import.meta.url))

export interface EngineOptions {
  partitions: number
  storage: 'level' | 'mem' | 'cassandra'
  app: string
  /** More `vvm start` flags, as given. */
  extraArgs: readonly string[]
  /** Write V8 CPU profiles (every thread) into this directory when the server exits. */
  cpuProfDir?: string | undefined
}

export interface EngineServer extends ChildServer {
  readonly commandLine: string
}

export async function startEngine(o: EngineOptions): Promise<EngineServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'vvm-bench-'))
  const nodeFlags = o.cpuProfDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', o.cpuProfDir]
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
    await rm(dataDir, { recursive: true, force: true })
    throw err
  }
  return {
    ...server,
    url: server.url,
    pid: server.pid,
    commandLine: ['node', ...args.map((a) => (a === VVM_BIN ? 'bin/vvm.js' : a === dataDir ? '<tmp>' : a))].join(' '),
    stop: async () => {
      await server.stop()
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}
