import { open } from 'node:fs/promises'
import { once } from 'node:events'
import type { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGunzip } from 'node:zlib'
import { Header, Parser, type ReadEntry } from 'tar'
import type { Sink } from './atomic.js'
import { DIR_MODE, TAR_MTIME } from './layout.js'

/**
 * Writes into a stream (a child's stdin). The writer reuses its buffers, and a stream may
 * hold a chunk long after its write callback (a PassThrough buffers it until read), so each
 * chunk is copied; backpressure is honoured.
 */
export function streamSink(out: Writable): Sink {
  return async (buf) => {
    if (!out.write(Buffer.from(buf))) await once(out, 'drain')
  }
}

/** A file still being written (a download packing follows): `reach(n)` resolves once bytes `[0, n)` are final, or rejects. */
export interface GrowingSource {
  path: string
  reach(n: number): Promise<void>
}

const BLOCK = 512
const ZEROS = Buffer.alloc(BLOCK * 2)
const CHUNK = 1 << 20

/**
 * Writes a tar whose bytes depend only on what is added and in which order: fixed mtime,
 * uid/gid 0, no user or group names, modes given by the caller. The caller adds entries in
 * sorted order. Its bytes go to a sink: `writeAtomic`'s (which hashes them) or a stream's.
 *
 * Files are copied through two buffers allocated once (one is read while the other is
 * written), so memory stays flat however large the bundle.
 *
 * It does not write links, devices or pax headers: a bundle has none (paths are short by
 * construction; one too long for ustar is an error, not a silent pax extension).
 */
export class TarWriter {
  bytes = 0
  private buffers = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)] as const

  constructor(private readonly out: Sink) {}

  async directory(path: string): Promise<void> {
    await this.push(header(path.endsWith('/') ? path : `${path}/`, 'Directory', 0, DIR_MODE))
  }

  /** Adds a regular file from memory. */
  async data(path: string, mode: number, data: Buffer): Promise<void> {
    await this.push(header(path, 'File', data.length, mode))
    await this.push(data)
    await this.pad(data.length)
  }

  /**
   * Adds a regular file copied from `source`, which must hold exactly `size` bytes: a file, or
   * one still being written, each byte read once it is final.
   */
  async file(path: string, size: number, mode: number, source: string | GrowingSource): Promise<void> {
    const growing = typeof source === 'string' ? undefined : source
    const name = growing?.path ?? (source as string)
    // Opened first: a file that is not there adds nothing to the tar.
    const src = await open(name, 'r')
    let closing = false
    let inRead: Promise<unknown> = Promise.resolve()
    const read = (buf: Buffer, want: number, at: number): Promise<{ bytesRead: number }> => {
      if (closing) return Promise.resolve({ bytesRead: 0 })
      const r = src.read(buf, 0, want, at)
      inRead = r
      return r
    }
    // A file's next chunk is asked for at once (read on libuv's pool while this thread hashes the one before); a growing one's once it is final.
    const readAt = (buf: Buffer, at: number) => {
      const want = Math.min(CHUNK, size - at)
      return growing ? growing.reach(at + want).then(() => read(buf, want, at)) : read(buf, want, at)
    }
    let reading = readAt(this.buffers[0], 0)
    try {
      await this.push(header(path, 'File', size, mode))
      let n = 0
      let which = 0
      for (;;) {
        const { bytesRead } = await reading
        if (bytesRead === 0) break
        const buf = this.buffers[which]!
        n += bytesRead
        which ^= 1
        reading = n < size ? readAt(this.buffers[which]!, n) : Promise.resolve({ bytesRead: 0 })
        await this.push(buf.subarray(0, bytesRead))
      }
      if (n !== size) throw new Error(`${name}: ${n} bytes, ${size} announced`)
    } finally {
      // The copy failed with a read ahead under way: it may wait for bytes that never come, but reads nothing once the file is closed.
      closing = true
      reading.catch(() => {})
      await inRead.catch(() => {})
      await src.close()
    }
    await this.pad(size)
  }

  async end(): Promise<void> {
    await this.push(ZEROS)
  }

  private async pad(size: number): Promise<void> {
    const pad = (BLOCK - (size % BLOCK)) % BLOCK
    if (pad) await this.push(ZEROS.subarray(0, pad))
  }

  private async push(buf: Buffer): Promise<void> {
    await this.out(buf)
    this.bytes += buf.length
  }
}

function header(path: string, type: 'File' | 'Directory', size: number, mode: number): Buffer {
  const h = new Header({ path, type, size, mode, uid: 0, gid: 0, uname: '', gname: '', mtime: TAR_MTIME })
  const buf = Buffer.alloc(BLOCK)
  if (h.encode(buf, 0)) throw new Error(`${path}: too long for a ustar header`)
  return buf
}

/** One entry of a tar being read: its body must be consumed (read, piped, or `resume()`d). */
export interface TarEntry {
  /** The path as the header gives it, without a trailing `/`. */
  path: string
  /**
   * `File`, `OldFile`, `Directory`, `SymbolicLink`, ... as node-tar names them, except that a
   * regular file whose name ends in `/` is a `Directory`: GNU tar makes a folder of it.
   */
  type: string
  size: number
  /** The mode bits (permissions, setuid, setgid, sticky) and owner the header gives. */
  mode: number
  uid: number
  gid: number
  body: ReadEntry
}

/**
 * The one tar reader: the bundle tar (verify, inspect), the component archives on the node
 * (gzip) and the Node.js tarball at build time (through xz) are all walked here. `each`
 * sees every entry in order; its promises are awaited before this resolves. Malformed
 * headers are skipped, and told to `onWarn`.
 */
export async function readTar(
  input: Readable,
  each: (e: TarEntry) => void | Promise<void>,
  opts: { gzip?: boolean; onWarn?: (message: string) => void } = {},
): Promise<void> {
  const pending: Promise<void>[] = []
  const parser = new Parser({
    strict: false,
    ...(opts.onWarn ? { onwarn: (_code: string, message: string) => opts.onWarn!(message) } : {}),
    onReadEntry: (entry: ReadEntry) => {
      const path = entry.path.replace(/\/+$/, '')
      const folder = path !== entry.path && ['File', 'OldFile', 'ContiguousFile'].includes(entry.type)
      const r = each({
        path,
        type: folder ? 'Directory' : entry.type,
        size: entry.size ?? 0,
        mode: (entry.mode ?? 0) & 0o7777,
        uid: entry.uid ?? 0,
        gid: entry.gid ?? 0,
        body: entry,
      })
      if (r) pending.push(r)
    },
  })
  // zlib's default 16 KiB output chunks make gunzip twice as slow (a containerd tarball: 420 ms, 190 ms with 1 MiB).
  if (opts.gzip) await pipeline(input, createGunzip({ chunkSize: 1 << 20 }), parser)
  else await pipeline(input, parser)
  await Promise.all(pending)
}

/** The regular-file types of a tar header. */
export const isRegular = (e: TarEntry): boolean => e.type === 'File' || e.type === 'OldFile'
