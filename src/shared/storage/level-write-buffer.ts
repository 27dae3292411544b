// The size of each LevelDB database's memtable (its write buffer), apart from level.ts so that
// the configuration can name its bounds without loading LevelDB.

/**
 * Each database's memtable, LevelDB's write buffer (its own default: 4 MiB). Why 16 MiB: the
 * memtable is flushed into a level-0 table when full, and every 4 such tables are merged with
 * the whole of level 1 — with the engine's keys spread over every workspace each merge rewrites
 * it. With 16 MiB the background thread compacted 3–5× fewer bytes at 15,000 deposits/s on a
 * database already holding ~1.3M commands (0.03–0.08 against 0.19–0.21 cores), and the
 * compactions, each a core's worth of CPU for up to a second, are what the tail at that rate
 * waits behind (docs/benchmarks.md, thirteenth session). Costs: up to twice this much memory
 * per database under writes (the memtable and the one being flushed), and a longer replay of
 * LevelDB's own log at a start after a crash.
 */
export const LEVEL_WRITE_BUFFER_BYTES_DEFAULT = 16 * 1024 * 1024
export const LEVEL_WRITE_BUFFER_BYTES_MIN = 64 * 1024
export const LEVEL_WRITE_BUFFER_BYTES_MAX = 1024 * 1024 * 1024
