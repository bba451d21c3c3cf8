import { readFile } from 'node:fs/promises'
import { Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import type { Lock, LockedImage } from '../../bundle/lock.js'
import { missingImages, requiredImages, type CarriedManifest } from '../../bundle/closed-world.js'
import type { LayoutImage } from '../../bundle/image-layout.js'
import { MediaType, parseManifestDoc, platformsOf, selectPlatform, type Descriptor } from '../../bundle/oci.js'
import { archOf, type Platform } from '../../bundle/platform.js'
import { imageName, parseImageRef, type ImageRef } from '../../bundle/reference.js'
import type { Cache } from '../download/cache.js'
import type { Progress } from '../progress.js'
import type { RegistryClient } from './registry.js'

/** One image as a bundle carries it: the platform's manifest and the blobs it names. */
export interface PlannedImage {
  ref: ImageRef
  name: string
  /** What the lock pins: the index (or, for a single-platform image, the manifest). */
  pinned: Sha256
  manifest: Descriptor
  /** Config and layers. */
  blobs: Descriptor[]
}

/**
 * Works out, for one platform, which manifest of each image the bundle carries and which
 * blobs that takes, reading indexes and manifests from the cache when they are there (a
 * second build asks the registry nothing). Images without a digest are resolved now, with
 * a warning; the returned lock entries carry the digests.
 */
export async function planImages(
  images: readonly LockedImage[],
  platform: Platform,
  o: { registry: RegistryClient; cache: Cache; progress: Progress },
): Promise<{ planned: PlannedImage[]; locked: LockedImage[] }> {
  // Every request holds a connection of the build's one budget (--concurrency): no limit of its own here.
  const planned = await Promise.all(
    images.map(async (im): Promise<PlannedImage> => {
      const ref = parseImageRef(im.ref)
      const name = imageName(ref)
      let pinned = im.digest
      if (!pinned) {
        const top = await o.registry.resolve(ref)
        pinned = top.digest
        await o.cache.store(top.digest, top.data)
        o.progress.note(`WARN  ${name} has no digest in the lock; resolved it to ${pinned.oci} now (run \`bundle lock\` to pin it)`)
      }
      const topBytes = await manifestBytes(o, ref, pinned)
      const top = parseManifestDoc(topBytes, undefined, name)
      let manifest: Descriptor
      if (top.kind === 'index') {
        const chosen = selectPlatform(top.manifests, platform)
        if (!chosen)
          throw new KaError(
            'ENOTPINNED',
            `${name}: no ${platform} image in its index (it has ${platformsOf(top.manifests).join(', ') || 'none'}); pick another tag or drop the platform`,
          )
        manifest = { mediaType: chosen.mediaType || MediaType.ociManifest, digest: chosen.digest, size: chosen.size, platform: chosen.platform! }
      } else {
        manifest = { mediaType: top.mediaType, digest: pinned, size: topBytes.length }
      }
      const doc = parseManifestDoc(await manifestBytes(o, ref, manifest.digest), manifest.mediaType, name)
      if (doc.kind !== 'manifest')
        throw new KaError('EREGISTRY', `${name}: the ${platform} entry of its index is itself an index; nested indexes are not supported`)
      if (top.kind === 'manifest') {
        const config = JSON.parse((await configBytes(o, ref, doc.config)).toString('utf8')) as { os?: string; architecture?: string }
        if (config.os !== 'linux' || config.architecture !== archOf(platform)) {
          throw new KaError(
            'ENOTPINNED',
            `${name}: a single-platform image for ${config.os}/${config.architecture}, not ${platform}; pin a multi-platform tag or build for its platform`,
          )
        }
        manifest.platform = { os: 'linux', architecture: archOf(platform) }
      }
      return { ref, name, pinned, manifest, blobs: [doc.config, ...doc.layers] }
    }),
  )
  return { planned, locked: planned.map((p) => ({ ref: p.name, digest: p.pinned, manifest: p.manifest.digest })) }
}

/** A manifest-sized blob, from the cache if it is there and intact, else from the registry (then cached). */
async function manifestBytes(o: { registry: RegistryClient; cache: Cache }, ref: ImageRef, digest: Sha256): Promise<Buffer> {
  const cached = await readFile(o.cache.blobPath(digest)).catch(() => undefined)
  if (cached && Sha256.of(cached).equals(digest)) return cached
  if (cached) await o.cache.evict(digest)
  const got = await o.registry.manifest(ref, digest.oci, digest)
  await o.cache.store(digest, got.data)
  return got.data
}

/** An image config (a blob, not a manifest), from the cache or the registry's blob endpoint. */
async function configBytes(o: { registry: RegistryClient; cache: Cache }, ref: ImageRef, d: Descriptor): Promise<Buffer> {
  if (d.size > 4 << 20) throw new KaError('EREGISTRY', `${imageName(ref)}: an image config of ${d.size} bytes is not plausible`)
  const cached = await readFile(o.cache.blobPath(d.digest)).catch(() => undefined)
  if (cached && Sha256.of(cached).equals(d.digest)) return cached
  const partial = o.cache.partialPath(d.digest.hex)
  // Urgent: every layer waits on it, through the closed world, so it is not queued behind the files.
  const got = await o.registry.blob(ref, d.digest, d.size, partial, { urgent: true })
  await o.cache.commit(partial, got.digest, d.digest, `${imageName(ref)} config`)
  return readFile(o.cache.blobPath(d.digest))
}

/** The planned images as the bundle's layout names them. */
export const layoutImages = (planned: readonly PlannedImage[]): LayoutImage[] =>
  planned.map((p) => ({
    name: p.name,
    manifest: p.manifest.digest,
    mediaType: p.manifest.mediaType,
    size: p.manifest.size,
    ...(p.manifest.platform ? { platform: p.manifest.platform } : {}),
    ref: p.ref.tag ?? p.pinned.oci,
  }))

/**
 * The closed world, before any image blob is pulled: the lock holds every image the nodes will
 * ask for (kubeadm's for its version, the sandbox's, every container of the CNI's and add-ons' manifests), or the build
 * stops naming each missing one and who asks for it.
 */
export function checkClosedWorld(kubeadmTable: string, lock: Lock, manifests: readonly CarriedManifest[]): void {
  const { wants } = requiredImages(lock.kubernetes, kubeadmTable, manifests, lock.kubeadmImages)
  const missing = missingImages(
    lock.images.map((i) => i.ref),
    wants,
  )
  if (missing.length > 0) {
    throw new KaError(
      'ENOTPINNED',
      `the lock lacks ${missing.length} image${missing.length > 1 ? 's' : ''} the nodes will ask for: ${missing.map((m) => `${m.image} (${m.neededBy})`).join(', ')}; add them to the manifest's images and run \`bundle lock\``,
      { missing },
    )
  }
}
