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
})
