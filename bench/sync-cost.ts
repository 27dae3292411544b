// What a durable append costs at the file level on this machine, beside LevelDB's own: threads
// each append a small record (the size of one deposit's log record) to a file of their own and
// call fdatasync, as many times as asked — one thread, then two and four at once (how far
// syncs of separate files overlap: partitions sharing one LevelDB log cannot, one log each
// could) — and one thread overwriting a region written and synced beforehand (no file growth,
// so no journal commit per sync). Reported per sync: wall time (mean, p50, p99), the syncs per
// second of all threads together, and the process CPU per sync (user + system, all threads).
//
//   npx tsc -p . && node dist/bench/sync-cost.js [--syncs 2000] [--record-bytes 430] [--dir /tmp]

import { mkdtemp, rm } from 'node:fs/promises'
import { closeSync, fdatasyncSync, fsyncSync, openSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'

interface Job {
  file: string
  syncs: number
  recordBytes: number
  /** Write this many zero bytes and sync them first, then overwrite from the start. */
  preallocateBytes: number
}

export interface SyncCost {
  threads: number
  preallocated: boolean
  /** Syncs of all threads per second of wall time. */
  syncsPerS: number
  /** One write + fdatasync, µs, over all threads' syncs. */
  meanUs: number
  p50Us: number
  p99Us: number
  /** Process CPU per sync, µs (user + system, all threads). */
  cpuUs: number
}

function appendAndSync(job: Job): Float64Array {
  const fd = openSync(job.file, 'w')
  try {
    if (job.preallocateBytes > 0) {
      const zeros = new Uint8Array(1 << 20)
      for (let at = 0; at < job.preallocateBytes; at += zeros.byteLength) writeSync(fd, zeros, 0, Math.min(zeros.byteLength, job.preallocateBytes - at), at)
      fsyncSync(fd)
    }
    const record = new Uint8Array(job.recordBytes).fill(0x78)
    const times = new Float64Array(job.syncs)
    let at = 0
    for (let i = 0; i < job.syncs; i++) {
      const t0 = performance.now()
      writeSync(fd, record, 0, record.byteLength, at)
      fdatasyncSync(fd)
      times[i] = (performance.now() - t0) * 1000
      at += record.byteLength
    }
    return times
  } finally {
    closeSync(fd)
  }
}

function runThread(job: Job): Promise<Float64Array> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: job })
    w.once('message', (times: Float64Array) => resolve(times))
    w.once('error', reject)
    w.once('exit', (code) => { if (code !== 0) reject(new Error(`sync-cost: thread exited with ${code}`)) })
  })
}

/** `threads` threads at once, each syncing its own file `syncs` times. */
export async function measureSyncCost(dir: string, threads: number, syncs: number, recordBytes: number, preallocated: boolean): Promise<SyncCost> {
  if (preallocated && threads !== 1) throw new Error('sync-cost: the preallocated case runs on one thread')
  const jobs = Array.from({ length: threads }, (_, i): Job => ({
    file: join(dir, `sync-${threads}-${i}${preallocated ? '-pre' : ''}.log`), syncs, recordBytes,
    preallocateBytes: preallocated ? recordBytes * syncs : 0,
  }))
  // The preallocation is not timed: the threads start, then the clock (each sync is timed inside).
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  const all = await Promise.all(jobs.map(runThread))
  const wallMs = performance.now() - t0
  const c = process.cpuUsage(c0)
  const times = Float64Array.from(all.flatMap((t) => Array.from(t))).sort()
  const n = times.length
  const sum = times.reduce((a, b) => a + b, 0)
  // With a preallocation the wall clock includes it; the rate comes from the syncs' own times.
  const syncsPerS = preallocated ? n / (sum / 1e6) : n / (wallMs / 1000)
  return {
    threads, preallocated, syncsPerS,
    meanUs: sum / n,
    p50Us: times[Math.floor(n * 0.5)]!,
    p99Us: times[Math.min(n - 1, Math.floor(n * 0.99))]!,
    cpuUs: (c.user + c.system) / n,
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { syncs: { type: 'string', default: '2000' }, 'record-bytes': { type: 'string', default: '430' }, dir: { type: 'string', default: tmpdir() } } })
  const syncs = Number(values.syncs)
  const recordBytes = Number(values['record-bytes'])
  if (!Number.isSafeInteger(syncs) || syncs < 1 || !Number.isSafeInteger(recordBytes) || recordBytes < 1 || recordBytes > 1 << 20) {
    throw new Error('usage: sync-cost [--syncs N>=1] [--record-bytes 1..1048576] [--dir DIR]')
  }
  const dir = await mkdtemp(join(values.dir!, 'vvm-sync-cost-'))
  try {
    console.log(`sync cost: ${syncs} appends of ${recordBytes} bytes + fdatasync per thread, in ${dir}`)
    for (const [threads, pre] of [[1, false], [1, true], [2, false], [4, false]] as const) {
      const r = await measureSyncCost(dir, threads, syncs, recordBytes, pre)
      console.log(`${threads} thread${threads === 1 ? ', ' : 's,'} ${pre ? 'preallocated' : 'appending   '}: ${Math.round(r.syncsPerS)} syncs/s in all; per sync mean ${r.meanUs.toFixed(0)} µs, p50 ${r.p50Us.toFixed(0)}, p99 ${r.p99Us.toFixed(0)}; process CPU ${r.cpuUs.toFixed(1)} µs per sync`)
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

if (!isMainThread) parentPort!.postMessage(appendAndSync(workerData as Job))
else if (process.argv[1] !== undefined && new URL(import.meta.url).pathname === process.argv[1]) {
  main().catch((err: unknown) => {
    console.error((err as Error).message)
    process.exitCode = 1
  })
}
