// The `vvm` command line: `vvm start`, `vvm --help`. Flags, environment and config file become
// one validated VvmConfig (config.ts).

import { ConfigError, loadConfig, optionsHelp } from './config.js'
import { VVM } from './vvm.js'
import { restartWithV8PoolSize } from './v8-pool.js'

const USAGE = `vvm — an application server for event-sourced business apps

Usage:
  vvm start [options]     start the server (HTTP API on --port)
  vvm bench [scenario]    load-test a server: throughput, latency, ceilings (vvm bench --help)
  vvm bench standard      the standard performance report (docs/benchmarks.md)
  vvm token --login L --app owner/app [--wsid N --role R]
                          print a signed token (docs/security.md; vvm token --help)
  vvm keys rotate|list    manage the token signing keys (vvm keys --help)
  vvm call <url> <app> <wsid> <pkg.Name> [json]
                          one request over the binary protocol, the reply printed as JSON (vvm call --help)
  vvm --help              this text

Options of 'vvm start' (also from environment variables and --config file.json, flags win):
  --config <file>                JSON file with any of the fields below, by their camelCase names
${optionsHelp()}

Examples:
  vvm start                                  # demo/bank on LevelDB in ./data, port 8822
  vvm start --storage mem --port 0           # in memory, any free port
  vvm start --app ./my-app.js --partitions 4
`

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE)
    return command === undefined ? 2 : 0
  }
  try {
    switch (command) {
      case 'start':
        return await start(rest)
      case 'token':
        return await (await import('./auth/admin-cli.js')).tokenCommand(rest)
      case 'keys':
        return await (await import('./auth/admin-cli.js')).keysCommand(rest)
      case 'call':
        return await (await import('./call-command.js')).callCommand(rest)
      case 'bench':
        return await (await import('../../bench/main.js')).benchMain(rest)
      default:
        process.stderr.write(`vvm: unknown command '${command}'\n\n${USAGE}`)
        return 2
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`vvm: ${err.message}\n`)
      return 2
    }
    throw err
  }
}

async function start(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help')) {
    process.stdout.write(USAGE)
    return 0
  }
  const config = loadConfig(argv)
  // Replaces this process when V8's helper pool should have another size (src/main/v8-pool.ts).
  const poolWarning = await restartWithV8PoolSize(config.v8PoolSize)
  const vvm = new VVM(config)
  if (poolWarning !== undefined) vvm.log.warn(poolWarning)
  const problem = vvm.launch()
  void vvm.serving.then((server) => {
    const scheme = config.domains.length > 0 || config.tlsCert !== '' ? 'https' : 'http'
    process.stdout.write(`vvm listening on ${scheme}://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${server.port} (apps: ${[...server.apps.keys()].join(', ')}; storage: ${config.storage}; metrics on port ${server.metricsPort})\n`)
  })
  // Seed 003's host: wait for a problem or a signal, then shut down. A second signal forces.
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      vvm.log.info({ signal }, 'shutting down')
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      const force = (): never => process.exit(130)
      process.once('SIGINT', force)
      process.once('SIGTERM', force)
      resolve()
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
    problem.addEventListener('abort', () => { process.off('SIGINT', stop); process.off('SIGTERM', stop); resolve() }, { once: true })
  })
  // A shutdown that hangs must not keep the process: it ends after the timeout (not counted as
  // a handle: unref).
  setTimeout(() => {
    process.stderr.write(`vvm: shutdown did not finish in ${config.shutdownTimeoutS} s: exiting\n`)
    process.exit(1)
  }, config.shutdownTimeoutS * 1000).unref()
  const err = await vvm.shutdown()
  if (err !== undefined) {
    process.stderr.write(`vvm: stopped on a problem: ${err.message}\n`)
    return 1
  }
  return 0
}
