// Reactive subscriptions under load (figures in docs/benchmarks.md, "Subscriptions"):
//
//   npx tsc -p . && node dist/bench/subscriptions.js [options]      (--help lists them)
//
// Part 1, fan-out latency (subscriptions/fanout.ts): one change to `--subscribers` SDK
// subscriptions of the same read, deposits open loop, beside a raw uWS fan-out ceiling.
// Part 2, churn (subscriptions/churn.ts): subscribe → snapshot → unsubscribe cycles with the
// server's RSS and V8 heap sampled. Each part's file says what is measured and what is checked.
//
// This file is the entry: main() runs the parts, writes result.json and prints the Markdown
// report (subscriptions/report.ts). The same file is started again as a subscriber thread
// (a worker: subscriptions/subscribers.ts) and as the raw fan-out ceiling server (a child
// process with --fanout-ceiling-server: subscriptions/ceiling-server.ts).

import { isMainThread } from 'node:worker_threads'
import { execFileSync } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, totalmem, release } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fanoutCeilingServer } from './subscriptions/ceiling-server.js'
import { churn } from './subscriptions/churn.js'
import { ROOT } from './subscriptions/engine.js'
import { fanout } from './subscriptions/fanout.js'
import { parseOptions } from './subscriptions/options.js'
import { errorCount, markdown, type BenchResult } from './subscriptions/report.js'
import { subscriberThread } from './subscriptions/subscribers.js'

function commitName(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'demo', 'bin'], { cwd: ROOT, encoding: 'utf8' }).trim() !== ''
    return dirty ? `${head}-dirty` : head
  } catch {
    return 'unknown'
  }
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2))
  const date = new Date().toISOString()
  const out = resolve(opts.out !== '' ? opts.out : join(ROOT, 'bench/reports', `${date.slice(0, 10)}-subscriptions`, 'result.json'))
  const result: BenchResult = {
    commit: commitName(), date,
    machine: `${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, Linux ${release()}`,
    command: `node dist/bench/subscriptions.js ${process.argv.slice(2).join(' ')}`.trim(),
    options: opts, passed: true,
  }
  if (opts.part !== 'churn') {
    result.fanout = []
    for (const rate of opts.ratesPerS) result.fanout.push(await fanout({ ...opts, ratePerS: rate }))
  }
  if (opts.part !== 'fanout') result.churn = await churn(opts)
  const failures = [
    ...(result.fanout ?? []).flatMap((f) => [errorCount(f.engine.errors), errorCount(f.noSubscribers.errors), errorCount(f.ceiling?.errors ?? {})]),
    ...(result.churn === undefined ? [] : [errorCount(result.churn.errors)]),
  ].reduce((a, b) => a + b, 0)
  result.passed = failures === 0
  await mkdir(dirname(out), { recursive: true })
  await writeFile(out, JSON.stringify(result, null, 1) + '\n')
  console.log(markdown(result))
  console.log(`\nresult: ${out}`)
  if (!result.passed) process.exitCode = 1
}

if (!isMainThread) await subscriberThread()
else if (process.argv[2] === '--fanout-ceiling-server') await fanoutCeilingServer()
else await main()
