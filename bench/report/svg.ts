// A laid-out chart as an SVG element (inline in the HTML report; no external resources).

import type { Drawing } from './chart.js'

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
const n = (v: number): string => String(Math.round(v * 10) / 10)

export function toSvg(d: Drawing, title: string): string {
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${d.width} ${d.height}" width="${d.width}" height="${d.height}" role="img" aria-label="${esc(title)}" font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif">`]
  for (const p of d.prims) {
    switch (p.t) {
      case 'rect':
        out.push(`<rect x="${n(p.x)}" y="${n(p.y)}" width="${n(p.w)}" height="${n(p.h)}" fill="${p.fill}"/>`)
        break
      case 'line': {
        const pts: string[] = []
        for (let i = 0; i < p.pts.length; i += 2) pts.push(`${n(p.pts[i]!)},${n(p.pts[i + 1]!)}`)
        const dash = p.dash > 0 ? ` stroke-dasharray="${p.dash} ${p.dash * 0.7}"` : ''
        out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${p.color}" stroke-width="${p.width}" stroke-linejoin="round"${dash}/>`)
        break
      }
      case 'dot':
        out.push(`<circle cx="${n(p.x)}" cy="${n(p.y)}" r="${p.r}" fill="${p.fill}"/>`)
        break
      case 'text': {
        const anchor = p.anchor === 'start' ? '' : ` text-anchor="${p.anchor}"`
        const rot = p.vertical === true ? ` transform="rotate(-90 ${n(p.x)} ${n(p.y)})"` : ''
        const weight = p.bold === true ? ' font-weight="600"' : ''
        out.push(`<text x="${n(p.x)}" y="${n(p.y)}" font-size="${p.size}" fill="${p.color}"${anchor}${rot}${weight}>${esc(p.text)}</text>`)
        break
      }
    }
  }
  out.push('</svg>')
  return out.join('\n')
}
