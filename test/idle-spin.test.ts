// The partition worker's idle spin (--partition-spin-us): polling catches a frame another thread
// publishes, gives up after its length, turns itself off when requests come later than that and
// back on when they come sooner; a server with the option answers commands right and counts
// the spins, one without never spins.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Worker } from 'node:worker_threads'
import { RingConsumer, createRing } from '../src/shared/ring/spsc-ring.js'
import { IdleSpin } from '../src/workers/idle-spin.js'
import { balanceOf, createAccount, http, startTestServer, type TestServer } from './helpers/server.js'
import { metric } from './helpers/subscriptions.js'

describe('IdleSpin', () => {
  it('is off with a length of 0', () => {
    assert.equal(new IdleSpin(0).shouldSpin(), false)
  })

  it('catches a frame published by another thread while it polls', async () => {
    const shape = createRing(1024)
    const ringUrl = new URL('../src/shared/ring/spsc-ring.js', import.meta.url).href
    const src = `
      const { workerData } = require('node:worker_threads')
      import(workerData.ringUrl).then(({ RingProducer }) => {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20)
        const p = new RingProducer(workerData.shape)
        p.tryWrite(new Uint8Array([7]))
        p.publish()
      })`
    const w = new Worker(src, { eval: true, workerData: { shape, ringUrl } })
    await new Promise((resolve) => w.once('online', resolve))
    const c = new RingConsumer(shape)
    const spin = new IdleSpin(10_000_000)
    const t0 = performance.now()
    assert.equal(spin.spin(c), true)
    assert.ok(performance.now() - t0 < 10_000, 'the spin returned when the frame came, not at its end')
    let got: number[] = []
    c.drain((f) => { got = [...f] }, 1)
    assert.deepEqual(got, [7])
    await w.terminate()
  })

  it('gives up after its length on an empty ring', () => {
    const c = new RingConsumer(createRing(1024))
    const t0 = performance.now()
    assert.equal(new IdleSpin(3000).spin(c), false)
    assert.ok(performance.now() - t0 >= 3, 'polled for its whole length')
  })

  it('stops spinning when requests come later than its length, and starts again when they come sooner', () => {
    const c = new RingConsumer(createRing(1024))
    const spin = new IdleSpin(200)
    assert.equal(spin.shouldSpin(), true, 'undecided at first: it tries')
    spin.spin(c) // a miss: nothing comes
    assert.equal(spin.shouldSpin(), false)
    // Sleeps after batches: requests 5 ms later (longer than the spin) keep it off...
    for (let i = 0; i < 50; i++) spin.slept(5, true)
    assert.equal(spin.shouldSpin(), false)
    // ...as do wake-ups without a request; requests 0.1 ms later turn it on.
    for (let i = 0; i < 50; i++) spin.slept(0.01, false)
    assert.equal(spin.shouldSpin(), false)
    for (let i = 0; i < 20; i++) spin.slept(0.1, true)
    assert.equal(spin.shouldSpin(), true)
  })
})

describe('a server with --partition-spin-us', () => {
  let spinning: TestServer
  let plain: TestServer
  before(async () => {
    // A spin far longer than the test's round trip, so that it catches requests on a busy machine.
    spinning = await startTestServer(['--partitions', '1', '--partition-spin-us', '10000'])
    plain = await startTestServer(['--partitions', '1'])
  })
  after(async () => {
    await spinning?.close()
    await plain?.close()
  })

  const depositOneAtATime = async (t: TestServer, n: number): Promise<number> => {
    const account = await createAccount(t.ws(1), 'spin')
    for (let i = 0; i < n; i++) {
      const r = await http('POST', `${t.ws(1)}/commands/bank.Deposit`, { args: { account, amount: 1 } })
      assert.equal(r.status, 200, JSON.stringify(r.body))
    }
    return account
  }

  it('answers commands one at a time and counts the spins that caught them', async () => {
    const account = await depositOneAtATime(spinning, 40)
    assert.equal(await balanceOf(spinning.ws(1), account), 40)
    const caught = await metric(spinning, 'vvm_partition_idle_spins_caught_total')
    assert.ok(caught >= 10, `spins caught ${caught} of 40 requests`)
  })

  it('never spins without the option', async () => {
    const account = await depositOneAtATime(plain, 40)
    assert.equal(await balanceOf(plain.ws(1), account), 40)
    assert.equal(await metric(plain, 'vvm_partition_idle_spins_caught_total') + await metric(plain, 'vvm_partition_idle_spins_missed_total'), 0)
  })
})
