// Builds the AssemblyScript extensions (docs/extensions.md): every `<dir>/assembly/<name>.ts`
// under demo/ and test/ becomes `dist/<dir>/<name>.wasm`, next to the compiled app module
// (`dist/<dir>/*.js`) that binds it with `wasm('<name>.wasm', 'export')`. Files in deeper
// folders of `assembly/` are helpers, not entries. A module newer than its sources and the SDK
// is left alone.
//
//   node scripts/build-wasm.mjs [--force]
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import asc from 'assemblyscript/asc'

const root = fileURLToPath(new URL('..', import.meta.url))
const SDK = 'sdk/assemblyscript'
/** Flags every extension is built with: the SDK needs the stub runtime and its own abort. */
export const ASC_FLAGS = ['-O3', '--runtime', 'stub', '--use', `abort=${SDK}/abi/vvmAbort`]
const force = process.argv.includes('--force')

function* tsFiles(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) yield* tsFiles(p)
    else if (e.name.endsWith('.ts')) yield p
  }
}

function* assemblyDirs(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (!e.isDirectory() || e.name === 'node_modules') continue
    const p = join(dir, e.name)
    if (e.name === 'assembly') yield p
    else yield* assemblyDirs(p)
  }
}

const newest = (files) => Math.max(0, ...files.map((f) => statSync(f).mtimeMs))
const sdkMtime = newest([...tsFiles(join(root, SDK))])

let built = 0
let failed = 0
for (const top of ['demo', 'test']) {
  for (const dir of assemblyDirs(join(root, top))) {
    const sourcesMtime = Math.max(sdkMtime, newest([...tsFiles(dir)]))
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (!e.isFile() || !e.name.endsWith('.ts')) continue
      const entry = relative(root, join(dir, e.name))
      const out = join(root, 'dist', relative(root, dirname(dir)), e.name.replace(/\.ts$/, '.wasm'))
      if (!force && existsSync(out) && statSync(out).mtimeMs >= sourcesMtime) continue
      mkdirSync(dirname(out), { recursive: true })
      const t0 = performance.now()
      const { error, stderr } = await asc.main([entry, '-o', relative(root, out), ...ASC_FLAGS, '--baseDir', root], {})
      if (error) {
        console.error(`build-wasm: ${entry}: ${error.message}\n${stderr.toString()}`)
        failed++
        continue
      }
      console.log(`build-wasm: ${relative(root, out)} (${statSync(out).size} bytes, ${Math.round(performance.now() - t0)} ms)`)
      built++
    }
  }
}
if (failed > 0) process.exit(1)
if (built === 0) console.log('build-wasm: up to date')
