// `vvm bench`: the load-testing harness's entry point. The CLI (src/main/cli.ts) imports this
// module only for the `bench` command, so a server never loads it.
//
// bench/ is its own program: it starts servers as child processes (bin/vvm.js, the ceiling
// echo server), drives them from worker threads, and imports nothing of the engine's internals.

import { optionsHelp, parseBenchArgs } from './options.js'
import { BenchUsageError, SHIPPED_SCENARIOS } from './scenario.js'

const USAGE = `vvm bench — load-test a vvm server, with a raw uWS ceiling measured in the same run

Usage:
  vvm bench [scenario] [options]   run one scenario (default: deposit) and its ceiling
  vvm bench standard [options]     the standard report: ceilings, targets, sweeps (partitions,
                                   workspaces, open-loop rates up to the knee), CPU profile,
                                   memory with 10k idle WebSocket connections, restart with 1M
                                   events in the log
  vvm bench report <result.json> [--out dir]
                                   write report.md, report.html and chart.png again from a result file
  vvm bench --help                 this text

Scenarios: ${SHIPPED_SCENARIOS.join(', ')}, or a path to your own module (see bench/README.md).
Without --target the harness starts a server itself (node bin/vvm.js start, fresh data dir).
Closed loop (no --rate-per-s) gives throughput; open loop at a fixed rate gives latency,
measured from the intended send time (coordinated omission corrected, as wrk2 does).

Options:
${optionsHelp()}

Examples:
  vvm bench deposit                                    # closed loop, 64 connections
  vvm bench deposit --rate-per-s 5000 --duration-s 20  # open loop latency at 5000/s
  vvm bench point-query --target http://10.0.0.5:8822
  vvm bench deposit --rate-per-s 3000 --rounds 4 --compare-server-arg=--batch-commands-max=64
                                                       # A/B of a server flag, fresh servers alternating
  vvm bench standard                                   # the report in docs/benchmarks.md
  vvm bench standard --quick                           # smoke test of the whole pipeline

Exit code: 0 when every reply was right, 1 when any was wrong or missing, 2 for bad usage.
`

export async function benchMain(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h') || argv[0] === 'help') {
    process.stdout.write(USAGE)
    return 0
  }
  try {
    if (argv[0] === 'report') {
      const { reportCommand } = await import('./rerender.js')
      return await reportCommand(argv.slice(1))
    }
    const o = parseBenchArgs(argv)
    const commandLine = ['vvm', 'bench', ...argv].join(' ')
    if (o.command === 'standard') {
      const { standardCommand } = await import('./standard.js')
      return await standardCommand(o, commandLine)
    }
    const { runCommand } = await import('./run.js')
    return await runCommand(o, commandLine)
  } catch (err) {
    if (err instanceof BenchUsageError) {
      process.stderr.write(`vvm bench: ${err.message}\n`)
      return 2
    }
    throw err
  }
}
