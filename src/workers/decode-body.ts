// Request bodies: HTTP bodies arrive as raw JSON bytes and are parsed here, on the processor's
// thread, so the main thread never spends time on JSON. Binary-protocol bodies arrive decoded.

import { VvmError } from '../shared/errors.js'

const utf8 = new TextDecoder('utf-8', { fatal: true })

export function decodeBody(body: unknown): unknown {
  if (!(body instanceof Uint8Array)) return body
  if (body.byteLength === 0) return undefined
  let text: string
  try {
    text = utf8.decode(body)
  } catch {
    throw new VvmError('BAD_JSON', 'the body is not valid UTF-8')
  }
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new VvmError('BAD_JSON', `the body is not valid JSON: ${(err as Error).message}`)
  }
}
