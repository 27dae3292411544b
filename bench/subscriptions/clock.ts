// The clock of bench/subscriptions.ts: every time is µs of process.hrtime() (CLOCK_MONOTONIC),
// the same clock in every thread of this process; performance.now() counts from each thread's
// own start.

/** µs on CLOCK_MONOTONIC: one clock for all threads of this process. */
export function nowUs(): number {
  const [s, ns] = process.hrtime()
  return s * 1e6 + ns / 1e3
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
export const toUs = (v: number): number => Math.max(1, Math.round(v))
