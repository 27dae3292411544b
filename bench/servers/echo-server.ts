// The ceiling: the simplest uWebSockets.js program for what the engine's front does. `POST
// /echo` answers the body unchanged; WebSocket `/echo` sends every message back. Run as its own
// process (`node dist/bench/servers/echo-server.js [port]`); prints "listening on http://…".

import uws from 'uWebSockets.js'

const BODY_BYTES_MAX = 1024 * 1024
/** Why 16 MiB: a pipelining client never has more than connections × pipeline small messages queued. */
const WS_BACKPRESSURE_BYTES = 16 * 1024 * 1024

const app = uws.App()
app.post('/echo', (res) => {
  const chunks: Buffer[] = []
  let total = 0
  let aborted = false
  res.onAborted(() => { aborted = true })
  res.onData((chunk, isLast) => {
    total += chunk.byteLength
    if (total > BODY_BYTES_MAX) {
      aborted = true
      res.cork(() => res.writeStatus('413 Payload Too Large').end('', true))
      return
    }
    chunks.push(Buffer.from(Buffer.from(chunk)))
    if (isLast && !aborted) {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
      res.cork(() => res.writeStatus('200 OK').writeHeader('content-type', 'application/json').end(body))
    }
  })
})
app.ws('/echo', {
  maxPayloadLength: BODY_BYTES_MAX,
  maxBackpressure: WS_BACKPRESSURE_BYTES,
  idleTimeout: 0,
  message: (ws, message, isBinary) => { ws.send(message, isBinary) },
})
app.any('/*', (res) => { res.writeStatus('404 Not Found').end('') })

const port = Number(process.argv[2] ?? 0)
app.listen('127.0.0.1', port, (socket) => {
  if (!socket) {
    console.error(`echo server: cannot listen on 127.0.0.1:${port}`)
    process.exit(1)
  }
  console.log(`echo server listening on http://127.0.0.1:${uws.us_socket_local_port(socket)}`)
})
const stop = (): void => { app.close(); process.exit(0) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
