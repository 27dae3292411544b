// The binary protocol over WebSocket (docs/protocol.md): frame types, ops, close codes, limits
// and the frame codec. Shared by the server (src/main/ws-api.ts) and the client SDK
// (src/client), so it imports nothing from the rest of the project, only msgpackr.

export * from './constants.js'
export * from './codec.js'
export * from './subscriptions.js'
