// The SPSC ring: framing across the wrap-around, refusal when full, drain limits, and a real
// producer/consumer pair on two threads exchanging a million frames in order.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Worker } from 'node:worker_threads'
import { RingConsumer, RingProducer, createRing } from '../src/shared/ring/spsc-ring.js'

const frame = (i: number, len: number): Uint8Array => {
  const b = new Uint8Array(len)
  new DataView(b.buffer).setUint32(0, i, true)
  for (let k = 4; k < len; k++) b[k] = (i + k) & 0xff
  return b
}

describe('SPSC ring', () => {
  it('carries frames across the wrap-around intact and in order', () => {
    const shape = createRing(1024)
    const p = new RingProducer(shape)
    const c = new RingConsumer(shape)
    let sent = 0
    let got = 0
    for (let round = 0; round < 500; round++) {
      const len = 4 + ((round * 37) % 200)
      while (p.tryWrite(frame(sent, len))) sent++
      p.publish()
      c.drain((f) => {
        const i = new DataView(f.buffer, f.byteOffset, f.byteLength).getUint32(0, true)
        assert.equal(i, got)
        for (let k = 4; k < f.byteLength; k++) assert.equal(f[k], (i + k) & 0xff)
        got++
      }, 1_000_000)
    }
    assert.equal(got, sent)
    assert.ok(sent > 1000)
  })

  it('refuses a frame that does not fit, writing nothing', () => {
    const shape = createRing(1024)
    const p = new RingProducer(shape)
    const c = new RingConsumer(shape)
    let n = 0
    while (p.tryWrite(frame(n, 100))) n++
    assert.equal(n, 9) // 9 × 104 bytes fit in 1024
    p.publish()
    assert.equal(c.drain(() => {}, 3), 3)
    assert.ok(p.tryWrite(frame(n, 100)))
    assert.throws(() => p.tryWrite(new Uint8Array(p.frameBytesMax + 1)))
  })

  it('frames are invisible until published', () => {
    const shape = createRing(1024)
    const p = new RingProducer(shape)
    const c = new RingConsumer(shape)
    p.tryWrite(frame(1, 10))
    assert.equal(c.hasData(), false)
    p.publish()
    assert.equal(c.hasData(), true)
  })

  it('moves a million frames between two threads, in order, with waits on both sides', async () => {
    const shape = createRing(64 * 1024)
    const count = 1_000_000
    const src = `
      const { workerData, parentPort } = require('node:worker_threads')
      import(workerData.ringUrl).then(async ({ RingProducer }) => {
        const p = new RingProducer(workerData.shape)
        const b = new Uint8Array(16)
        const v = new DataView(b.buffer)
        for (let i = 0; i < workerData.count; i++) {
          v.setUint32(0, i, true)
          while (!p.tryWrite(b)) { p.publish(); await p.waitForSpace(100) }
          if ((i & 255) === 0) p.publish()
        }
        p.publish()
        parentPort.postMessage('done')
      })`
    const ringUrl = new URL('../src/shared/ring/spsc-ring.js', import.meta.url).href
    const w = new Worker(src, { eval: true, workerData: { shape, count, ringUrl } })
    const c = new RingConsumer(shape)
    let next = 0
    while (next < count) {
      const n = c.drain((f) => {
        assert.equal(new DataView(f.buffer, f.byteOffset).getUint32(0, true), next)
        next++
      }, 4096)
      if (n === 0) await c.waitForData(100)
    }
    assert.equal(next, count)
    await w.terminate()
  })
})
