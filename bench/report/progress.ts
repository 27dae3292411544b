// The terminal's progress line: redrawn in place on a TTY (stderr), silent otherwise, so logs
// and CI output hold only the summary lines.

import type { Progress } from '../load/driver.js'

const BAR_CELLS = 24

export class ProgressLine {
  private readonly tty: boolean
  private shown = false

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.tty = stream.isTTY === true
  }

  load(p: Progress): void {
    const done = Math.min(1, p.totalS > 0 ? p.elapsedS / p.totalS : 1)
    const cells = Math.round(done * BAR_CELLS)
    const bar = '█'.repeat(cells) + '░'.repeat(BAR_CELLS - cells)
    this.draw(`${bar} ${p.label}  ${p.elapsedS.toFixed(1)}/${p.totalS.toFixed(1)} s  ${fmtInt(p.okPerS)}/s  ok ${fmtInt(p.ok)}  errors ${fmtInt(p.errors)}`)
  }

  setup(label: string, done: number, total: number): void {
    if (done !== total && done % 256 !== 0) return
    this.draw(`setup ${label}: ${fmtInt(done)}/${fmtInt(total)}`)
  }

  /** A line that stays (on any stream). */
  line(text: string): void {
    this.clear()
    this.stream.write(text + '\n')
  }

  clear(): void {
    if (this.tty && this.shown) this.stream.write('\r\x1b[K')
    this.shown = false
  }

  private draw(text: string): void {
    if (!this.tty) return
    const width = this.stream.columns ?? 120
    this.stream.write('\r\x1b[K' + (text.length > width - 1 ? text.slice(0, width - 1) : text))
    this.shown = true
  }
}

export const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US')
