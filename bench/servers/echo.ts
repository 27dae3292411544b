// Starts the ceiling echo server (echo-server.ts) in its own process.

import { fileURLToPath } from 'node:url'
import { startChildServer, type ChildServer } from './child.js'

export function startEchoServer(): Promise<ChildServer> {
  return startChildServer([fileURLToPath(new URL('./echo-server.js', import.meta.url))], 'echo server')
}
