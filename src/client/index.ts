// The TypeScript client SDK of vvm's binary protocol (docs/protocol.md), importable as
// `vvm/client`. Runs in Node 20+ (with the `ws` package) and in browsers (global WebSocket).
// It may import only src/shared/protocol and packages: never src/main or src/workers.
//
//   const client = await connect('ws://127.0.0.1:8822/api/ws', { app: 'demo/bank', wsid: 1 })
//   const { newIDs } = await client.docs.create('bank.Account', { name: 'a', balance: 0 })
//   await client.command('bank.Deposit', { account: newIDs['1'], amount: 10 })
//   const { results } = await client.query('bank.Balance', { account: newIDs['1'] })
//   await client.close()

import { VvmClient } from './client.js'
import type { ConnectOptions } from './options.js'
import { resolveWebSocket } from './websocket.js'

export { VvmClient } from './client.js'
export type {
  CallOptions, ClientState, CommandOptions, CommandResult, ConnectOptions, RawRequest, ReadOptions, ReadResult, ReconnectOptions, Row, WriteOptions,
} from './options.js'
export { Live, LiveRows, Subscription } from './subscription.js'
export type { DiffOp, RowKey, SubscribeOptions, SubscribeTarget, SubscriptionEvent } from './subscription.js'
export { ConnectionError, ReplyError, TimeoutError, VvmClientError, type ConnectionErrorCode } from './errors.js'
export type { WebSocketConstructor, WebSocketLike } from './websocket.js'
export { CloseCode, WireOp, type ServerLimits } from '../shared/protocol/index.js'

/**
 * Opens a connection to `url` (`ws://host:port/api/ws`) and says HELLO; resolves once the server
 * answered WELCOME, rejects with a ConnectionError (code CONNECT_FAILED) if it does not.
 */
export async function connect(url: string, options: ConnectOptions = {}): Promise<VvmClient> {
  const WS = await resolveWebSocket(options.WebSocket)
  const client = new VvmClient(url, options, WS)
  await client.start()
  return client
}
