// bench/instructions.ts: callgrind's listing and the perf map read right, the steady state taken
// as the difference of two runs with the compilers apart, and one real (short) run under
// valgrind. .ci/run installs valgrind; without it the real run fails here, saying so.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { describe, it } from 'node:test'
import { promisify } from 'node:util'
import { inclusiveTop, isCompiler, measureInstructions, nameJit, parseAnnotate, parsePerfMap, steadyState } from '../bench/instructions.js'

const ANNOTATE = `--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
4,404,635,512 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                    file:function
--------------------------------------------------------------------------------
118,368,418 ( 2.69%)  ???:0x000000000d0f1f40'2 [???]
 79,505,211 ( 1.81%)  ???:v8::internal::compiler::GraphReducer::ReduceTop() [/usr/bin/node]
 79,138,029 ( 1.80%)  ???:Builtins_LoadIC [/usr/bin/node]
  1,000,000 ( 0.02%)  ???:0x000000000d0f2000 [???]
        500 ( 0.00%)  ???:0x0000000000000010 [???]
`

const PERF_MAP = `d0f2fc0 140c JS:*encode file:///x/pack.js:69:37
d0f1f40 1598 JS:*pack file:///x/pack.js:472:16
`

describe('bench/instructions', () => {
  it('reads callgrind_annotate: the total and each function', () => {
    const { total, counts } = parseAnnotate(ANNOTATE)
    assert.equal(total, 4_404_635_512)
    assert.equal(counts.get('???:Builtins_LoadIC [/usr/bin/node]'), 79_138_029)
    assert.equal(counts.size, 5)
  })

  it('names JIT code by the perf map, merging what maps to one function, and keeps the rest', () => {
    const named = nameJit(parseAnnotate(ANNOTATE).counts, parsePerfMap(PERF_MAP))
    // 0xd0f1f40 is pack's first byte, 0xd0f2000 inside it (size 0x1598): both are pack.
    assert.equal(named.get('JS *pack file:///x/pack.js:472:16'), 118_368_418 + 1_000_000)
    assert.equal(named.get('???:0x0000000000000010 [???]'), 500, 'an address outside every entry keeps its name')
    assert.equal([...named.keys()].filter((k) => k.startsWith('JS ')).length, 1)
  })

  it('takes the steady state as the difference of the runs, the compilers apart', () => {
    const short = new Map([['JS *pack', 1000], ['v8::internal::compiler::GraphReducer::ReduceTop()', 5000], ['leveldb::Compare', 300]])
    const long = new Map([['JS *pack', 3000], ['v8::internal::compiler::GraphReducer::ReduceTop()', 5400], ['leveldb::Compare', 700], ['malloc', 100]])
    const s = steadyState(short, long, 10, 2)
    assert.equal(s.perCommand, (2000 + 400 + 400 + 100) / 10)
    assert.equal(s.compilerPerCommand, 40)
    assert.equal(s.workPerCommand, 250)
    assert.deepEqual(s.top, [{ fn: 'JS *pack', perCommand: 200 }, { fn: 'leveldb::Compare', perCommand: 40 }])
    assert.ok(isCompiler('v8::internal::maglev::MaglevGraphBuilder::Build()'))
    assert.ok(!isCompiler('v8::internal::Scavenger::ScavengeObject'))
  })

  it('lists the project\'s own JS functions inclusively, by their steady-state difference', () => {
    const own = 'JS *execOne file:///x/dist/src/workers/command/processor.js:1:1'
    const app = 'JS *exec file:///x/dist/demo/bank/index.js:1:1'
    const lib = 'JS *pack file:///x/node_modules/msgpackr/pack.js:1:1'
    const short = new Map([[own, 1000], [app, 500], [lib, 9000], ['main', 50_000]])
    const long = new Map([[own, 5000], [app, 700], [lib, 90_000], ['main', 100_000]])
    assert.deepEqual(inclusiveTop(short, long, 10, 5), [{ fn: own, perCommand: 400 }, { fn: app, perCommand: 20 }])
    assert.deepEqual(inclusiveTop(short, long, 10, 1), [{ fn: own, perCommand: 400 }])
  })

  it('counts a real run of the command path under valgrind', async () => {
    await promisify(execFile)('valgrind', ['--version']).catch((err: Error) => {
      throw new Error(`valgrind is needed for this test (.ci/run installs it): ${err.message}`)
    })
    // Runs of 60 and 120 batches of 8: start-up dominates their time under valgrind, and with
    // fewer commands (12 and 24 batches of 4) a GC or compile in one run could swing the
    // difference to a fraction of a deposit.
    const s = await measureInstructions(60, 8, 25, true)
    assert.equal(s.commands, 480)
    // A deposit is some 160k instructions once warm; this short run is not warm, but it is
    // neither nothing nor the whole start-up.
    assert.ok(s.workPerCommand > 50_000 && s.workPerCommand < 5_000_000, `${s.workPerCommand} instructions per command`)
    assert.ok(s.top.some((t) => t.fn.startsWith('JS ')), 'JIT code named from the perf map')
    assert.ok(s.top.some((t) => t.fn.includes('leveldb')), 'LevelDB among the top functions')
    assert.ok(s.inclusiveTop!.some((t) => t.fn.includes('/src/workers/command/') && t.perCommand > 1000), 'the command path, inclusively')
  })
})
