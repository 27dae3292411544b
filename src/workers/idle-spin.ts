// A partition worker's choice, after a batch, between polling its request ring and sleeping.
// A sleeping worker is woken through its event loop, a hand-off that costs tens of µs of CPU
// and wall time on a VM (docs/benchmarks.md); polling costs a busy core for as long as it lasts.

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
  private hitRate = 0.5
  constructor(private readonly us: number) {}

  shouldSpin(): boolean {
    return this.us > 0 && this.hitRate >= SPIN_HIT_RATE_MIN
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
    this.hitRate += ((hit ? 1 : 0) - this.hitRate) * SPIN_HIT_RATE_WEIGHT
    return hit
  }
}
