// Support for the bench tests: `vvm bench` in a child process, and tiny test servers given as
// CommonJS source, run in their own process (`node -e`), that print "listening on http://…".

import { spawn } from 'node:child_process'
import { VVM_BIN } from './helpers/server.js'

export interface BenchRun {
  code: number | null
  output: string
}

export function runBench(args: string[], timeoutMs = 50_000): Promise<BenchRun> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [VVM_BIN, 'bench', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    proc.stdout.on('data', (d: Buffer) => { output += d.toString() })
    proc.stderr.on('data', (d: Buffer) => { output += d.toString() })
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`vvm bench did not finish in ${timeoutMs} ms:\n${output}`)) }, timeoutMs)
    proc.on('exit', (code) => { clearTimeout(timer); resolve({ code, output }) })
  })
}

export interface ScriptServer {
  url: string
  stop(): Promise<void>
}

export function startScriptServer(source: string): Promise<ScriptServer> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['-e', source], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    const exited = new Promise<void>((r) => proc.once('exit', () => r()))
    proc.stderr.on('data', (d: Buffer) => { out += d.toString() })
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /listening on (http:\/\/\S+)/.exec(out)
      if (m) resolve({ url: m[1]!, stop: async () => { proc.kill('SIGKILL'); await exited } })
    })
    void exited.then(() => reject(new Error(`test server exited before listening:\n${out}`)))
  })
}
