// `echo`: the ceilings' scenario. Sends `payloadBytes` of JSON to a raw echo server (bench's
// ceiling server, or any server that returns the POST body of `/echo` unchanged) and checks
// that exactly those bytes came back.

import { defineScenario, statusError } from '../scenario.js'

/** A JSON object of exactly `bytes` bytes (at least 16), like a small command body. */
export function echoPayload(bytes: number): Buffer {
  const frame = '{"args":{"pad":""}}'
  return Buffer.from(frame.slice(0, -3) + 'x'.repeat(Math.max(0, bytes - frame.length)) + frame.slice(-3))
}

export default defineScenario({
  name: 'echo',
  description: 'POST /echo (or a WebSocket message) of payload-bytes to a raw echo server; the same bytes must come back',
  source(ctx) {
    const payload = echoPayload(ctx.payloadBytes)
    return {
      next: () => ({ kind: 'echo', payload }),
      check(_op, reply) {
        if (reply.status !== 200) return statusError(reply)
        return Buffer.isBuffer(reply.body) && reply.body.equals(payload) ? undefined : 'content: echo differs from what was sent'
      },
    }
  },
})
