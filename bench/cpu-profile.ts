// What the harness reads of a V8 CPU profile (`node --cpu-prof`, one file per thread): the
// node shapes, which frames are waiting rather than working, and short locations.

import { fileURLToPath } from 'node:url'

/**
 * Frames where a thread waits rather than works. V8 samples wall time: the event loop waiting
 * in epoll is `(idle)`, piscina's workers block in Atomics.wait inside `atomicsWaitLoop`, and a
 * partition worker after a batch inside `waitForDataBlocking` (src/shared/ring/spsc-ring.ts).
 */
export const WAITING_FRAMES: ReadonlySet<string> = new Set(['(idle)', 'atomicsWaitLoop', 'waitForDataBlocking'])

const REPO_URL = new URL('../../', import.meta.url).href
const REPO_PATH = fileURLToPath(REPO_URL)

/** The parts of a `.cpuprofile` read here (V8's `Profiler.Profile`). */
export interface CpuProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
  children?: number[]
}

export interface CpuProfile {
  nodes: CpuProfileNode[]
  samples?: number[]
}

/** A frame's location as the reports show it: relative to the repository, or from `node_modules/`. */
export function shortUrl(url: string): string {
  if (url.startsWith(REPO_URL)) return url.slice(REPO_URL.length)
  if (url.startsWith(REPO_PATH)) return url.slice(REPO_PATH.length)
  const nm = url.lastIndexOf('node_modules/')
  return nm >= 0 ? url.slice(nm) : url
}
