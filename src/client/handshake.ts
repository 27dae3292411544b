// Opening one connection of the SDK: the WebSocket, HELLO, and WELCOME within a timeout. The
// frames after WELCOME and the socket's close go to the client through hooks, called on the
// socket's own events (a frame that arrives with WELCOME in one read is not lost).

import { CloseCode, FrameType, PROTOCOL_VERSIONS, decodeServerFrame, encodeHello, type ServerFrame, type ServerLimits } from '../shared/protocol/index.js'
import { ConnectionError } from './errors.js'
import { closeQuietly, messageBytes, preferBufferMessages, type WebSocketConstructor, type WebSocketLike } from './websocket.js'

export interface HelloParams {
  token: string | null
  options: Record<string, unknown>
  timeoutMs: number
}

export interface ConnectionHooks {
  /** WELCOME came: the connection is the client's from now on (called before the promise resolves). */
  welcomed(socket: WebSocketLike, version: number, limits: ServerLimits): void
  /** True when the client was closed meanwhile: a late WELCOME closes the socket instead. */
  abandoned(): boolean
  frame(socket: WebSocketLike, f: ServerFrame): void
  closed(socket: WebSocketLike, code: number, reason: string): void
  /** A frame that does not decode (it is skipped). */
  error(err: Error): void
}

/** Resolves once WELCOME came; rejects with CONNECT_FAILED otherwise. */
export function openConnection(WS: WebSocketConstructor, url: string, hello: HelloParams, hooks: ConnectionHooks): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let socket: WebSocketLike
    try {
      socket = new WS(url)
    } catch (err) {
      reject(new ConnectionError('CONNECT_FAILED', `cannot open ${url}: ${(err as Error).message}`))
      return
    }
    preferBufferMessages(socket)
    let welcomed = false
    let failed = false
    const fail = (e: ConnectionError): void => {
      if (failed) return
      failed = true
      clearTimeout(timer)
      reject(e)
    }
    const timer = setTimeout(() => {
      fail(new ConnectionError('CONNECT_FAILED', `no WELCOME from ${url} within ${hello.timeoutMs} ms`))
      closeQuietly(socket, CloseCode.NORMAL, 'connect timeout')
    }, hello.timeoutMs)
    socket.onopen = () => socket.send(encodeHello(PROTOCOL_VERSIONS, hello.token, hello.options))
    socket.onerror = () => { /* a close event follows with the code */ }
    socket.onmessage = (ev) => {
      const bytes = messageBytes(ev.data)
      if (bytes === undefined) return
      let f: ServerFrame
      try {
        f = decodeServerFrame(bytes)
      } catch (err) {
        hooks.error(err as Error)
        return
      }
      if (welcomed) {
        hooks.frame(socket, f)
        return
      }
      if (f.type !== FrameType.WELCOME) {
        fail(new ConnectionError('CONNECT_FAILED', `the server answered HELLO with frame type ${String(f.type)}, not WELCOME`))
        closeQuietly(socket, CloseCode.NORMAL, 'no welcome')
        return
      }
      welcomed = true
      clearTimeout(timer)
      if (failed || hooks.abandoned()) {
        closeQuietly(socket, CloseCode.NORMAL, 'client closed')
        return
      }
      hooks.welcomed(socket, f.version, f.limits)
      resolve()
    }
    socket.onclose = (ev) => {
      if (!welcomed) {
        fail(new ConnectionError('CONNECT_FAILED', `the connection to ${url} closed before WELCOME (${ev.code}${ev.reason ? ': ' + ev.reason : ''})`, ev.code, ev.reason))
        return
      }
      hooks.closed(socket, ev.code, ev.reason)
    }
  })
}
