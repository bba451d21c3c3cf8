import { createHash, randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { chown, type FileHandle, open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { Readable } from 'node:stream'
import { integrityError, Sha256 } from './digest.js'
import { DirectWriter } from './direct.js'

export interface AtomicOptions {
  mode?: number
  owner?: { uid: number; gid: number }
  /** The bytes must hash to this, or nothing is renamed into place (EINTEGRITY naming `what`). */
  expected?: Sha256
  /** Names the file in an integrity error. */
  what?: string
  /** Runs when the bytes are complete and synced, just before the rename (a last check, or removing what must not outlive the old file). */
  beforeRename?: () => Promise<void>
  /**
   * A regular file already at the path, with the mode (and owner) asked for and the very same
   * bytes, is left as it is: not rewritten, not renamed, its mtime kept (a rebuild that changes
   * nothing writes nothing). The bytes are compared as they are made; from the first that
   * differs on, they go to a temp file as always.
   */
  keepSame?: boolean
  /** A large file nothing reads back soon (the bundle's tar, its parts): written past the page cache where the disk takes it (direct.ts). */
  direct?: boolean
}

/** Writes bytes at the end of the file being made; resolves once the buffer may be reused. */
export type Sink = (buf: Buffer) => Promise<void>

const FLUSH_EVERY = 64 << 20
const CHUNK = 1 << 20

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
  if (typeof data === 'string' || Buffer.isBuffer(data)) {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data
    data = (sink) => sink(bytes)
  }
  const w = new AtomicWrite(path, mode, opts.keepSame && typeof data === 'function' ? await sameKind(path, mode, opts.owner) : undefined, opts.direct ?? false)
  try {
    if (!w.same) await w.startTemp()
    if (typeof data === 'function') await w.produce(data)
    else await w.stream(data)
    await w.finish()
    const got = Sha256.ofHash(w.hash)
    if (opts.expected && !got.equals(opts.expected)) throw integrityError(opts.what ?? path, opts.expected, got, { path })
    if (w.same) {
      if ((await w.same.stat()).size === w.agreed) {
        // The very same bytes: left as they are, and on disk (a no-op when they were synced).
        await w.same.datasync()
        await w.same.close()
        return got
      }
      // The old file has more: what agreed goes into a new one.
      await w.startTemp()
      await w.finish()
    }
    const out = w.fh!
    await out.chmod(mode)
    if (opts.owner) await chown(w.temp, opts.owner.uid, opts.owner.gid)
    await out.datasync()
    await out.close()
    await opts.beforeRename?.()
    await rename(w.temp, path)
    return got
  } catch (e) {
    await w.same?.close().catch(() => {})
    await w.direct?.close()
    if (w.fh) {
      await w.fh.close().catch(() => {})
      await rm(w.temp, { force: true })
    }
    throw e
  }
}

/** One atomic write under way: its temp file (made late while the bytes agree with the old file's), and the hashes. */
class AtomicWrite {
  readonly temp: string
  fh: FileHandle | undefined
  /** With `direct`: the writer past the page cache, from where the kept prefix ends. */
  direct: DirectWriter | undefined
  readonly hash = createHash('sha256')
  /** How many leading bytes agree with the old file's, and their hash. */
  agreed = 0
  private agreedHash = createHash('sha256')

  constructor(
    private readonly path: string,
    private readonly mode: number,
    /** While every byte made so far is the old file's: the old file. */
    public same: FileHandle | undefined,
    private readonly wantDirect: boolean,
  ) {
    this.temp = join(dirname(path), `${tempPrefix(basename(path))}${process.pid}-${randomBytes(6).toString('hex')}`)
  }

  async startTemp(): Promise<FileHandle> {
    const fh = await open(this.temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, this.mode)
    this.fh = fh
    if (this.same) {
      // What agreed is what was made: it goes into the temp file from the old one, checked again
      // on the way (the old file may have changed since it was compared).
      const old = this.same
      this.same = undefined
      const copied = await copyPrefix(old, fh, this.agreed)
      await old.close()
      if (!copied.equals(Sha256.ofHash(this.agreedHash))) throw new Error(`${this.path} changed while it was being rebuilt; run the command again`)
    }
    if (this.wantDirect) this.direct = await DirectWriter.open(fh, this.agreed)
    return fh
  }

  /** Every byte made is in the file (the direct writer's last chunks written). */
  async finish(): Promise<void> {
    const d = this.direct
    this.direct = undefined
    await d?.end()
  }

  /** A producer's bytes, compared with the old file's while they agree, else written; a large file is flushed to disk as it grows. */
  async produce(data: (sink: Sink) => Promise<void>): Promise<void> {
    let unsynced = 0
    let flushing: Promise<void> = Promise.resolve()
    const theirs = this.same ? Buffer.allocUnsafe(CHUNK) : undefined
    await data(async (buf) => {
      // Whether this thread hashed `buf` already, comparing it with the old file's bytes.
      let hashed = false
      if (this.same) {
        // The old bytes are read on libuv's pool while this thread hashes the new ones.
        const reading = agrees(this.same, theirs!, buf, this.agreed)
        this.hash.update(buf)
        hashed = true
        if (await reading) {
          this.agreedHash = this.hash.copy()
          this.agreed += buf.length
          return
        }
        await this.startTemp()
      }
      if (this.direct) {
        // Staged into aligned memory at once: this thread hashes while the chunks before it are written.
        const staging = this.direct.push(buf)
        if (!hashed) this.hash.update(buf)
        return staging
      }
      const out = this.fh!
      // The write runs on libuv's pool while this thread hashes the same (unchanging) bytes.
      const writing = out.write(buf, 0, buf.length)
      if (!hashed) this.hash.update(buf)
      await writeAll(out, buf, (await writing).bytesWritten)
      unsynced += buf.length
      if (unsynced >= FLUSH_EVERY) {
        unsynced = 0
        await flushing
        flushing = this.fh!.datasync()
      }
    })
    await flushing
  }

  async stream(data: Readable): Promise<void> {
    const out = this.fh!
    for await (const chunk of data) {
      const c = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer)
      // Hashed before the write: the hash is of exactly the bytes that reach the file.
      this.hash.update(c)
      await out.write(c)
    }
  }
}

/** The file at `path` if it may be kept as it is: a regular file (never through a link) with this mode and owner. */
async function sameKind(path: string, mode: number, owner: AtomicOptions['owner']): Promise<FileHandle | undefined> {
  // O_NONBLOCK: a FIFO put there does not hang the open.
  const old = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined)
  if (!old) return undefined
  const st = await old.stat()
  if (st.isFile() && (st.mode & 0o7777) === mode && (!owner || (st.uid === owner.uid && st.gid === owner.gid))) return old
  await old.close()
  return undefined
}

/** Whether `old` holds `ours` at `at` (read through `theirs`). */
async function agrees(old: FileHandle, theirs: Buffer, ours: Buffer, at: number): Promise<boolean> {
  for (let off = 0; off < ours.length; ) {
    const { bytesRead } = await old.read(theirs, 0, Math.min(theirs.length, ours.length - off), at + off)
    if (bytesRead === 0 || !theirs.subarray(0, bytesRead).equals(ours.subarray(off, off + bytesRead))) return false
    off += bytesRead
  }
  return true
}

/** Copies the first `n` bytes of `from` to the start of `to`, returning their sha256. */
async function copyPrefix(from: FileHandle, to: FileHandle, n: number): Promise<Sha256> {
  const hash = createHash('sha256')
  const buf = Buffer.allocUnsafe(Math.max(1, Math.min(CHUNK, n)))
  for (let at = 0; at < n; ) {
    const { bytesRead } = await from.read(buf, 0, Math.min(buf.length, n - at), at)
    if (bytesRead === 0) break
    hash.update(buf.subarray(0, bytesRead))
    await writeAll(to, buf.subarray(0, bytesRead))
    at += bytesRead
  }
  return Sha256.ofHash(hash)
}

/** Writes `buf` from `off` on at the file's end, however many writes it takes. */
async function writeAll(fh: FileHandle, buf: Buffer, off = 0): Promise<void> {
  while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten
}
