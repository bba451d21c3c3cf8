import { stat } from 'node:fs/promises'
import type { BaseFile } from '../bundle/delta.js'
import type { Sha256 } from '../bundle/digest.js'
import { KaError } from '../bundle/errors.js'
import type { Lock } from '../bundle/lock.js'
import type { Platform } from '../bundle/platform.js'
import { compareVersions, parseVersion } from '../bundle/version.js'
import type { Cache } from './download/cache.js'
import type { Item } from './download/fetcher.js'
import { planImages } from './images/images.js'
import { imageBlobs, planBundle } from './plan.js'
import { silentProgress } from './progress.js'
import type { RegistryClient } from './images/registry.js'

/** What the old bundle holds, by path: every file and image blob, with its sha256 and (when known) size. */
export interface BaseBundle {
  name: string
  kubernetes: string
  files: Map<string, { digest: Sha256; size?: number }>
}

/**
 * The bundle an older lock built, worked out from the lock alone and the image manifests it
 * pins (from the cache, or the registry: manifests only, never layers). The runtime is left
 * out: the old bundle holds only its extracted binary, and a delta always carries its own,
 * since its `install` runs it. Best given the old bundle's own bundle.lock.json: it names
 * exactly the OS releases that bundle carried.
 */
export async function baseBundle(
  old: Lock,
  oldPath: string,
  lock: Lock,
  platform: Platform,
  o: { registry: RegistryClient; cache: Cache },
): Promise<BaseBundle> {
  const from = parseVersion(old.kubernetes)!
  const to = parseVersion(lock.kubernetes)!
  if (compareVersions(from, to) >= 0)
    throw new KaError(
      'EUSAGE',
      `--upgrade-from ${oldPath} locks Kubernetes ${from.text}, not older than this lock's ${to.text}: a delta bundle goes from an older bundle to a newer one`,
    )
  const plan = planBundle(old, platform, undefined, oldPath)
  const files = new Map<string, { digest: Sha256; size?: number }>()
  for (const d of plan.downloads) if (d !== plan.runtime) files.set(d.rel, { digest: d.digest, ...(d.size !== undefined ? { size: d.size } : {}) })
  const images = await planImages(old.images, platform, { ...o, progress: silentProgress }).catch((e: unknown) => {
    throw new KaError(
      'EREGISTRY',
      `--upgrade-from ${oldPath}: the old bundle's image manifests could not be read (${(e as Error).message}); build the delta where the registry (or the cache of the old build) is reachable`,
    )
  })
  for (const b of imageBlobs(images.planned)) files.set(b.rel, { digest: b.digest, size: b.size })
  return { name: plan.id.name, kubernetes: old.kubernetes, files }
}

/** Whether the old bundle holds this item, byte for byte, at the same path. */
export const inBase = (base: BaseBundle | undefined, i: Item): boolean => !!base?.files.get(i.rel)?.digest.equals(i.digest)

/** The items a delta leaves out, as DELTA.json lists them; a size unknown to the lock comes from the cache. */
export async function baseFiles(base: BaseBundle, items: readonly Item[], cache: Cache): Promise<BaseFile[]> {
  const out: BaseFile[] = []
  for (const i of items) {
    if (!inBase(base, i)) continue
    const size = i.size ?? base.files.get(i.rel)!.size ?? (await stat(cache.blobPath(i.digest)).catch(() => undefined))?.size
    out.push({ path: i.rel, sha256: i.digest, ...(size !== undefined ? { size } : {}) })
  }
  return out
}
