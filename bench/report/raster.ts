// Paints a laid-out chart into RGB pixels for the PNG (no browser, no native library: works
// offline and in CI). Lines are anti-aliased by distance to the segment; text uses the 5×7
// font. The picture is painted at `pixelRatio` times the layout size so it stays sharp in a
// README.

import type { Drawing, Prim } from './chart.js'
import { GLYPH_HEIGHT, GLYPH_WIDTH, glyphDrop, glyphRows, toAscii } from './font5x7.js'

export interface Raster {
  width: number
  height: number
  /** RGB, row-major, 3 bytes a pixel. */
  rgb: Uint8Array
}

export function rasterize(d: Drawing, pixelRatio = 2): Raster {
  const width = Math.round(d.width * pixelRatio)
  const height = Math.round(d.height * pixelRatio)
  const painter = new Painter(width, height)
  for (const p of d.prims) painter.draw(p, pixelRatio)
  return { width, height, rgb: painter.rgb }
}

type Rgb = [number, number, number]

function parseColor(c: string): Rgb {
  const m = /^#([0-9a-f]{6})$/i.exec(c)
  if (!m) throw new Error(`raster: colour '${c}' must be #rrggbb`)
  const v = parseInt(m[1]!, 16)
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255]
}

class Painter {
  readonly rgb: Uint8Array
  /** Coverage of the stroke being drawn, so overlapping segments of one polyline do not darken joints. */
  private readonly mask: Float32Array

  constructor(readonly width: number, readonly height: number) {
    this.rgb = new Uint8Array(width * height * 3).fill(255)
    this.mask = new Float32Array(width * height)
  }

  draw(p: Prim, k: number): void {
    switch (p.t) {
      case 'rect':
        this.fillRect(p.x * k, p.y * k, p.w * k, p.h * k, parseColor(p.fill))
        break
      case 'line':
        this.stroke(p.pts.map((v) => v * k), p.width * k, p.dash * k, parseColor(p.color))
        break
      case 'dot':
        this.disc(p.x * k, p.y * k, p.r * k, parseColor(p.fill))
        break
      case 'text':
        this.text(p.x * k, p.y * k, toAscii(p.text), Math.max(1, Math.round((p.size * k) / 10)), parseColor(p.color), p.anchor, p.vertical === true, p.bold === true)
        break
    }
  }

  private blend(i: number, c: Rgb, a: number): void {
    const o = i * 3
    this.rgb[o] = this.rgb[o]! + (c[0] - this.rgb[o]!) * a
    this.rgb[o + 1] = this.rgb[o + 1]! + (c[1] - this.rgb[o + 1]!) * a
    this.rgb[o + 2] = this.rgb[o + 2]! + (c[2] - this.rgb[o + 2]!) * a
  }

  private fillRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    const x0 = Math.max(0, Math.round(x))
    const y0 = Math.max(0, Math.round(y))
    const x1 = Math.min(this.width, Math.round(x + w))
    const y1 = Math.min(this.height, Math.round(y + h))
    for (let yy = y0; yy < y1; yy++) for (let xx = x0; xx < x1; xx++) this.blend(yy * this.width + xx, c, 1)
  }

  private stroke(pts: number[], w: number, dash: number, c: Rgb): void {
    const box = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity }
    const half = w / 2
    const segment = (ax: number, ay: number, bx: number, by: number): void => {
      const x0 = Math.max(0, Math.floor(Math.min(ax, bx) - half - 1))
      const x1 = Math.min(this.width - 1, Math.ceil(Math.max(ax, bx) + half + 1))
      const y0 = Math.max(0, Math.floor(Math.min(ay, by) - half - 1))
      const y1 = Math.min(this.height - 1, Math.ceil(Math.max(ay, by) + half + 1))
      box.x0 = Math.min(box.x0, x0); box.x1 = Math.max(box.x1, x1); box.y0 = Math.min(box.y0, y0); box.y1 = Math.max(box.y1, y1)
      const dx = bx - ax
      const dy = by - ay
      const len2 = dx * dx + dy * dy
      for (let y = y0; y <= y1; y++) {
        for (let x = x0; x <= x1; x++) {
          const cx = x + 0.5 - ax
          const cy = y + 0.5 - ay
          const t = len2 === 0 ? 0 : Math.max(0, Math.min(1, (cx * dx + cy * dy) / len2))
          const ex = cx - t * dx
          const ey = cy - t * dy
          const cover = Math.min(1, Math.max(0, half + 0.5 - Math.sqrt(ex * ex + ey * ey)))
          const i = y * this.width + x
          if (cover > this.mask[i]!) this.mask[i] = cover
        }
      }
    }
    // Dashes continue their phase across the polyline's segments.
    const on = dash
    const off = dash * 0.7
    let phase = 0
    for (let i = 0; i + 3 < pts.length; i += 2) {
      const ax = pts[i]!, ay = pts[i + 1]!, bx = pts[i + 2]!, by = pts[i + 3]!
      if (dash <= 0) { segment(ax, ay, bx, by); continue }
      const len = Math.hypot(bx - ax, by - ay)
      let s = 0
      while (s < len) {
        const inOn = phase < on
        const step = Math.min(len - s, inOn ? on - phase : on + off - phase)
        if (inOn) segment(ax + ((bx - ax) * s) / len, ay + ((by - ay) * s) / len, ax + ((bx - ax) * (s + step)) / len, ay + ((by - ay) * (s + step)) / len)
        s += step
        phase = (phase + step) % (on + off)
      }
    }
    for (let y = box.y0; y <= box.y1; y++) {
      for (let x = box.x0; x <= box.x1; x++) {
        const i = y * this.width + x
        const a = this.mask[i]!
        if (a > 0) { this.blend(i, c, a); this.mask[i] = 0 }
      }
    }
  }

  private disc(cx: number, cy: number, r: number, c: Rgb): void {
    for (let y = Math.max(0, Math.floor(cy - r - 1)); y <= Math.min(this.height - 1, Math.ceil(cy + r + 1)); y++) {
      for (let x = Math.max(0, Math.floor(cx - r - 1)); x <= Math.min(this.width - 1, Math.ceil(cx + r + 1)); x++) {
        const a = Math.min(1, Math.max(0, r + 0.5 - Math.hypot(x + 0.5 - cx, y + 0.5 - cy)))
        if (a > 0) this.blend(y * this.width + x, c, a)
      }
    }
  }

  /** (x, y) is the baseline point the anchor refers to, as in SVG. Vertical text reads bottom to top. */
  private text(x: number, y: number, s: string, scale: number, c: Rgb, anchor: 'start' | 'middle' | 'end', vertical: boolean, bold: boolean): void {
    const advance = (GLYPH_WIDTH + 1) * scale
    const length = s.length * advance - scale
    const start = anchor === 'start' ? 0 : anchor === 'middle' ? -length / 2 : -length
    const top = -GLYPH_HEIGHT * scale
    for (let n = 0; n < s.length; n++) {
      const rows = glyphRows(s[n]!)
      const drop = glyphDrop(s[n]!) * scale
      for (let row = 0; row < GLYPH_HEIGHT; row++) {
        for (let col = 0; col < GLYPH_WIDTH; col++) {
          if ((rows[row]! & (0x10 >> col)) === 0) continue
          const u = start + n * advance + col * scale // along the text
          const v = top + drop + row * scale // down from the baseline
          for (let b = 0; b < (bold ? 2 : 1); b++) {
            if (vertical) this.fillRect(x + v, y - u - scale - b, scale, scale, c)
            else this.fillRect(x + u + b, y + v, scale, scale, c)
          }
        }
      }
    }
  }
}
