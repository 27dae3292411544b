// The raw fan-out ceiling of bench/subscriptions.ts, run in a child process (the entry with
// --fanout-ceiling-server): a uWebSockets.js program that, for each writer message, sends one
// 8-byte frame per virtual subscriber to each subscriber connection (corked per connection,
// before the writer's ack). What the engine's fan-out is compared with.

export async function fanoutCeilingServer(): Promise<void> {
  const uws = (await import('uWebSockets.js')).default
  interface Data { m: number }
  const subscribers = new Set<import('uWebSockets.js').WebSocket<Data>>()
  const app = uws.App()
  app.ws<Data>('/fan', {
    maxPayloadLength: 1024,
    /** Why 256 MiB: a client-bound run queues many frames per connection; the ceiling must not drop any. */
    maxBackpressure: 256 * 1024 * 1024,
    idleTimeout: 0,
    upgrade: (res, req, context) => {
      res.upgrade<Data>({ m: 0 }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context)
    },
    message: (ws, message, isBinary) => {
      if (!isBinary) {
        const t = Buffer.from(message).toString()
        if (t.startsWith('sub:')) {
          ws.getUserData().m = Number(t.slice(4))
          subscribers.add(ws)
          ws.send('ok', false)
        }
        return
      }
      // A writer's message: the frames of every subscriber first, then the writer's ack (as the
      // engine sends a command's diffs before its reply).
      const k = Buffer.from(message).readUInt32LE(0)
      for (const s of subscribers) {
        const m = s.getUserData().m
        s.cork(() => {
          for (let i = 0; i < m; i++) {
            const f = Buffer.allocUnsafe(8)
            f.writeUInt32LE(i, 0)
            f.writeUInt32LE(k, 4)
            s.send(f, true)
          }
        })
      }
      ws.send(message, true)
    },
    close: (ws) => { subscribers.delete(ws) },
  })
  app.listen('127.0.0.1', 0, (socket) => {
    if (!socket) {
      console.error('fan-out ceiling: cannot listen')
      process.exit(1)
    }
    console.log(`fan-out ceiling listening on http://127.0.0.1:${uws.us_socket_local_port(socket)}`)
  })
  const stop = (): void => { app.close(); process.exit(0) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}
