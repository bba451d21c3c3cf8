import { mkdir, rename, rm, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { writeAtomic } from '../../bundle/atomic.js'
import { integrityError, type Sha256 } from '../../bundle/digest.js'

/**
 * The cache's format version: the folder everything lives under. A change to how entries
 * are named or stored gets a new folder, so a new kube-airgap never misreads an old cache
 * (cacache does the same with content-v2/).
 */
export const CACHE_FORMAT = 'cache-v1'

/**
 * The content-addressed download cache shared by every build on this machine. One module
 * owns its names:
 *
 *   <root>/cache-v1/blobs/sha256/<hex>   complete content, only ever renamed in after its hash matched
 *   <root>/cache-v1/partial/<key>        a download in progress (resumed after a crash: from its length,
 *                                        or, for a split download, by the ranges its <key>.ranges lists)
 *   <root>/cache-v1/derived/<key>        facts worked out from content (the runtime binary's digest)
 *
 * An entry is trusted by name only to skip a download; every reader still hashes what it
 * reads, and a mismatch evicts the entry (see build.ts).
 */
export class Cache {
  constructor(readonly root: string) {}

  static defaultRoot(env: NodeJS.ProcessEnv = process.env): string {
    const base = env.XDG_CACHE_HOME || join(homedir(), '.cache')
    return join(base, 'kube-airgap')
  }

  blobPath(d: Sha256): string {
    return join(this.root, CACHE_FORMAT, 'blobs', 'sha256', d.hex)
  }

  partialPath(key: string): string {
    return join(this.root, CACHE_FORMAT, 'partial', key)
  }

  derivedPath(key: string): string {
    return join(this.root, CACHE_FORMAT, 'derived', key)
  }

  /** Stores small content held in memory under its digest (it must hash to it). */
  async store(d: Sha256, data: Buffer): Promise<void> {
    const dest = this.blobPath(d)
    await mkdir(dirname(dest), { recursive: true })
    await writeAtomic(dest, data, { expected: d })
  }

  async has(d: Sha256): Promise<boolean> {
    return stat(this.blobPath(d)).then(
      (s) => s.isFile(),
      () => false,
    )
  }

  /**
   * The one door for a file into the cache (cacache's moveToDestination): `measured` is the
   * sha256 taken of its bytes as they were written; only when it is the digest the caller
   * asked for (`expected`; none: a file hashed to learn its digest) is the file renamed to that
   * address, else it is deleted and EINTEGRITY names `what`. An address that exists already is done.
   */
  async commit(tempPath: string, measured: Sha256, expected: Sha256 = measured, what = tempPath): Promise<string> {
    if (!measured.equals(expected)) {
      await rm(tempPath, { force: true })
      throw integrityError(what, expected, measured)
    }
    const dest = this.blobPath(expected)
    await mkdir(dirname(dest), { recursive: true })
    await rename(tempPath, dest)
    return dest
  }

  async evict(d: Sha256): Promise<void> {
    await rm(this.blobPath(d), { force: true })
  }
}
