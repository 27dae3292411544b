// Writes an invocation's files: result.json (everything), report.md (the tables), report.html
// (offline) and chart.png (the main chart, for a README).

import { execFileSync } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { arch, availableParallelism, cpus, loadavg, release, totalmem, type } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { BenchReport, Machine } from '../result.js'
import { layoutChart, type ChartSpec } from './chart.js'
import { renderHtml } from './html.js'
import { renderMarkdown } from './markdown.js'
import { encodePng } from './png.js'
import { rasterize } from './raster.js'

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url))

export function machine(): Machine {
  return {
    nproc: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    node: process.version,
    os: `${type()} ${release()} ${arch()}`,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    loadAverage: loadavg().map((x) => Math.round(x * 100) / 100),
  }
}

/** The short commit, with `-dirty` when the work tree has changes; `unknown` outside git. */
export function commit(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== ''
    return dirty ? `${head}-dirty` : head
  } catch {
    return 'unknown' // not a git checkout (e.g. an npm install): the report says so
  }
}

export function defaultOutDir(name: string): string {
  const stamp = new Date().toISOString().replace(/[:]/g, '-').replace(/\..*/, '')
  return join('bench-results', `${stamp}-${name.replace(/[^A-Za-z0-9_.-]/g, '_')}`)
}

export interface WrittenFiles {
  json: string
  md: string
  html: string
  png: string
}

export async function writeReport(rep: BenchReport, mainChart: ChartSpec, outDir: string): Promise<WrittenFiles> {
  await mkdir(outDir, { recursive: true })
  const files = { json: join(outDir, 'result.json'), md: join(outDir, 'report.md'), html: join(outDir, 'report.html'), png: join(outDir, 'chart.png') }
  await writeFile(files.json, JSON.stringify(rep, null, 2) + '\n')
  await writeFile(files.md, renderMarkdown(rep))
  await writeFile(files.html, renderHtml(rep, mainChart))
  await writeFile(files.png, encodePng(rasterize(layoutChart(mainChart))))
  return files
}
