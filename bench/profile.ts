// Reads the V8 CPU profiles a server wrote with `node --cpu-prof` (one file per thread) and
// names the functions that took the most self time in each thread; on request keeps each
// thread's profile in the output directory beside its flame graph (flame.ts).

import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { WAITING_FRAMES, shortUrl, type CpuProfile } from './cpu-profile.js'
import { renderFlameGraph } from './flame.js'
import type { ProfileFrame, ThreadProfile } from './result.js'

/** Where to keep the profiles: `<outDir>/profiles/<prefix>-<thread>.{cpuprofile,svg}`. */
export interface KeepProfiles {
  outDir: string
  /** Names the run, e.g. `deposit` or `profile-1-deposit-http-v1`; made safe for a file name here. */
  prefix: string
}

/** The folder under a report's output directory that holds the kept profiles and flame graphs. */
export const PROFILES_DIR = 'profiles'

/**
 * Top `count` self-time frames of every thread profile in `dir`, the busiest thread first. With
 * `keep`, each profile is copied to the output directory and its flame graph written beside it.
 */
export async function summarizeProfiles(dir: string, keep?: KeepProfiles, count = 12): Promise<ThreadProfile[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile')).sort()
  const threads: ThreadProfile[] = []
  const slugsUsed = new Set<string>()
  if (keep !== undefined) await mkdir(join(keep.outDir, PROFILES_DIR), { recursive: true })
  for (const f of files) {
    const profile = JSON.parse(await readFile(join(dir, f), 'utf8')) as CpuProfile
    const top = topFrames(profile, count)
    const thread = threadName(f, profile.nodes.map((n) => n.callFrame.url))
    const t: ThreadProfile = { thread: thread.name, samplesCount: top.total, waitingPct: top.waitingPct, top: top.frames }
    if (keep !== undefined) {
      const prefix = fileSlug(keep.prefix)
      let base = `${prefix}-${thread.slug}`
      for (let n = 2; slugsUsed.has(base); n++) base = `${prefix}-${thread.slug}-${n}` // one file per thread, even if two threads share a name
      slugsUsed.add(base)
      // Relative to outDir with `/`: they are links in report.md and report.html.
      t.cpuProfile = `${PROFILES_DIR}/${base}.cpuprofile`
      t.flameSvg = `${PROFILES_DIR}/${base}.svg`
      await copyFile(join(dir, f), join(keep.outDir, t.cpuProfile))
      await writeFile(join(keep.outDir, t.flameSvg), renderFlameGraph(profile, `${keep.prefix} — ${thread.name}`))
    }
    threads.push(t)
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

/** A url as the reports show it: relative to the repository, or from `node_modules/` on. */

/**
 * `CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile`: thread 0 is the main thread; workers are
 * named by what runs in them. The slug names the thread's files (`partition-worker-thread-1`).
 */
function threadName(file: string, urls: string[]): { name: string; slug: string } {
  const tid = file.split('.').at(-3) ?? ''
  if (tid === '0') return { name: 'main thread (uWS, dispatch)', slug: 'main-thread' }
  const ran = (part: string): boolean => urls.some((u) => u.includes(part))
  const role = ran('workers/partition-worker') || ran('workers/command/') ? 'partition worker' : ran('workers/query/') || ran('piscina/dist/worker') ? 'query pool' : 'worker'
  return { name: `${role} (thread ${tid})`, slug: fileSlug(`${role} thread ${tid}`) }
}

/** Lower case letters, digits and single dashes: safe in a file name and a link on any system. */
function fileSlug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '') || 'profile'
}
