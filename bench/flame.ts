// A flame graph of one thread's V8 CPU profile (`node --cpu-prof`), drawn as an icicle: the
// root on top, callees below, a frame as wide as its inclusive samples. One self-contained SVG
// (no script, no external resource); each frame's tooltip is its `<title>`.

import { shortUrl, WAITING_FRAMES, type CpuProfile, type CpuProfileNode } from './cpu-profile.js'
import { fmtInt } from './report/progress.js'

/** Wide enough for ~170 labelled characters across; the reports scale it down to their width. */
export const SVG_WIDTH_PX = 1200
const ROW_HEIGHT_PX = 16
/** Deeper than any stack we read in practice (~60); V8 itself keeps at most 255 frames a sample. */
export const DEPTH_DRAWN_MAX = 128
/** A frame narrower than this is not drawn (its share stays in its parent): it could not be seen, and a long tail of them would bloat the file. */
export const FRAME_WIDTH_MIN_PX = 0.5
const LABEL_FONT_PX = 11
/** Average advance of the monospace label font (0.6 em): how many characters fit in a frame. */
const LABEL_CHAR_PX = 6.6
const LABEL_PAD_PX = 3
/** Below this many characters a label says nothing; the tooltip remains. */
const LABEL_CHARS_MIN = 3
/** Title, the line on samples, the legend. */
const HEADER_HEIGHT_PX = 62

type Kind = 'ours' | 'dependency' | 'node' | 'v8' | 'other'

/** Shades per kind; a frame's shade comes from a hash of its name, so neighbours differ and reruns match. */
const KIND_COLORS: Record<Kind, { label: string; shades: string[] }> = {
  ours: { label: 'our code', shades: ['#e8743b', '#ec8650', '#f09a6a', '#e3663a'] },
  dependency: { label: 'dependencies (node_modules/)', shades: ['#d9b430', '#e0bf4a', '#e6c962', '#d1a92a'] },
  node: { label: 'Node internals (node:)', shades: ['#5aa9c9', '#6fb5d1', '#84c0d8', '#4d9dbf'] },
  v8: { label: 'V8 (program, GC, …)', shades: ['#a7a9ad', '#b4b6ba', '#9b9da1', '#c0c2c6'] },
  other: { label: 'other (wasm, elsewhere)', shades: ['#a98bd4', '#b69cdb', '#9d7dcc', '#c2acdf'] },
}

/** Sibling calls of the same function at the same place, merged. */
interface Frame {
  fn: string
  url: string
  line: number
  /** Samples in this frame and its callees, and in this frame alone. */
  total: number
  self: number
  children: Map<string, Frame>
}

/** The profile's nodes by id, with their own samples and their inclusive working samples. */
interface Sampled {
  byId: Map<number, CpuProfileNode>
  self: Map<number, number>
  total: Map<number, number>
}

export function renderFlameGraph(profile: CpuProfile, title: string): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const hits = selfHits(profile)
  const allSamples = [...hits.values()].reduce((a, b) => a + b, 0)
  const root = profile.nodes.find((n) => n.callFrame.functionName === '(root)') ?? profile.nodes[0]
  const sampled: Sampled = { byId, self: hits, total: root === undefined ? new Map() : workingTotals(root, byId, hits) }
  const working = root === undefined ? 0 : sampled.total.get(root.id) ?? 0
  const waiting = allSamples - working
  const waitingPct = allSamples > 0 ? (waiting / allSamples) * 100 : 0
  const header = `${fmtInt(working)} working samples; ${fmtInt(waiting)} waiting (${waitingPct.toFixed(1)} %: ${[...WAITING_FRAMES].join(', ')}) excluded`

  const body: string[] = []
  let depthDrawn = 0
  if (root !== undefined && working > 0) {
    const top = newFrame(root)
    merge(root, top, 0, sampled)
    const pxPerSample = SVG_WIDTH_PX / working
    const draw = (f: Frame, x: number, depth: number): void => {
      const w = f.total * pxPerSample
      if (w < FRAME_WIDTH_MIN_PX) return
      depthDrawn = Math.max(depthDrawn, depth + 1)
      body.push(frameSvg(f, x, HEADER_HEIGHT_PX + depth * ROW_HEIGHT_PX, w, working))
      let childX = x
      for (const c of sortedChildren(f)) {
        draw(c, childX, depth + 1)
        childX += c.total * pxPerSample
      }
    }
    draw(top, 0, 0)
  }
  const height = HEADER_HEIGHT_PX + Math.max(1, depthDrawn) * ROW_HEIGHT_PX + 4
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${SVG_WIDTH_PX} ${height}" width="${SVG_WIDTH_PX}" height="${height}" role="img" aria-label="${esc(title)}">`,
    `<rect x="0" y="0" width="${SVG_WIDTH_PX}" height="${height}" fill="#ffffff"/>`,
    `<text x="4" y="15" font-family="system-ui, sans-serif" font-size="14" font-weight="600" fill="#1f2328">${esc(title)}</text>`,
    `<text x="4" y="32" font-family="system-ui, sans-serif" font-size="12" fill="#57606a">${esc(header)}</text>`,
    legendSvg(),
    `<g font-family="ui-monospace, Menlo, Consolas, monospace" font-size="${LABEL_FONT_PX}" fill="#1f2328">`,
    ...body,
    '</g>',
    '</svg>',
  ].join('\n') + '\n'
}

function selfHits(p: CpuProfile): Map<number, number> {
  const hits = new Map<number, number>()
  if (p.samples !== undefined && p.samples.length > 0) for (const id of p.samples) hits.set(id, (hits.get(id) ?? 0) + 1)
  else for (const n of p.nodes) hits.set(n.id, n.hitCount ?? 0)
  return hits
}

/**
 * Inclusive samples of every node reachable from the root, a waiting frame's subtree left out.
 * Iterative, so a malformed deep or cyclic profile cannot overflow the stack or loop.
 */
function workingTotals(root: CpuProfileNode, byId: Map<number, CpuProfileNode>, hits: Map<number, number>): Map<number, number> {
  const order: CpuProfileNode[] = []
  const seen = new Set<number>()
  const stack = [root]
  while (stack.length > 0) {
    const n = stack.pop()!
    if (seen.has(n.id) || WAITING_FRAMES.has(n.callFrame.functionName)) continue
    seen.add(n.id)
    order.push(n)
    for (const id of n.children ?? []) {
      const c = byId.get(id)
      if (c !== undefined) stack.push(c)
    }
  }
  const total = new Map<number, number>()
  // Reverse pre-order: every child is summed before its parent.
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i]!
    let t = hits.get(n.id) ?? 0
    for (const id of n.children ?? []) t += total.get(id) ?? 0
    total.set(n.id, t)
  }
  return total
}

/** Adds node `n` into `into` (same function, url and line) and its callees below it, down to the depth drawn. */
function merge(n: CpuProfileNode, into: Frame, depth: number, s: Sampled): void {
  into.total += s.total.get(n.id) ?? 0
  into.self += s.self.get(n.id) ?? 0
  if (depth + 1 >= DEPTH_DRAWN_MAX) return // deeper callees stay in this frame's total
  for (const id of n.children ?? []) {
    const c = s.byId.get(id)
    if (c === undefined || (s.total.get(id) ?? 0) === 0) continue // waiting, unreachable or never sampled
    const key = `${c.callFrame.functionName}|${c.callFrame.url}|${c.callFrame.lineNumber}`
    let f = into.children.get(key)
    if (f === undefined) into.children.set(key, (f = newFrame(c)))
    merge(c, f, depth + 1, s)
  }
}

function newFrame(n: CpuProfileNode): Frame {
  return { fn: n.callFrame.functionName || '(anonymous)', url: n.callFrame.url, line: n.callFrame.lineNumber, total: 0, self: 0, children: new Map() }
}

/** The heaviest callee first; ties by name, so the drawing does not depend on the profile's node order. */
function sortedChildren(f: Frame): Frame[] {
  return [...f.children.values()].sort((a, b) => b.total - a.total || (a.fn < b.fn ? -1 : a.fn > b.fn ? 1 : a.line - b.line))
}

function frameSvg(f: Frame, x: number, y: number, w: number, working: number): string {
  const where = f.url === '' ? '' : ` (${shortUrl(f.url)}:${f.line + 1})`
  const tip = `${f.fn}${where}\ninclusive ${pct(f.total, working)} %, self ${pct(f.self, working)} % of the working samples`
  const kind = kindOf(f)
  const shades = KIND_COLORS[kind].shades
  const fill = shades[hash(f.fn) % shades.length]!
  const chars = Math.floor((w - 2 * LABEL_PAD_PX) / LABEL_CHAR_PX)
  const label = chars < LABEL_CHARS_MIN ? '' : f.fn.length <= chars ? f.fn : `${f.fn.slice(0, chars - 1)}…`
  const text = label === '' ? '' : `<text x="${n1(x + LABEL_PAD_PX)}" y="${n1(y + ROW_HEIGHT_PX - 4)}">${esc(label)}</text>`
  return `<g><title>${esc(tip)}</title><rect x="${n1(x)}" y="${y}" width="${n1(w)}" height="${ROW_HEIGHT_PX - 1}" fill="${fill}"/>${text}</g>`
}

function legendSvg(): string {
  const items: string[] = []
  let x = 4
  for (const { label, shades } of Object.values(KIND_COLORS)) {
    items.push(`<rect x="${x}" y="40" width="10" height="10" fill="${shades[0]}"/><text x="${x + 14}" y="49">${esc(label)}</text>`)
    x += 14 + label.length * 6 + 16 // a swatch, the label at ~6 px a character, a gap
  }
  return `<g font-family="system-ui, sans-serif" font-size="11" fill="#57606a">${items.join('')}</g>`
}

/**
 * V8's pseudo-frames have no url and a name in parentheses; Node's builtins have a `node:` url
 * or, for natives, none. Ours: `src/` anywhere, or any file of this repository (the demo apps).
 */
function kindOf(f: Frame): Kind {
  if (f.url === '' && f.fn.startsWith('(') && f.fn.endsWith(')')) return f.fn === '(anonymous)' ? 'other' : 'v8'
  if (f.url.includes('node_modules/')) return 'dependency'
  if (f.url.includes('/src/') || (f.url !== '' && shortUrl(f.url) !== f.url)) return 'ours'
  if (f.url.startsWith('node:') || f.url === '') return 'node'
  return 'other'
}

/** FNV-1a: a stable shade per function name. */
function hash(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h >>> 0
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;')
const n1 = (v: number): string => String(Math.round(v * 10) / 10)
const pct = (part: number, whole: number): string => ((part / whole) * 100).toFixed(1)
