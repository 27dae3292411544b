// The JSON result file's shape. One file per `vvm bench` invocation: the machine, the command
// line, every run (the ceilings too) and, for the standard report, its sweeps and targets.

import type { LatencySummaryUs } from './load/histogram.js'
import type { LoadMode } from './load/job.js'

export interface RunSettings {
  workers: number
  connections: number
  pipeline: number
  /** Open loop only: the total intended rate. */
  ratePerS: number | null
  warmupS: number
  durationS: number
  workspaces: number
  payloadBytes: number
}

export interface TimelinePoint {
  /** Seconds from the start of the warm-up to the end of this interval. */
  tS: number
  /** Inside the measured window (after warm-up). */
  measured: boolean
  okPerS: number
  errors: number
  /** p99 of the replies completed in the interval (corrected in open loop). */
  p99Us: number
}

export interface RunResult {
  label: string
  scenario: string
  transport: 'http' | 'ws'
  api: 'v1' | 'v2'
  mode: LoadMode
  target: string
  settings: RunSettings
  /** Right replies completed inside the measured window, per second. */
  throughputPerS: number
  ok: number
  /** Operations whose (intended) start fell in the window. */
  sent: number
  errors: { total: number; byKind: Record<string, number>; samples: string[] }
  /** Open loop: from the intended send time (corrected). Closed loop: from the actual send (not a latency figure). */
  latencyUs: LatencySummaryUs
  /** From the actual send time; in open loop this is the figure coordinated omission would give. */
  uncorrectedLatencyUs: LatencySummaryUs
  percentileCurve: [number, number][]
  uncorrectedCurve: [number, number][]
  timeline: TimelinePoint[]
  /** Highest event-loop utilisation of a load worker in the window; near 1 means the client limited the run. */
  clientElu: number
  /** CPU the server process used during the window, in cores (only for a server the harness started). */
  serverCores: number | null
  /** The server's busiest threads during the window (OS thread id; `main` is the process's first thread), in cores. */
  serverThreads: { tid: number; main: boolean; cores: number }[]
  /** CPU other processes used during the window, in cores (machine total minus server minus bench); above ~0.2 the figures were disturbed. */
  otherCores: number | null
  reconnects: number
  /** No wrong reply, no transport error, and at least one right reply. */
  passed: boolean
  /** Label of the ceiling run this one is divided by, and the ratios. */
  ceiling?: { label: string; throughputRatio: number | null; p99Ratio: number | null }
}

export interface Machine {
  nproc: number
  cpuModel: string
  node: string
  os: string
  memoryGiB: number
  /** 1, 5 and 15 minute load averages when the report was written: other work on the machine shows here. */
  loadAverage: number[]
}

export interface SweepPoint {
  /** The swept value: partitions, workspaces, or intended rate per second. */
  x: number
  run: RunResult
}

export interface Sweep {
  name: 'partitions' | 'workspaces' | 'rate'
  title: string
  xLabel: string
  points: SweepPoint[]
  /** Rate sweep: the highest rate that kept up with the schedule and stayed under the p99 bound. */
  knee?: { ratePerS: number; reason: string } | undefined
}

export interface TargetCheck {
  figure: string
  target: string
  measured: string
  /** true met, false missed, null not measured here (with the reason in `measured`). */
  met: boolean | null
}

export interface ProfileFrame {
  selfPct: number
  fn: string
  where: string
}

export interface ThreadProfile {
  /** `main` or `worker <n>`, from the profile file name. */
  thread: string
  samplesCount: number
  /** Share of samples waiting (event loop idle, or blocked in Atomics.wait) rather than working. */
  waitingPct: number
  top: ProfileFrame[]
}

/** A CPU profile (node --cpu-prof) of the server during one run. */
export interface ProfiledRun {
  run: RunResult
  threads: ThreadProfile[]
}

export interface BenchReport {
  kind: 'run' | 'standard'
  createdAt: string
  commit: string
  machine: Machine
  commandLine: string
  /** What durability the figures have (e.g. "level storage, sync on: durable"). */
  durability: string
  runs: RunResult[]
  sweeps: Sweep[]
  targets: TargetCheck[]
  profiles: ProfiledRun[]
  notes: string[]
  passed: boolean
}
