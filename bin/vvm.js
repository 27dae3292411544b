#!/usr/bin/env node
// The `vvm` executable: runs the compiled CLI (npm install builds it into dist/).
import { main } from '../dist/src/main/cli.js'

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code },
  (err) => { console.error(err?.stack ?? String(err)); process.exitCode = 1 },
)
