import { createHash, randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { chown, open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { Readable } from 'node:stream'
import { integrityError, Sha256 } from './digest.js'

export interface AtomicOptions {
  mode?: number
  owner?: { uid: number; gid: number }
  /** The bytes must hash to this, or nothing is renamed into place (EINTEGRITY naming `what`). */
  expected?: Sha256
  /** Names the file in an integrity error. */
  what?: string
  /** Runs when the bytes are complete and synced, just before the rename (a last check, or removing what must not outlive the old file). */
  beforeRename?: () => Promise<void>
}

/** Writes bytes at the end of the file being made; resolves once the buffer may be reused. */
export type Sink = (buf: Buffer) => Promise<void>

const FLUSH_EVERY = 64 << 20

/** The temp file `writeAtomic` uses for `path`: `.NAME.tmp-PID-RANDOM` (the PID tells a live writer's from a dead one's). */
export const tempPrefix = (name: string): string => `.${name}.tmp-`

/**
 * Writes a file the one safe way: a temp file with a random name beside the target, created
 * exclusively and never through a link (O_EXCL|O_NOFOLLOW), every byte hashed as it is
 * written, synced, and renamed over the target only when complete and (with `expected`) only
 * when the hash matches. Returns the sha256 of what was written. A crash leaves at most a
 * `.NAME.tmp-PID-*` file, never a half-written target. It does not create the folder.
 *
 * `data` is bytes, a stream, or a producer that writes through the sink it is given (the
 * bundle's tar, a split part): every file this project writes goes through here.
 */
export async function writeAtomic(path: string, data: Buffer | string | Readable | ((sink: Sink) => Promise<void>), opts: AtomicOptions = {}): Promise<Sha256> {
  const mode = opts.mode ?? 0o644
  const temp = join(dirname(path), `${tempPrefix(basename(path))}${process.pid}-${randomBytes(6).toString('hex')}`)
  const fh = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode)
  const hash = createHash('sha256')
  try {
    if (typeof data === 'string' || Buffer.isBuffer(data)) {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data
      hash.update(bytes)
      await fh.writeFile(bytes)
    } else if (typeof data === 'function') {
      // A large file (the bundle's tar) is flushed to disk as it grows, not all at the end.
      let unsynced = 0
      let flushing: Promise<void> = Promise.resolve()
      await data(async (buf) => {
        // The write runs on libuv's pool while this thread hashes the same (unchanging) bytes.
        const writing = fh.write(buf, 0, buf.length)
        hash.update(buf)
        for (let off = (await writing).bytesWritten; off < buf.length; ) off += (await fh.write(buf, off, buf.length - off)).bytesWritten
        unsynced += buf.length
        if (unsynced >= FLUSH_EVERY) {
          unsynced = 0
          await flushing
          flushing = fh.datasync()
        }
      })
      await flushing
    } else {
      for await (const chunk of data) {
        const c = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer)
        // Hashed before the write: the hash is of exactly the bytes that reach the file.
        hash.update(c)
        await fh.write(c)
      }
    }
    const got = Sha256.ofHash(hash)
    if (opts.expected && !got.equals(opts.expected)) throw integrityError(opts.what ?? path, opts.expected, got, { path })
    await fh.chmod(mode)
    if (opts.owner) await chown(temp, opts.owner.uid, opts.owner.gid)
    await fh.datasync()
    await fh.close()
    await opts.beforeRename?.()
    await rename(temp, path)
    return got
  } catch (e) {
    await fh.close().catch(() => {})
    await rm(temp, { force: true })
    throw e
  }
}
