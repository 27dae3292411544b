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

  it('a waitForData ends at its timeout without data, and when data is published', async () => {
    const shape = createRing(1024)
    const c = new RingConsumer(shape)
    const t0 = performance.now()
    await c.waitForData(30)
    assert.ok(performance.now() - t0 >= 25, 'waited out its timeout')
    assert.equal(c.hasData(), false)
    const p = new RingProducer(shape)
    setTimeout(() => { p.tryWrite(new Uint8Array([1])); p.publish() }, 10)
    const t1 = performance.now()
    await c.waitForData(10_000)
    assert.ok(performance.now() - t1 < 5_000, 'woke when published, not at the timeout')
    assert.equal(c.hasData(), true)
  })

  describe('waitForDataBlocking', () => {
    const producerAfter = (shape: ReturnType<typeof createRing>, delayMs: number, publish: boolean): Worker => {
      const src = `
        const { workerData } = require('node:worker_threads')
        import(workerData.ringUrl).then(({ RingProducer }) => {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, workerData.delayMs)
          const p = new RingProducer(workerData.shape)
          if (!workerData.publish) return p.wakeConsumer()
          p.tryWrite(new Uint8Array([9]))
          p.publish()
        })`
      const ringUrl = new URL('../src/shared/ring/spsc-ring.js', import.meta.url).href
      return new Worker(src, { eval: true, workerData: { shape, delayMs, publish, ringUrl } })
    }

    it('returns true at once when data is there', () => {
      const shape = createRing(1024)
      const p = new RingProducer(shape)
      p.tryWrite(new Uint8Array([1]))
      p.publish()
      assert.equal(new RingConsumer(shape).waitForDataBlocking(10_000), true)
    })

    it('returns false after its timeout on an empty ring', () => {
      const c = new RingConsumer(createRing(1024))
      const t0 = performance.now()
      assert.equal(c.waitForDataBlocking(20), false)
      assert.ok(performance.now() - t0 >= 15, 'blocked for its timeout')
    })

    for (const publish of [true, false]) {
      const what = publish
        ? 'wakes when another thread publishes, and announces its wait so that the producer notifies'
        : 'ends on a wake-up without data (shutdown), returning false'
      it(what, async () => {
        const shape = createRing(1024)
        const c = new RingConsumer(shape)
        const w = producerAfter(shape, 20, publish)
        await new Promise((resolve) => w.once('online', resolve))
        const t0 = performance.now()
        assert.equal(c.waitForDataBlocking(10_000), publish)
        assert.ok(performance.now() - t0 < 5_000, 'woke by the notify, not at the timeout')
        let got: number[] = []
        c.drain((f) => { got = [...f] }, 1)
        assert.deepEqual(got, publish ? [9] : [])
        await w.terminate()
      })
    }
  })
})
