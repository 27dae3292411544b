// The JSON result file's shape. One file per `vvm bench` invocation: the machine, the command
// line, every run (the ceilings too) and, for the standard report, its sweeps, its resource
// steps (memory with idle connections, restart with a long log) and targets. Fields added
// later are optional, so that older files still render (`vvm bench report`).

import type { LatencySummaryUs } from './load/histogram.js'
import type { LoadMode } from './load/job.js'
import type { SyncPutCeiling } from './sync-put.js'

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
  /** true met, false missed, null no verdict: not measured here (the reason in `measured`), or see `noVerdict`. */
  met: boolean | null
  /** Why a measured figure gets no verdict (e.g. a --quick run smaller than the target's size); shown instead of "not measured". */
  noVerdict?: string
}

/** How a resource step ended: `failed` when the server misbehaved or a bounded wait ran out, `skipped` when this machine cannot run it (e.g. the open-files limit). */
export interface StepOutcome {
  status: 'measured' | 'failed' | 'skipped'
  /** Why it failed or was skipped; empty when measured. */
  reason: string
}

/** The server's memory with idle binary-protocol connections (standard report). */
export interface IdleConnectionsResult extends StepOutcome {
  /** Connections the step opens, and how many got their WELCOME. */
  connectionsCount: number
  openedCount: number
  /** Protocol version and idle timeout (s, 0 = none) the server's WELCOME announced. */
  protocolVersion: number | null
  idleTimeoutS: number | null
  /** Server RSS (VmRSS, whole process), started and idle, and with the connections open and idle. */
  rssBeforeKiB: number | null
  rssWithKiB: number | null
  perConnectionKiB: number | null
  /** `vvm_ws_connections` while they were open; null when the metrics could not be read. */
  serverConnectionsCount: number | null
  /** Time to open them all (upgrade, HELLO, WELCOME), and how long they then stayed idle before the RSS was read. */
  openMs: number | null
  idleMs: number
}

/** Time from a crashed server's restart to its first served command, with a long PLog (standard report). */
export interface RestartResult extends StepOutcome {
  /** Events the step fills the PLog to (at least). */
  eventsTarget: number
  /** Sum of the partitions' PLog offsets (`vvm_partition_plog_offset`) before the SIGKILL, and as the restarted server reports it. */
  eventsBeforeKill: number | null
  eventsAfterRestart: number | null
  dataDirBytes: number | null
  /** The fill: deposits over the binary protocol, in closed-loop runs until the PLogs held `eventsTarget`. */
  fill: { label: string; runsCount: number; ok: number; errors: number; errorKinds: Record<string, number>; seconds: number; eventsPerS: number }
  /** From the spawn of the restarted server to its "listening on" line, and to the first 2xx of a document create. */
  listeningMs: number | null
  firstCommandMs: number | null
  /** Creates sent until one succeeded (one every ~20 ms from "listening"). */
  attemptsCount: number
}

export interface ProfileFrame {
  selfPct: number
  fn: string
  where: string
}

export interface ThreadProfile {
  /** E.g. `main thread (uWS, dispatch)`, `partition worker (thread 1)`: from the profile's file name and the code it ran. */
  thread: string
  samplesCount: number
  /** Share of samples waiting (event loop idle, or blocked in Atomics.wait) rather than working. */
  waitingPct: number
  top: ProfileFrame[]
  /** The thread's flame graph and its V8 profile, relative to the output directory (absent in older files). */
  flameSvg?: string | undefined
  cpuProfile?: string | undefined
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
  /** Standard report: the server's memory with idle WebSocket connections (absent in older files). */
  idleConnections?: IdleConnectionsResult | undefined
  /** Standard report: the same step at 1k, 10k and 100k connections, each on a fresh server (absent in older files). */
  idleConnectionsSweep?: IdleConnectionsResult[] | undefined
  /** Standard report: restart with a long PLog until the first command (absent in older files). */
  restart?: RestartResult | undefined
  /** Standard report: LevelDB put with sync, one at a time, on this machine (absent in older files). */
  syncPut?: SyncPutCeiling | undefined
  notes: string[]
  passed: boolean
}
