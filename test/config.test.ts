// One validated config from flags, environment and a config file; bad values are named.

import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { spawnSync } from 'node:child_process'
import { ConfigError, OPTIONS, loadConfig } from '../src/main/config.js'
import { VVM_BIN, tempDir } from './helpers/server.js'

describe('config', () => {
  it('has defaults', () => {
    const c = loadConfig([], {})
    assert.equal(c.port, 8822)
    assert.equal(c.storage, 'level')
    assert.equal(c.dataDir, './data')
    assert.deepEqual(c.apps, ['demo/bank'])
    assert.equal(c.levelWriteBufferBytes, 16 * 1024 * 1024)
  })

  it('file < environment < flags', async () => {
    const d = await tempDir()
    const file = join(d.path, 'vvm.json')
    writeFileSync(file, JSON.stringify({ port: 1000, partitions: 3, storage: 'mem' }))
    const c = loadConfig(['--config', file, '--port', '3000'], { VVM_PORT: '2000', VVM_PARTITIONS: '5' })
    assert.equal(c.port, 3000)
    assert.equal(c.partitions, 5)
    assert.equal(c.storage, 'mem')
    await d.remove()
  })

  it('repeats --app and splits lists', () => {
    assert.deepEqual(loadConfig(['--app', 'a.js', '--app', 'b.js'], {}).apps, ['a.js', 'b.js'])
    assert.deepEqual(loadConfig(['--cassandra-hosts', 'h1:1,h2:2'], {}).cassandraHosts, ['h1:1', 'h2:2'])
  })

  const bad: [string[], Record<string, string>, RegExp][] = [
    [['--port', '70000'], {}, /--port: 70000 is invalid: expected an integer 0\.\.65535/],
    [['--port', 'x'], {}, /--port: 'x' is invalid/],
    [['--storage', 'redis'], {}, /--storage: "redis" is invalid: expected one of mem, level, cassandra/],
    [['--nope', '1'], {}, /unknown option --nope/],
    [['--port'], {}, /--port needs a value/],
    [[], { VVM_PARTITIONS: '0' }, /environment VVM_PARTITIONS/],
    [['--ring-bytes', '100000'], {}, /power of two/],
    [['--commit-log-bytes', '4096'], {}, /commitLogBytes 4096 must be 0 \(off\) or at least 65536/],
    [['--commit-log-bytes', String(2 ** 31)], {}, /--commit-log-bytes: .* expected an integer 0\.\.1073741824/],
    [['--level-write-buffer-bytes', '4096'], {}, /--level-write-buffer-bytes: .* expected an integer 65536\.\.1073741824/],
  ]
  for (const [argv, env, re] of bad) {
    it(`refuses ${argv.join(' ') || JSON.stringify(env)}`, () => {
      assert.throws(() => loadConfig(argv, env), (e: unknown) => e instanceof ConfigError && re.test(e.message))
    })
  }

  it('vvm --help documents every option; a bad flag exits 2 with the reason', () => {
    const help = spawnSync(process.execPath, [VVM_BIN, '--help'], { encoding: 'utf8' })
    assert.equal(help.status, 0)
    for (const o of OPTIONS) assert.ok(help.stdout.includes(`--${o.flag}`), `--${o.flag} missing from --help`)
    const badRun = spawnSync(process.execPath, [VVM_BIN, 'start', '--storage', 'redis'], { encoding: 'utf8' })
    assert.equal(badRun.status, 2)
    assert.match(badRun.stderr, /--storage: "redis" is invalid/)
  })
})
