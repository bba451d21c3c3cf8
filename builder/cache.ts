import { mkdir, rename, rm, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import type { Sha256 } from '../installer/core/digest.js'

/**
 * The content-addressed download cache shared by every build on this machine. One module
 * owns its names:
 *
 *   <root>/blobs/sha256/<hex>   complete content, only ever renamed in after its hash matched
 *   <root>/partial/<hex>        a download in progress (resumed from its length after a crash)
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
    return join(this.root, 'blobs', 'sha256', d.hex)
  }

  partialPath(key: string): string {
    return join(this.root, 'partial', key)
  }

  async has(d: Sha256): Promise<boolean> {
    return stat(this.blobPath(d)).then(
      (s) => s.isFile(),
      () => false,
    )
  }

  /** Moves a verified temp file to its address. An address that exists already is done. */
  async commit(tempPath: string, d: Sha256): Promise<string> {
    const dest = this.blobPath(d)
    await mkdir(dirname(dest), { recursive: true })
    await rename(tempPath, dest)
    return dest
  }

  async evict(d: Sha256): Promise<void> {
    await rm(this.blobPath(d), { force: true })
  }
}
