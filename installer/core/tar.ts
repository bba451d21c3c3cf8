import { createHash, type Hash } from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import { open } from 'node:fs/promises'
import { once } from 'node:events'
import type { Writable } from 'node:stream'
import { Header } from 'tar'
import { DIR_MODE, TAR_MTIME } from './layout.js'

/** Where tar bytes go. `write` resolves once the buffer may be reused. */
export interface TarSink {
  write(buf: Buffer): Promise<void>
}

/** Writes at increasing positions of a file. */
export function fileSink(fh: FileHandle): TarSink {
  let pos = 0
  return {
    async write(buf) {
      for (let off = 0; off < buf.length; ) {
        const { bytesWritten } = await fh.write(buf, off, buf.length - off, pos)
        off += bytesWritten
        pos += bytesWritten
      }
    },
  }
}

/**
 * Writes into a stream (a child's stdin). The writer reuses its buffers, and a stream may
 * hold a chunk long after its write callback (a PassThrough buffers it until read), so each
 * chunk is copied; backpressure is honoured.
 */
export function streamSink(out: Writable): TarSink {
  return {
    async write(buf) {
      if (!out.write(Buffer.from(buf))) await once(out, 'drain')
    },
  }
}

const BLOCK = 512
const ZEROS = Buffer.alloc(BLOCK * 2)
const CHUNK = 1 << 20

/**
 * Writes a tar whose bytes depend only on what is added and in which order: fixed mtime,
 * uid/gid 0, no user or group names, modes given by the caller. The caller adds entries in
 * sorted order. Hashes the whole stream as it goes, for the `.tar.sha256` beside it.
 *
 * Files are copied through two buffers allocated once (one is read while the other is
 * written), so memory stays flat however large the bundle.
 *
 * It does not write links, devices or pax headers: a bundle has none (paths are short by
 * construction; one too long for ustar is an error, not a silent pax extension).
 */
export class TarWriter {
  readonly hash: Hash = createHash('sha256')
  bytes = 0
  private buffers = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)] as const

  constructor(private readonly out: TarSink) {}

  async directory(path: string): Promise<void> {
    await this.push(header(path.endsWith('/') ? path : `${path}/`, 'Directory', 0, DIR_MODE))
  }

  /** Adds a regular file from memory. */
  async data(path: string, mode: number, data: Buffer): Promise<void> {
    await this.push(header(path, 'File', data.length, mode))
    await this.push(data)
    await this.pad(data.length)
  }

  /** Adds a regular file copied from `source`, which must hold exactly `size` bytes. */
  async file(path: string, size: number, mode: number, source: string): Promise<void> {
    await this.push(header(path, 'File', size, mode))
    const src = await open(source, 'r')
    try {
      let n = 0
      let which = 0
      let reading = src.read(this.buffers[0], 0, Math.min(CHUNK, size), 0)
      for (;;) {
        const { bytesRead } = await reading
        if (bytesRead === 0) break
        const buf = this.buffers[which]!
        n += bytesRead
        if (n > size) throw new Error(`${source}: more than the ${size} bytes announced`)
        which ^= 1
        reading = n < size ? src.read(this.buffers[which]!, 0, Math.min(CHUNK, size - n), n) : Promise.resolve({ bytesRead: 0, buffer: buf })
        await this.push(buf.subarray(0, bytesRead))
      }
      if (n !== size) throw new Error(`${source}: ${n} bytes, ${size} announced`)
    } finally {
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
    this.hash.update(buf)
    await this.out.write(buf)
    this.bytes += buf.length
  }
}

function header(path: string, type: 'File' | 'Directory', size: number, mode: number): Buffer {
  const h = new Header({ path, type, size, mode, uid: 0, gid: 0, uname: '', gname: '', mtime: TAR_MTIME })
  const buf = Buffer.alloc(BLOCK)
  if (h.encode(buf, 0)) throw new Error(`${path}: too long for a ustar header`)
  return buf
}
