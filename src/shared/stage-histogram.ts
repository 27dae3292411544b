// Where a command's time goes inside the server, stage by stage: a partition worker records each
// batch's stages into histograms held in its shared stats slots (no message per observation),
// and the main thread renders them for /metrics. The stages of a command, in order:
//
//   queued   the main thread wrote it into the request ring → the worker drained it
//   execute  drained → its batch's commit began (execution, and the wait for the previous
//            batch's commit: commits are pipelined, one at a time)
//   commit   the commit began → it was durable
//   reply    durable → the replies were handed to the reply ring (subscriptions settled, reads run)
//
// What the HTTP histogram (arrival → reply written) has beyond their sum is the main thread's:
// parsing and routing before the ring, and picking the reply up after it.

/** Milliseconds on a clock that every thread of the process shares (CLOCK_MONOTONIC). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

export const STAGES = ['queued', 'execute', 'commit', 'reply'] as const
export type Stage = (typeof STAGES)[number]
export const Stage = { QUEUED: 0, EXECUTE: 1, COMMIT: 2, REPLY: 3 } as const

/** Upper bounds in seconds; a last bucket (+Inf) takes the rest. Finer below 5 ms than the HTTP histogram's. */
export const STAGE_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1] as const
/** Per stage: one count per bucket, the +Inf bucket, and the sum of the values in seconds. */
const SLOTS_PER_STAGE = STAGE_BUCKETS_S.length + 2
export const STAGE_SLOTS = STAGES.length * SLOTS_PER_STAGE

/** The worker's writer: `slots` is its stats array, `base` the first stage slot. */
export class StageRecorder {
  constructor(private readonly slots: Float64Array, private readonly base: number) {}

  /** `ms` observed `weight` times (a batch's stage, once for each of its commands). */
  observe(stage: number, ms: number, weight = 1): void {
    if (weight <= 0) return
    const s = ms > 0 ? ms / 1000 : 0
    const at = this.base + stage * SLOTS_PER_STAGE
    let i = 0
    while (i < STAGE_BUCKETS_S.length && s > STAGE_BUCKETS_S[i]!) i++
    this.slots[at + i]! += weight
    this.slots[at + STAGE_BUCKETS_S.length + 1]! += s * weight
  }
}

export interface StageSnapshot {
  stage: Stage
  /** Cumulative counts, one per bound of STAGE_BUCKETS_S, as Prometheus has them. */
  cumulative: number[]
  count: number
  sumS: number
}

/** The main thread's reader of one worker's stage histograms. */
export function readStages(slots: Float64Array, base: number): StageSnapshot[] {
  return STAGES.map((stage, k) => {
    const at = base + k * SLOTS_PER_STAGE
    const cumulative: number[] = []
    let n = 0
    for (let i = 0; i < STAGE_BUCKETS_S.length; i++) {
      n += slots[at + i]!
      cumulative.push(n)
    }
    n += slots[at + STAGE_BUCKETS_S.length]!
    return { stage, cumulative, count: n, sumS: slots[at + STAGE_BUCKETS_S.length + 1]! }
  })
}
