// Flame graphs from `--cpu-prof`: the SVG drawn from synthetic V8 profiles (widths, waiting
// frames left out, escaping, the depth and width bounds), and summarizeProfiles keeping each
// thread's profile and flame graph in the output directory.

import assert from 'node:assert/strict'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { DEPTH_DRAWN_MAX, FRAME_WIDTH_MIN_PX, renderFlameGraph, SVG_WIDTH_PX } from '../bench/flame.js'
import type { CpuProfile } from '../bench/cpu-profile.js'
import { summarizeProfiles } from '../bench/profile.js'
import { reportCommand } from '../bench/rerender.js'
import type { BenchReport } from '../bench/result.js'
import { REPO_ROOT, tempDir } from './helpers/server.js'

const SRC = 'file:///repo/dist/src/shared/x.js'

/** `[id, function, url, children, self samples]`; node 1 is the root; every frame on line 1. */
type Row = [number, string, string, number[], number]

function profileOf(rows: Row[], withSamples = true): CpuProfile {
  const nodes = rows.map(([id, functionName, url, children, self]) => ({
    id, callFrame: { functionName, url, lineNumber: 0 }, children, ...(withSamples ? {} : { hitCount: self }),
  }))
  return withSamples ? { nodes, samples: rows.flatMap(([id, , , , self]) => Array<number>(self).fill(id)) } : { nodes }
}

/** root → a → b, a → c, and (idle): b has twice c's samples; 30 of 62 samples wait. */
const SMALL: Row[] = [
  [1, '(root)', '', [2, 5], 0],
  [2, 'a', SRC, [3, 4], 2],
  [3, 'b', SRC, [], 20],
  [4, 'c', 'node:internal/streams/x', [], 10],
  [5, '(idle)', '', [], 30],
]

interface Drawn { title: string; x: number; y: number; width: number }

/** Every drawn frame: its tooltip and its rectangle. */
function frames(svg: string): Drawn[] {
  const re = /<g><title>([^<]*)<\/title><rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"/g
  return [...svg.matchAll(re)].map((m) => ({ title: m[1]!, x: Number(m[2]), y: Number(m[3]), width: Number(m[4]) }))
}
const framesNamed = (svg: string, fn: string): Drawn[] => frames(svg).filter((f) => f.title.startsWith(`${fn} (`) || f.title.startsWith(`${fn}\n`))

/** Well-formed enough for a browser: tags nest and close, every `&` starts an entity, no markup inside a tooltip. */
function assertWellFormed(svg: string): void {
  assert.equal(svg.match(/<svg[\s>]/g)?.length, 1)
  assert.equal(svg.match(/<\/svg>/g)?.length, 1)
  const open: string[] = []
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^<>]*?(\/?)>/g)) {
    if (m[3] === '/') continue
    if (m[1] === '/') assert.equal(open.pop(), m[2], `</${m[2]}> closes what it did not open`)
    else open.push(m[2]!)
  }
  assert.deepEqual(open, [])
  assert.doesNotMatch(svg, /&(?!amp;|lt;|gt;|quot;|apos;)/)
  for (const m of svg.matchAll(/<title>([\s\S]*?)<\/title>/g)) assert.ok(!/[<>]/.test(m[1]!), m[1])
  assert.doesNotMatch(svg, /<script|href=/, 'self-contained')
}

describe('bench: flame graphs', () => {
  it('draws frames as wide as their inclusive samples, without the waiting frames, and names the waiting share', () => {
    const svg = renderFlameGraph(profileOf(SMALL), 'deposit — main thread')
    assertWellFormed(svg)
    const [a] = framesNamed(svg, 'a')
    const [b] = framesNamed(svg, 'b')
    const [c] = framesNamed(svg, 'c')
    assert.ok(a !== undefined && b !== undefined && c !== undefined)
    assert.equal(a.width, SVG_WIDTH_PX, 'a holds every working sample')
    assert.equal(b.width, 2 * c.width)
    assert.ok(b.y === c.y && b.y > a.y, 'b and c are callees of a, side by side')
    assert.match(b.title, /inclusive 62\.5 %, self 62\.5 %/)
    assert.match(a.title, /^a \(file:\/\/\/repo\/dist\/src\/shared\/x\.js:1\)\ninclusive 100\.0 %, self 6\.3 %/)
    assert.deepEqual(framesNamed(svg, '(idle)'), [])
    assert.match(svg, /32 working samples; 30 waiting \(48\.4 %: \(idle\), atomicsWaitLoop, waitForDataBlocking\) excluded/)
    assert.match(svg, />a<\/text>/, 'a wide frame is labelled')
    // Without samples, V8's hitCount gives the same picture.
    assert.deepEqual(frames(renderFlameGraph(profileOf(SMALL, false), 'deposit — main thread')), frames(svg))
  })

  it('merges siblings of the same function and place, and escapes every name', () => {
    const weird = `<&"weird'>`
    const svg = renderFlameGraph(profileOf([
      [1, '(root)', '', [2, 3, 4], 0],
      [2, weird, 'file:///a&b/<c>.js', [], 8],
      [3, 'twin', SRC, [], 4],
      [4, 'twin', SRC, [], 4],
    ]), `title <&"> here`)
    assertWellFormed(svg)
    assert.ok(svg.includes('&lt;&amp;&quot;weird&apos;&gt;'))
    assert.ok(svg.includes('title &lt;&amp;&quot;&gt; here'))
    assert.ok(!svg.includes(weird) && !svg.includes('<c>'))
    const twins = framesNamed(svg, 'twin')
    assert.equal(twins.length, 1, 'two calls of twin at one place are one frame')
    assert.equal(twins[0]!.width, SVG_WIDTH_PX / 2)
  })

  it(`cuts a stack deeper than ${DEPTH_DRAWN_MAX} frames at the bound, its samples kept in the last frame drawn`, () => {
    const depth = DEPTH_DRAWN_MAX + 40
    const rows: Row[] = [[1, '(root)', '', [2], 0]]
    for (let i = 1; i <= depth; i++) rows.push([i + 1, `f${i}`, SRC, i < depth ? [i + 2] : [], i < depth ? 0 : 10])
    const svg = renderFlameGraph(profileOf(rows), 'deep')
    assertWellFormed(svg)
    const drawn = frames(svg)
    assert.equal(drawn.length, DEPTH_DRAWN_MAX, 'the root and its first callees, one row each')
    assert.equal(new Set(drawn.map((f) => f.y)).size, DEPTH_DRAWN_MAX)
    const last = framesNamed(svg, `f${DEPTH_DRAWN_MAX - 1}`)[0]
    assert.ok(last !== undefined && last.width === SVG_WIDTH_PX)
    assert.match(last.title, /inclusive 100\.0 %, self 0\.0 %/)
    assert.deepEqual(framesNamed(svg, `f${DEPTH_DRAWN_MAX}`), [])
  })

  it(`leaves out a frame narrower than ${FRAME_WIDTH_MIN_PX} px, its share still in its parent`, () => {
    const svg = renderFlameGraph(profileOf([
      [1, '(root)', '', [2], 0],
      [2, 'parent', SRC, [3, 4, 5], 0],
      [3, 'big', SRC, [], 10_000],
      [4, 'small', SRC, [], 5], // 5 × 1200 / 10,006 ≈ 0.6 px: drawn
      [5, 'tiny', SRC, [], 1], // ≈ 0.12 px: left out
    ]), 'narrow')
    assertWellFormed(svg)
    assert.equal(framesNamed(svg, 'small').length, 1)
    assert.ok(framesNamed(svg, 'small')[0]!.width >= FRAME_WIDTH_MIN_PX)
    assert.deepEqual(framesNamed(svg, 'tiny'), [])
    assert.equal(framesNamed(svg, 'parent')[0]!.width, SVG_WIDTH_PX)
    assert.doesNotMatch(svg, />small<\/text>/, 'a narrow frame has no label')
  })

  it('keeps each thread\'s .cpuprofile and writes its flame graph in the output directory', async () => {
    const profDir = await tempDir('vvm-flame-prof-')
    const outDir = await tempDir('vvm-flame-out-')
    try {
      const main = JSON.stringify(profileOf(SMALL))
      const worker = JSON.stringify(profileOf([
        [1, '(root)', '', [2, 4, 5], 0],
        [2, 'drain', 'file:///repo/dist/src/workers/partition-worker.js', [3], 3],
        [3, 'atomicsWaitLoop', 'file:///repo/dist/src/workers/partition-worker.js', [], 40],
        [4, '(garbage collector)', '', [], 1],
        // The worker's blocking wait after a batch (Atomics.wait): waiting, not work.
        [5, 'waitForDataBlocking', 'file:///repo/dist/src/shared/ring/spsc-ring.js', [], 20],
      ]))
      await writeFile(join(profDir.path, 'CPU.20261207.061000.19060.0.001.cpuprofile'), main)
      await writeFile(join(profDir.path, 'CPU.20261207.061000.19060.1.002.cpuprofile'), worker)
      const threads = await summarizeProfiles(profDir.path, { outDir: outDir.path, prefix: 'Deposit, run 1' })
      const byName = new Map(threads.map((t) => [t.thread, t]))
      const m = byName.get('main thread (uWS, dispatch)')
      const w = byName.get('partition worker (thread 1)')
      assert.ok(m !== undefined && w !== undefined, threads.map((t) => t.thread).join(', '))
      assert.equal(m.cpuProfile, 'profiles/deposit-run-1-main-thread.cpuprofile')
      assert.equal(m.flameSvg, 'profiles/deposit-run-1-main-thread.svg')
      assert.equal(w.cpuProfile, 'profiles/deposit-run-1-partition-worker-thread-1.cpuprofile')
      assert.equal(w.flameSvg, 'profiles/deposit-run-1-partition-worker-thread-1.svg')
      assert.deepEqual((await readdir(join(outDir.path, 'profiles'))).sort(), [m.cpuProfile, m.flameSvg, w.cpuProfile, w.flameSvg].map((p) => p.slice('profiles/'.length)).sort())
      assert.equal(await readFile(join(outDir.path, m.cpuProfile), 'utf8'), main)
      assert.equal(await readFile(join(outDir.path, w.cpuProfile), 'utf8'), worker)
      const svg = await readFile(join(outDir.path, w.flameSvg), 'utf8')
      assertWellFormed(svg)
      assert.match(svg, /Deposit, run 1 — partition worker \(thread 1\)/)
      assert.match(svg, /4 working samples; 60 waiting \(93\.8 %/)
      assert.deepEqual(framesNamed(svg, 'atomicsWaitLoop'), [])
      assert.deepEqual(framesNamed(svg, 'waitForDataBlocking'), [])
      assert.equal(w.waitingPct, 93.8)
      // Without `keep` nothing is written and the fields stay absent, as in older result files.
      const plain = await summarizeProfiles(profDir.path)
      assert.ok(plain.every((t) => t.flameSvg === undefined && t.cpuProfile === undefined))
    } finally {
      await profDir.remove()
      await outDir.remove()
    }
  })

  it('re-rendered elsewhere (vvm bench report --out), a report takes its profiles along', async () => {
    const from = await tempDir('vvm-flame-from-')
    const to = await tempDir('vvm-flame-to-')
    try {
      const rep = JSON.parse(await readFile(join(REPO_ROOT, 'bench/reports/2026-11-23-standard/result.json'), 'utf8')) as BenchReport
      const thread = rep.profiles[0]!.threads[0]!
      thread.flameSvg = 'profiles/p-main-thread.svg'
      thread.cpuProfile = 'profiles/p-main-thread.cpuprofile'
      await writeFile(join(from.path, 'result.json'), JSON.stringify(rep))
      await mkdir(join(from.path, 'profiles'))
      await writeFile(join(from.path, thread.flameSvg), '<svg xmlns="http://www.w3.org/2000/svg"></svg>')
      await writeFile(join(from.path, thread.cpuProfile), '{"nodes":[]}')
      assert.equal(await reportCommand([join(from.path, 'result.json'), '--out', to.path]), 0)
      assert.deepEqual((await readdir(join(to.path, 'profiles'))).sort(), ['p-main-thread.cpuprofile', 'p-main-thread.svg'])
      assert.match(await readFile(join(to.path, 'report.md'), 'utf8'), /\[flame graph\]\(profiles\/p-main-thread\.svg\)/)
    } finally {
      await from.remove()
      await to.remove()
    }
  })
})
