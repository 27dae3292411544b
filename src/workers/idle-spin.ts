// A partition worker's choices after a batch, before it sleeps in its event loop: polling its
// request ring (IdleSpin) and blocking on it (IdleBlock). A worker sleeping in its event loop is
// woken through it (an eventfd, its poll, a task, a promise): a hand-off that costs tens of µs
// of CPU and wall time on a VM (docs/benchmarks.md). Polling costs a busy core for as long as it
// lasts; blocking costs nothing while it lasts, but holds the thread's timers and messages back.

import type { RingConsumer } from '../shared/ring/spsc-ring.js'

/** The idle spin runs while at least this share of recent idle gaps were shorter than it. */
const SPIN_HIT_RATE_MIN = 0.5
/** Weight of the latest idle gap in that share (a moving average over about 1/weight gaps). */
const SPIN_HIT_RATE_WEIGHT = 1 / 16

/**
 * Whether to poll the request ring after a batch instead of sleeping at once. Polling pays only
 * when the next request comes within the spin: the share of recent idle gaps that were that
 * short is kept as a moving average, and the worker spins while it is at least half. Gaps are
 * measured when the worker spins (caught or not) and when it sleeps right after a batch.
 */
export class IdleSpin {
  /** Share of recent idle gaps a spin would have caught; starts undecided. */
  private readonly hits = new MovingShare(SPIN_HIT_RATE_WEIGHT, 0.5)
  constructor(private readonly us: number) {}

  shouldSpin(): boolean {
    return this.us > 0 && this.hits.share >= SPIN_HIT_RATE_MIN
  }

  /** Polls the ring for up to the spin's length; true when data came. */
  spin(ring: RingConsumer): boolean {
    const until = performance.now() + this.us / 1000
    for (;;) {
      for (let i = 0; i < 64; i++) if (ring.hasData()) return this.note(true)
      if (performance.now() >= until) return this.note(false)
    }
  }

  /** A sleep right after a batch ended after `ms`, with data (a request) or without. */
  slept(ms: number, data: boolean): void {
    if (this.us > 0) this.note(data && ms * 1000 <= this.us)
  }

  private note(hit: boolean): boolean {
    this.hits.note(hit)
    return hit
  }
}

/** The share of recent outcomes that were hits: a moving average over about 1/weight of them. */
export class MovingShare {
  constructor(private readonly weight: number, public share: number) {}

  note(hit: boolean): void {
    this.share += ((hit ? 1 : 0) - this.share) * this.weight
  }
}

/**
 * A bounded blocking wait on the request ring after a batch (`Atomics.wait`): a request that
 * comes within it wakes the worker by futex, about 30 µs of CPU cheaper here than a wake-up
 * through the event loop (bench/wake-cost.ts). Nothing else of the thread runs while it blocks,
 * and a worker that keeps catching requests would never return to its event loop, so before a
 * wait the loop gets a turn when it had none for as long as a wait may last: timers (the async
 * actualizers' flushes, jobs), messages and I/O are late by at most twice that.
 */
export class IdleBlock {
  private lastTurn = performance.now()
  constructor(readonly ms: number) {}

  get enabled(): boolean {
    return this.ms > 0
  }

  /** The event loop just had a turn. */
  turned(): void {
    this.lastTurn = performance.now()
  }

  /** Whether the event loop must have a turn before the next blocking wait. */
  turnDue(): boolean {
    return performance.now() - this.lastTurn >= this.ms
  }

  /** Blocks until a request comes, a wake-up, or the wait's length; true when a request came. */
  wait(ring: RingConsumer): boolean {
    return ring.waitForDataBlocking(this.ms)
  }
}

/** One turn of the event loop (timers due, I/O, messages), then resolves. */
export function eventLoopTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}
