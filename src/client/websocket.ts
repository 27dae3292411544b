// The WebSocket the SDK runs on: the subset of the WHATWG interface it uses, so that the
// browser's WebSocket, Node 22's global one and the `ws` package (Node 20) all fit; and how
// the SDK closes one (quietly, or waiting a bounded time for the close handshake).

export interface WebSocketLike {
  binaryType: string
  readonly readyState: number
  readonly bufferedAmount: number
  onopen: ((ev: unknown) => void) | null
  onmessage: ((ev: { data: unknown }) => void) | null
  onclose: ((ev: { code: number; reason: string }) => void) | null
  onerror: ((ev: unknown) => void) | null
  send(data: Uint8Array): void
  close(code?: number, reason?: string): void
}

export type WebSocketConstructor = new (url: string) => WebSocketLike

export const OPEN = 1

/** The given constructor, else the global WebSocket, else the `ws` package (Node 20 has no stable global one). */
export async function resolveWebSocket(given: WebSocketConstructor | undefined): Promise<WebSocketConstructor> {
  if (given !== undefined) return given
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
  if (typeof global === 'function') return global
  // A computed specifier keeps browser bundlers from trying to bundle `ws`.
  const name = 'ws'
  try {
    const mod = (await import(name)) as { default?: WebSocketConstructor; WebSocket?: WebSocketConstructor }
    const ctor = mod.default ?? mod.WebSocket
    if (typeof ctor === 'function') return ctor
  } catch {
    // Reported below with what to do about it.
  }
  throw new Error('no WebSocket implementation: install the `ws` package, run where a global WebSocket exists, or pass options.WebSocket')
}

/** The Node socket under the `ws` package's WebSocket (its `_socket`); browsers have none. */
interface Corkable { cork(): void; uncork(): void }
const corked = new WeakSet<Corkable>()

/**
 * Sends a frame; under Node with the `ws` package, the frames sent in one turn of the event loop
 * leave in one write (the socket is corked at the first and uncorked by setImmediate, after the
 * turn's callbacks and promise reactions), not one system call each. Elsewhere: `send` as is.
 */
export function sendInBurst(socket: WebSocketLike, data: Uint8Array): void {
  const raw = (socket as { _socket?: Partial<Corkable> | null })._socket
  if (raw != null && typeof raw.cork === 'function' && typeof raw.uncork === 'function' && typeof setImmediate === 'function') {
    const s = raw as Corkable
    if (!corked.has(s)) {
      s.cork()
      corked.add(s)
      setImmediate(() => {
        corked.delete(s)
        s.uncork()
      })
    }
  }
  socket.send(data)
}

/**
 * Messages as a Node Buffer where the implementation offers it (`ws`: no copy into a fresh
 * ArrayBuffer per message), else as an ArrayBuffer. WHATWG implementations ignore or replace an
 * unknown value, so what took is read back.
 */
export function preferBufferMessages(socket: WebSocketLike): void {
  socket.binaryType = 'nodebuffer'
  if (socket.binaryType !== 'nodebuffer') socket.binaryType = 'arraybuffer'
}

/** Binary message data as bytes, whichever form the implementation delivers. */
export function messageBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  if (data instanceof Uint8Array) return data
  if (Array.isArray(data) && data.every((d) => d instanceof Uint8Array)) {
    // `ws` with binaryType 'fragments'; not used by the SDK, accepted anyway.
    const total = data.reduce((n: number, d: Uint8Array) => n + d.byteLength, 0)
    const out = new Uint8Array(total)
    let p = 0
    for (const d of data as Uint8Array[]) { out.set(d, p); p += d.byteLength }
    return out
  }
  return undefined
}

/** Why 2 s: a close handshake on a live connection takes a round trip; a dead one never ends. */
const CLOSE_WAIT_MS = 2_000

export function closeQuietly(socket: WebSocketLike, code: number, reason: string): void {
  try {
    socket.close(code, reason)
  } catch {
    // Closing a socket that is still connecting may throw in some implementations; it is going away either way.
  }
}

/** Closes and waits for the close event, at most CLOSE_WAIT_MS (then the socket is dropped). */
export function closeAndWait(socket: WebSocketLike, code: number, reason: string): Promise<void> {
  return new Promise((resolve) => {
    if (socket.readyState === 3) {
      resolve()
      return
    }
    const timer = setTimeout(() => {
      (socket as { terminate?: () => void }).terminate?.()
      resolve()
    }, CLOSE_WAIT_MS)
    socket.onclose = () => {
      clearTimeout(timer)
      resolve()
    }
    closeQuietly(socket, code, reason)
  })
}
