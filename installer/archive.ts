import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { PassThrough, type Readable } from 'node:stream'
import { integrityError, Sha256 } from '../bundle/digest.js'
import type { KaError } from '../bundle/errors.js'
import { isSafeRelativePath } from '../bundle/layout.js'
import { isRegular, readTar } from '../bundle/tar.js'

export interface Member {
  /** The member's path in the archive, without a leading `./`. */
  path: string
  size: number
  sha256: Sha256
}

/**
 * Walks a .tar.gz from the bundle and calls `each` for every regular file whose path is
 * safe (links, devices and paths with `..` are skipped, never written), with the member's
 * bytes as a stream that must be consumed.
 */
async function walk(archive: string, each: (path: string, size: number, body: Readable) => Promise<void>, whole?: Hash): Promise<void> {
  const raw = createReadStream(archive, { highWaterMark: 1 << 20 })
  if (whole) raw.on('data', (c) => whole.update(c as Buffer))
  await readTar(
    raw,
    (e) => {
      const path = e.path.replace(/^\.\//, '')
      if (!isRegular(e) || !isSafeRelativePath(path)) return void e.body.resume()
      const body = new PassThrough()
      e.body.pipe(body)
      return each(path, e.size, body)
    },
    { gzip: true },
  )
}

/**
 * The regular files of an archive, with their hashes (read once, nothing kept in memory).
 * The archive's own bytes must hash to `pin` as they are read this time: the member hashes
 * the installer then checks every write against come from pinned bytes, not from whatever
 * the medium answers on a second read.
 */
export async function listMembers(archive: string, pin: Sha256): Promise<Member[]> {
  const out: Member[] = []
  const whole = createHash('sha256')
  const unpinned = async (): Promise<KaError | undefined> => {
    const got = (await Sha256.ofFile(archive)).digest
    return got.equals(pin) ? undefined : integrityError(archive, pin, got, { path: archive })
  }
  try {
    await walk(
      archive,
      async (path, size, body) => {
        const hash = createHash('sha256')
        for await (const c of body) hash.update(c as Buffer)
        out.push({ path, size, sha256: Sha256.ofHash(hash) })
      },
      whole,
    )
  } catch (e) {
    // Bytes that do not even unpack: say whose they are not, when they are not the pinned ones.
    throw (await unpinned()) ?? e
  }
  const got = Sha256.ofHash(whole)
  if (!got.equals(pin)) throw integrityError(archive, pin, got, { path: archive })
  return out
}

/** Streams the chosen members to `write`, one at a time as the archive is read. */
export async function extractMembers(archive: string, wanted: ReadonlySet<string>, write: (path: string, body: Readable) => Promise<void>): Promise<void> {
  await walk(archive, async (path, _size, body) => {
    if (wanted.has(path)) await write(path, body)
    else body.resume()
  })
}
