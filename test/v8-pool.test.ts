// `vvm start` sizes V8's helper pool (src/main/v8-pool.ts): without a --v8-pool-size given to
// node it restarts itself in place (the native addon's execReplace) with one, keeping its pid,
// its output streams and its response to signals; given one (or --v8-pool-size 0) it does not.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { describe, it } from 'node:test'
import { restartBlockedBy, restartNeeded, startedV8PoolSize, v8PoolSizeFor, V8_POOL_SIZE_AUTO } from '../src/main/v8-pool.js'
import { http, scrape, spawnServer, tempDir, type ChildServer } from './helpers/server.js'

/** The command line of a running process, as the kernel has it. */
const cmdline = (pid: number): string[] => readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a !== '')
/** Node's own flags: what comes before the script. */
const nodeFlags = (pid: number): string[] => {
  const args = cmdline(pid)
  return args.slice(1, args.findIndex((a) => a.endsWith('vvm.js')))
}

/**
 * Starts a server on `dataDir`, runs `checks` on it, and stops it with SIGTERM — also when a
 * check fails, so that a failing run leaves no server behind —; it must then exit cleanly.
 */
async function withServer(
  dataDir: string, flags: string[], checks: (s: ChildServer) => Promise<void>,
  o: { env?: NodeJS.ProcessEnv; nodeFlags?: string[]; what?: string } = {},
): Promise<void> {
  const s = await spawnServer(['--data-dir', dataDir, ...flags], 20_000, o.env ?? process.env, o.nodeFlags ?? [])
  try {
    await checks(s)
  } finally {
    s.proc.kill('SIGTERM')
  }
  assert.equal(await s.exited, 0, o.what)
}

describe('V8 pool size', () => {
  it('auto is one helper per core beyond the first, 1 to 4; an explicit size stays', () => {
    assert.equal(v8PoolSizeFor(V8_POOL_SIZE_AUTO, 1), 1)
    assert.equal(v8PoolSizeFor(V8_POOL_SIZE_AUTO, 2), 1)
    assert.equal(v8PoolSizeFor(V8_POOL_SIZE_AUTO, 3), 2)
    assert.equal(v8PoolSizeFor(V8_POOL_SIZE_AUTO, 64), 4)
    assert.equal(v8PoolSizeFor(0, 64), 0)
    assert.equal(v8PoolSizeFor(7, 2), 7)
  })

  it('reads the size node was started with, from its arguments or NODE_OPTIONS', () => {
    assert.equal(startedV8PoolSize([], ''), undefined)
    assert.equal(startedV8PoolSize(['--v8-pool-size=2'], ''), 2)
    assert.equal(startedV8PoolSize(['--v8-pool-size', '3'], ''), 3)
    assert.equal(startedV8PoolSize([], '--max-old-space-size=512 --v8-pool-size=5'), 5)
    // The command line wins over NODE_OPTIONS, as in node.
    assert.equal(startedV8PoolSize(['--v8-pool-size=1'], '--v8-pool-size=5'), 1)
    assert.equal(startedV8PoolSize(['--v8-pool-size=x'], ''), undefined)
  })

  it('restarts only when the size in force is not the one wanted', () => {
    assert.equal(restartNeeded(V8_POOL_SIZE_AUTO, 1, undefined), true)
    assert.equal(restartNeeded(V8_POOL_SIZE_AUTO, 1, 3), false, 'a size given to node stays under auto')
    assert.equal(restartNeeded(0, 0, undefined), false)
    assert.equal(restartNeeded(0, 0, 3), false)
    assert.equal(restartNeeded(2, 2, 3), true, 'a size given to vvm wins over another given to node')
    assert.equal(restartNeeded(2, 2, 2), false, 'no loop: the restarted process has it')
  })

  it('does not restart under a debugger or a profiler', () => {
    assert.equal(restartBlockedBy([], ''), undefined)
    assert.equal(restartBlockedBy(['--max-old-space-size=512'], '--v8-pool-size=2'), undefined)
    assert.match(restartBlockedBy(['--inspect=127.0.0.1:0'], '') ?? '', /debugger/)
    assert.match(restartBlockedBy(['--cpu-prof', '--cpu-prof-dir', '/tmp'], '') ?? '', /profiler/)
    assert.match(restartBlockedBy([], '--heap-prof') ?? '', /profiler/)
    assert.match(restartBlockedBy(['--prof'], '') ?? '', /profiler/)
    assert.equal(restartBlockedBy(['--profile-something-else'], ''), undefined)
  })

  it('a server under --cpu-prof serves without restarting and writes its profile', async () => {
    const dir = await tempDir()
    const profiles = await tempDir('vvm-prof-')
    try {
      const profiling = ['--cpu-prof', `--cpu-prof-dir=${profiles.path}`]
      await withServer(dir.path, [], async (s) => {
        assert.deepEqual(nodeFlags(s.proc.pid!), profiling, 'not restarted')
        assert.equal(await scrape(s.metricsUrl, 'vvm_v8_pool_size'), 4)
      }, { nodeFlags: profiling })
      assert.ok((await readdir(profiles.path)).some((f) => f.endsWith('.cpuprofile')), 'the profile was written')
    } finally {
      await dir.remove()
      await profiles.remove()
    }
  })

  it('restarts in place with the size: same pid, output kept, serving, clean exit on SIGTERM', async () => {
    const dir = await tempDir()
    try {
      await withServer(dir.path, ['--v8-pool-size', '2'], async (s) => {
        const args = cmdline(s.proc.pid!)
        assert.deepEqual(nodeFlags(s.proc.pid!), ['--v8-pool-size=2'], `the server process runs with the flag: ${args.join(' ')}`)
        assert.ok(args.includes('--data-dir') && args.includes(dir.path), 'with its own arguments')
        assert.equal(await scrape(s.metricsUrl, 'vvm_v8_pool_size'), 2)
        const r = await http('POST', `${s.url}/api/v2/apps/demo/bank/workspaces/5/docs/bank.Account`, { name: 'a', balance: 0 })
        assert.equal(r.status, 201)
      })
    } finally {
      await dir.remove()
    }
  })

  it('auto on this machine, and no restart with 0 or with a size node was given', async () => {
    const dir = await tempDir()
    /** A server's node flags and the size in force. */
    const check = (flags: string[], env: NodeJS.ProcessEnv, expectedNodeFlags: string[], expectedSize: number, what: string): Promise<void> =>
      withServer(dir.path, flags, async (s) => {
        assert.deepEqual(nodeFlags(s.proc.pid!), expectedNodeFlags, what)
        assert.equal(await scrape(s.metricsUrl, 'vvm_v8_pool_size'), expectedSize, what)
      }, { env, what })
    try {
      const wanted = Math.max(1, Math.min(4, availableParallelism() - 1))
      await check([], process.env, [`--v8-pool-size=${wanted}`], wanted, 'auto: restarted with the size')
      await check(['--v8-pool-size', '0'], process.env, [], 4, '0: no flag added, Node keeps 4')
      await check([], { ...process.env, NODE_OPTIONS: '--v8-pool-size=3' }, [], 3, 'NODE_OPTIONS kept, no restart')
      await check(['--v8-pool-size', '2'], { ...process.env, NODE_OPTIONS: '--v8-pool-size=3' }, ['--v8-pool-size=2'], 2, 'the size given to vvm wins')
    } finally {
      await dir.remove()
    }
  })

  it('refuses a size out of range', async () => {
    const dir = await tempDir()
    try {
      await assert.rejects(spawnServer(['--data-dir', dir.path, '--v8-pool-size', '-2'], 10_000), /v8-pool-size/)
    } finally {
      await dir.remove()
    }
  })
})
