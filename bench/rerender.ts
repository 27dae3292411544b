// `vvm bench report <result.json> [--out dir]`: the report files again from a result file —
// after the renderers changed, or from a CI artifact. The figures are not touched.

import { cp, readFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { latencyChart } from './report/charts.js'
import { writeReport } from './report/write.js'
import { PROFILES_DIR } from './profile.js'
import type { BenchReport } from './result.js'
import { BenchUsageError } from './scenario.js'

/** PERFORMANCE.md's p99 target, drawn on the standard report's main chart. */
const P99_TARGET_MS = 5

export async function reportCommand(argv: readonly string[]): Promise<number> {
  const [file, ...rest] = argv
  if (file === undefined || file.startsWith('--')) throw new BenchUsageError('vvm bench report needs a result.json file')
  let out = dirname(file)
  if (rest.length > 0) {
    if (rest[0] !== '--out' || rest[1] === undefined || rest.length > 2) throw new BenchUsageError('vvm bench report <result.json> [--out dir]')
    out = rest[1]
  }
  let rep: BenchReport
  try {
    rep = JSON.parse(await readFile(file, 'utf8')) as BenchReport
  } catch (err) {
    throw new BenchUsageError(`cannot read ${file}: ${(err as Error).message}`)
  }
  if (!Array.isArray(rep.runs) || rep.machine === undefined) throw new BenchUsageError(`${file} is not a vvm bench result file`)
  const main = rep.kind === 'standard'
    ? latencyChart(rep.runs.filter((r) => r.mode === 'open'), `deposit at half the maximum rate: latency by percentile (${rep.commit})`, P99_TARGET_MS)
    : latencyChart(rep.runs, `${rep.runs.at(-1)?.scenario ?? 'run'}: latency by percentile`)
  const files = await writeReport(rep, main, out)
  // The reports link the kept profiles and flame graphs by relative path: they go along.
  const profiles = join(dirname(file), PROFILES_DIR)
  if (resolve(out) !== resolve(dirname(file)) && existsSync(profiles)) await cp(profiles, join(out, PROFILES_DIR), { recursive: true })
  process.stdout.write(`report: ${files.html}\nmarkdown: ${files.md}\nchart:  ${files.png}\n`)
  return 0
}
