// Reads the V8 CPU profiles a server wrote with `node --cpu-prof` (one file per thread) and
// names the functions that took the most self time in each thread.

import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ProfileFrame, ThreadProfile } from './result.js'

/**
 * Frames where a thread waits rather than works. V8 samples wall time: the event loop waiting
 * in epoll is `(idle)`, and piscina's workers block in Atomics.wait inside `atomicsWaitLoop`.
 */
const WAITING_FRAMES = new Set(['(idle)', 'atomicsWaitLoop'])

const REPO_URL = new URL('../../', import.meta.url).href
const REPO_PATH = fileURLToPath(REPO_URL)

interface CpuProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
}

interface CpuProfile {
  nodes: CpuProfileNode[]
  samples?: number[]
}

/** Top `count` self-time frames of every thread profile in `dir`, the busiest thread first. */
export async function summarizeProfiles(dir: string, count = 12): Promise<ThreadProfile[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort()
  const threads: ThreadProfile[] = []
  for (const f of files) {
    const profile = JSON.parse(await readFile(join(dir, f), 'utf8')) as CpuProfile
    const top = topFrames(profile, count)
    threads.push({ thread: threadName(f, profile.nodes.map((n) => n.callFrame.url)), samplesCount: top.total, waitingPct: top.waitingPct, top: top.frames })
  }
  return threads.sort((a, b) => b.samplesCount * (100 - b.waitingPct) - a.samplesCount * (100 - a.waitingPct))
}

function topFrames(p: CpuProfile, count: number): { total: number; waitingPct: number; frames: ProfileFrame[] } {
  const hits = new Map<number, number>()
  if (p.samples !== undefined && p.samples.length > 0) for (const id of p.samples) hits.set(id, (hits.get(id) ?? 0) + 1)
  else for (const n of p.nodes) hits.set(n.id, n.hitCount ?? 0)
  const byFrame = new Map<string, { fn: string; where: string; hits: number }>()
  let total = 0
  let waiting = 0
  for (const n of p.nodes) {
    const h = hits.get(n.id) ?? 0
    if (h === 0) continue
    total += h
    if (WAITING_FRAMES.has(n.callFrame.functionName)) waiting += h
    const fn = n.callFrame.functionName || '(anonymous)'
    const where = n.callFrame.url === '' ? '' : `${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`
    const key = `${fn}|${where}`
    const e = byFrame.get(key)
    if (e === undefined) byFrame.set(key, { fn, where, hits: h })
    else e.hits += h
  }
  const frames = [...byFrame.values()]
    .sort((a, b) => b.hits - a.hits)
    .slice(0, count)
    .map((e) => ({ selfPct: Math.round((e.hits / Math.max(1, total)) * 1000) / 10, fn: e.fn, where: e.where }))
  return { total, waitingPct: Math.round((waiting / Math.max(1, total)) * 1000) / 10, frames }
}

function shortUrl(url: string): string {
  if (url.startsWith(REPO_URL)) return url.slice(REPO_URL.length)
  if (url.startsWith(REPO_PATH)) return url.slice(REPO_PATH.length)
  const nm = url.lastIndexOf('node_modules/')
  return nm >= 0 ? url.slice(nm) : url
}

/** `CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile`: thread 0 is the main thread; workers are named by what runs in them. */
function threadName(file: string, urls: string[]): string {
  const tid = file.split('.').at(-3)
  if (tid === '0') return 'main thread (uWS, dispatch)'
  const ran = (part: string): boolean => urls.some((u) => u.includes(part))
  const role = ran('workers/partition-worker') || ran('workers/command/') ? 'partition worker' : ran('workers/query/') || ran('piscina/dist/worker') ? 'query pool' : 'worker'
  return `${role} (thread ${tid})`
}
