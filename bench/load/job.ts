// Messages between the driver (harness main thread) and its load workers.

import type { TransportSpec } from '../transport/types.js'

export type LoadMode = 'closed' | 'open'

export interface WorkerJob {
  transport: TransportSpec
  /** The operations are `echo` (a ceiling run): `ws` then means raw WebSocket messages. */
  echo: boolean
  scenarioUrl: string
  scenarioData: unknown
  workerIndex: number
  workersCount: number
  /** This worker's connections. */
  connections: number
  mode: LoadMode
  /** This worker's share of the open-loop rate, operations per second. */
  ratePerS: number
  workspaces: number
  wsidBase: number
  payloadBytes: number
  warmupMs: number
  durationMs: number
  intervalMs: number
  /** How long after the run replies still in flight are waited for; then they are timeouts. */
  drainMs: number
}

export type ToWorker = { type: 'start'; startAtMs: number }

export interface IntervalReport {
  type: 'interval'
  index: number
  ok: number
  errors: number
  /** Latency (corrected in open loop) of the replies completed in this interval. */
  histogram: string
}

export interface WorkerDone {
  type: 'done'
  corrected: string
  uncorrected: string
  okInWindow: number
  sentInWindow: number
  errorsByKind: Record<string, number>
  errorSamples: string[]
  /** Event-loop utilisation of the worker during the measured window (1 = client-bound). */
  elu: number
  reconnects: number
}

export type FromWorker =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | IntervalReport
  | WorkerDone
