// The harness's command line: what it refuses, with a usage error (exit code 2), before any run.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseBenchArgs } from '../bench/options.js'
import { BenchUsageError } from '../bench/scenario.js'

describe('bench: options', () => {
  it('refuses HTTP pipelining against vvm routes, and allows it for the echo ceiling and the binary protocol', () => {
    assert.throws(() => parseBenchArgs(['deposit', '--pipeline', '4']), (err: unknown) =>
      err instanceof BenchUsageError && /does not support HTTP\/1\.1 pipelining/.test(err.message) && /--transport ws/.test(err.message))
    assert.throws(() => parseBenchArgs(['point-query', '--transport', 'http', '--pipeline=2']), BenchUsageError)
    assert.equal(parseBenchArgs(['deposit', '--transport', 'ws', '--pipeline', '4']).pipeline, 4)
    assert.equal(parseBenchArgs(['echo', '--pipeline', '4']).pipeline, 4)
    assert.equal(parseBenchArgs(['deposit']).pipeline, 1)
  })

  it('refuses unknown options and bad values', () => {
    assert.throws(() => parseBenchArgs(['deposit', '--bogus', '1']), /unknown option --bogus/)
    assert.throws(() => parseBenchArgs(['deposit', '--connections', '0']), /--connections '0' is invalid/)
    assert.throws(() => parseBenchArgs(['standard', '--target', 'http://127.0.0.1:1']), /drop --target/)
  })

  it('takes rounds and an A/B flag for a scenario on servers it starts, and refuses them elsewhere', () => {
    const o = parseBenchArgs(['deposit', '--rounds', '4', '--compare-server-arg=--batch-commands-max=8', '--compare-server-arg', '--ring-bytes=1048576'])
    assert.equal(o.rounds, 4)
    assert.deepEqual(o.compareServerArgs, ['--batch-commands-max=8', '--ring-bytes=1048576'])
    assert.deepEqual(parseBenchArgs(['deposit']).compareServerArgs, [])
    assert.equal(parseBenchArgs(['deposit']).rounds, 1)
    assert.throws(() => parseBenchArgs(['deposit', '--rounds', '0']), /--rounds '0' is invalid/)
    assert.throws(() => parseBenchArgs(['deposit', '--rounds', '2', '--target', 'http://127.0.0.1:1']), (e: unknown) => e instanceof BenchUsageError && /drop --target/.test(e.message))
    assert.throws(() => parseBenchArgs(['echo', '--compare-server-arg=--x=1']), /not the echo ceiling/)
    assert.throws(() => parseBenchArgs(['standard', '--rounds', '2']), /not the standard report/)
    assert.throws(() => parseBenchArgs(['deposit', '--rounds', '2', '--cpu-prof']), /--cpu-prof profiles one run/)
  })
})
