// A partition database's commit log: durable batches are made durable here, in a file of fixed
// size written once in full (zeros) when it is made, and then LevelDB is written without its own
// sync. Why: LevelDB syncs a log that grows, so each of its syncs also commits the file's new
// size to the file system's journal; a write into space that already exists needs no journal
// commit. On this machine that is ~40 % less wall time per durable batch (bench/sync-cost.ts,
// docs/benchmarks.md, tenth session). The file is opened with O_DSYNC: one write() returns
// when its bytes are on the disk.
//
// Record:  u32 LE payload length (> 0) · u32 LE crc32 of (seq, payload) · u64 LE seq · payload
//          The payload is the batch's puts packed as level-app-storage.ts packs them for LevelDB.
// Records follow each other from offset 0. A record that does not fit before the end first
// checkpoints: a synced LevelDB write of `CHECKPOINT_KEY` = the last seq applied, which makes
// every earlier LevelDB write durable; the log then starts again at offset 0 with the next seq.
// Recovery replays, in order, the records from offset 0 whose seq follows the checkpoint's
// without a gap; it stops at the first that does not (zeros, a torn write, an older cycle's
// record). Replaying a record LevelDB already has writes the same bytes again. A durable write
// that bypasses the log (compare-and-set) carries the checkpoint, so that no replay goes back
// behind it.

import { closeSync, constants, fstatSync, fsyncSync, openSync, readSync, writeSync, write as writeCb } from 'node:fs'
import { dirname } from 'node:path'
import { crc32 } from 'node:zlib'
import { StorageError } from '../errors.js'
import { readU32le, readU64le, writeU32le, writeU64le } from './keys.js'

/** Why 8 MiB: a checkpoint (one synced LevelDB write) per ~8 MiB of commits; made in ~30 ms. */
export const COMMIT_LOG_BYTES_DEFAULT = 8 * 1024 * 1024
export const COMMIT_LOG_BYTES_MIN = 64 * 1024
/** Why 1 GiB: the whole file is scanned at every start (recovery); far above what a checkpoint interval needs. */
export const COMMIT_LOG_BYTES_MAX = 1024 * 1024 * 1024
const HEADER_BYTES = 16
/** A key no app row has: app keys begin with a u16 app-name length of at least 1. */
export const CHECKPOINT_KEY = new Uint8Array([0, 0, 0x76, 0x76, 0x6d, 0x2e, 0x6c, 0x6f, 0x67]) // "\0\0vvm.log"

export interface LoggedRecord {
  readonly seq: number
  readonly payload: Uint8Array
}

/** Encodes a checkpoint's value: the last seq applied to LevelDB (u64 LE). */
export function checkpointValue(seq: number): Uint8Array {
  const out = new Uint8Array(8)
  writeU64le(out, 0, seq)
  return out
}

export function readCheckpoint(value: Uint8Array | undefined): number {
  return value === undefined || value.byteLength !== 8 ? 0 : readU64le(value, 0)
}

export class CommitLog {
  /**
   * Set when LevelDB refused a batch whose record is already here: the next start applies it, so
   * nothing may be written after it until then (a later batch, built on the state without it,
   * would be mixed with it by the replay), and no checkpoint may cover it.
   */
  failed: Error | undefined
  private offset = 0
  private buffer = new Uint8Array(64 * 1024)
  private closed = false

  private constructor(readonly path: string, private readonly fd: number, readonly capacityBytes: number, private nextSeq: number) {}

  /**
   * Opens (making it on first use, written in full and synced) the log at `path` and returns it
   * with the records that follow `checkpoint`, in order, for the caller to apply before anything
   * else; the log then continues after them once the caller has checkpointed (`restart`).
   */
  static open(path: string, checkpoint: number, capacityBytes = COMMIT_LOG_BYTES_DEFAULT): { log: CommitLog; pending: LoggedRecord[] } {
    if (!Number.isSafeInteger(capacityBytes) || capacityBytes < COMMIT_LOG_BYTES_MIN || capacityBytes > COMMIT_LOG_BYTES_MAX) {
      throw new StorageError(`level: commit log of ${capacityBytes} bytes: ${COMMIT_LOG_BYTES_MIN}..${COMMIT_LOG_BYTES_MAX}`)
    }
    let fd: number
    try {
      prepare(path, capacityBytes)
      fd = openSync(path, constants.O_RDWR | constants.O_DSYNC)
    } catch (err) {
      throw new StorageError(`level: cannot open the commit log ${path}: ${(err as Error).message}`, err)
    }
    // A log made larger before is used at its size: it never shrinks, so no record is cut off.
    const size = Math.max(capacityBytes, fstatSync(fd).size)
    const pending = scan(fd, size, checkpoint)
    const last = pending.length === 0 ? checkpoint : pending[pending.length - 1]!.seq
    return { log: new CommitLog(path, fd, size, last + 1), pending }
  }

  /** The seq the next record gets; all before it are applied to LevelDB (or being applied). */
  get lastSeq(): number {
    return this.nextSeq - 1
  }

  /** Whether a payload of this size fits the log at all (else: a synced LevelDB write). */
  fits(payloadBytes: number): boolean {
    return HEADER_BYTES + payloadBytes <= this.capacityBytes
  }

  /** Whether it fits before the end without a checkpoint first. */
  fitsNow(payloadBytes: number): boolean {
    return this.offset + HEADER_BYTES + payloadBytes <= this.capacityBytes
  }

  /** After a checkpoint of `lastSeq`: the log begins again at offset 0. */
  restart(): void {
    this.offset = 0
  }

  /**
   * Stages a record of `payload` (copied into the log's own buffer, so the caller's scratch may
   * be reused) and returns its view of the payload, valid until the next `stage`.
   */
  stage(payload: Uint8Array, length: number): Uint8Array {
    const total = HEADER_BYTES + length
    if (total > this.buffer.byteLength) this.buffer = new Uint8Array(Math.max(total, this.buffer.byteLength * 2))
    const b = this.buffer
    const seq = this.nextSeq
    b.set(payload.subarray(0, length), HEADER_BYTES)
    writeU32le(b, 0, length)
    writeU64le(b, 8, seq)
    writeU32le(b, 4, crc32(b.subarray(8, total)))
    return b.subarray(HEADER_BYTES, total)
  }

  /** Writes the staged record durably on this thread. */
  writeStagedNow(): void {
    const total = this.stagedBytes()
    try {
      let done = 0
      while (done < total) done += writeSync(this.fd, this.buffer, done, total - done, this.offset + done)
    } catch (err) {
      throw new StorageError(`level: commit log write failed: ${(err as Error).message}`, err)
    }
    this.advance(total)
  }

  /** Writes the staged record durably through libuv's thread pool. */
  async writeStaged(): Promise<void> {
    const total = this.stagedBytes()
    let done = 0
    while (done < total) {
      done += await new Promise<number>((resolve, reject) => writeCb(this.fd, this.buffer, done, total - done, this.offset + done, (err, n) => {
        if (err !== null) reject(new StorageError(`level: commit log write failed: ${err.message}`, err))
        else resolve(n)
      }))
    }
    this.advance(total)
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    closeSync(this.fd)
  }

  private stagedBytes(): number {
    if (this.closed) throw new StorageError('level: the commit log is closed')
    const total = HEADER_BYTES + readU32le(this.buffer, 0)
    if (this.offset + total > this.capacityBytes) throw new StorageError('level: commit log record past the end (checkpoint first)')
    return total
  }

  private advance(total: number): void {
    this.offset += total
    this.nextSeq++
  }
}

/** Makes the file full size with real blocks (zeros written, then synced, with its directory). */
function prepare(path: string, capacityBytes: number): void {
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT)
  try {
    const size = fstatSync(fd).size
    if (size >= capacityBytes) return
    const zeros = new Uint8Array(Math.min(1024 * 1024, capacityBytes))
    for (let at = size; at < capacityBytes;) at += writeSync(fd, zeros, 0, Math.min(zeros.byteLength, capacityBytes - at), at)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  const dir = openSync(dirname(path), constants.O_RDONLY)
  try {
    fsyncSync(dir)
  } finally {
    closeSync(dir)
  }
}

/** Bytes of the log read at a time while scanning: the whole file is never in memory at once. */
const SCAN_WINDOW_BYTES = 1024 * 1024

/** The records after `checkpoint`, consecutive from offset 0, read through a window of the file. */
function scan(fd: number, size: number, checkpoint: number): LoggedRecord[] {
  const window = new Uint8Array(Math.min(SCAN_WINDOW_BYTES, size))
  let windowAt = 0
  let windowBytes = 0
  /** The file's bytes [at, at + n): a view of the window (valid until the next call) or, past its size, a copy. */
  const bytesAt = (at: number, n: number): Uint8Array | undefined => {
    if (at + n > size) return undefined
    if (at >= windowAt && at + n <= windowAt + windowBytes) return window.subarray(at - windowAt, at - windowAt + n)
    const into = n > window.byteLength ? new Uint8Array(n) : window
    const got = readFully(fd, into, at, n > window.byteLength ? n : Math.min(window.byteLength, size - at))
    if (into === window) {
      windowAt = at
      windowBytes = got
    }
    return got < n ? undefined : into.subarray(0, n)
  }
  const out: LoggedRecord[] = []
  let at = 0
  let expected = checkpoint + 1
  for (;;) {
    const header = bytesAt(at, HEADER_BYTES)
    if (header === undefined) break
    const length = readU32le(header, 0)
    const crc = readU32le(header, 4)
    const seqCrc = crc32(header.subarray(8, HEADER_BYTES))
    if (length === 0 || readU64le(header, 8) !== expected) break
    const payload = bytesAt(at + HEADER_BYTES, length)
    if (payload === undefined || crc32(payload, seqCrc) !== crc) break
    out.push({ seq: expected, payload: payload.slice() })
    at += HEADER_BYTES + length
    expected++
  }
  return out
}

function readFully(fd: number, into: Uint8Array, at: number, n: number): number {
  let got = 0
  while (got < n) {
    const r = readSync(fd, into, got, n - got, at + got)
    if (r === 0) break
    got += r
  }
  return got
}
