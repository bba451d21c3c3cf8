import { readFile } from 'node:fs/promises'
import type { ManifestComponent } from './components.js'
import { join } from 'node:path'
import { requiredImages, type CarriedManifest, type RequiredImages } from './closed-world.js'
import { integrityError, Sha256 } from './digest.js'
import { KaError } from './errors.js'
import { filePath, IMAGE_INDEX, KUBEADM_TABLE_FILE, LOCK_FILE } from './layout.js'
import { isImageLock, manifestFiles, parseLock, type Lock, type LockedFile } from './lock.js'
import { ImageLayout, type LayoutImage } from './image-layout.js'
import type { Platform } from './platform.js'
import type { DeltaReport } from './verify.js'

export type BundleImage = LayoutImage

/** An unpacked bundle, as the installer reads it (after `verify` proved it). */
export interface Bundle {
  dir: string
  lock: Lock
  platform: Platform
  /** A locked file by component name: its lock entry and its path on disk. */
  file(name: string): { locked: LockedFile; path: string }
  images: BundleImage[]
  /** The bundle's OCI image layout (blob paths, the blobs of a manifest). */
  layout: ImageLayout
  required: RequiredImages
  /** Every image the node will ask for: kubeadm's, the sandbox's, the CNI's, the add-ons'. */
  needed: string[]
  /** The Kubernetes manifests the bundle carries (its CNI's, each add-on's), as upstream wrote them. */
  manifests: CarriedManifest[]
  /** One of them by component, or undefined when the bundle does not carry it. */
  manifest(component: ManifestComponent): string | undefined
  /** A small file of the bundle, read again and checked against what verification saw. */
  read(rel: string): Promise<string>
  /** Where a file of the bundle is on disk: in its folder, or for a delta, in the old bundle's. */
  path(rel: string): string
}

/**
 * The bundle the installer works from. With `verified` (every file's sha256 as verification
 * found it), every file read here is checked against it again: a file swapped on the stick
 * after verification is EINTEGRITY, not an input; `verifiedLock` is the lock verification
 * parsed from the bytes it hashed. Without them (--no-verify, development
 * only), files are read as they are.
 */
export async function openBundle(
  dir: string,
  verified?: ReadonlyMap<string, Sha256>,
  verifiedLock?: Lock,
  delta?: Pick<DeltaReport, 'dir' | 'paths'>,
): Promise<Bundle> {
  // A delta's files are read from its base, the old bundle verification found them in.
  const fromBase = new Set(delta?.dir ? delta.paths : [])
  const path = (rel: string): string => join(fromBase.has(rel) ? delta!.dir! : dir, rel)
  const read = async (rel: string): Promise<string> => {
    const bytes = await readFile(path(rel)).catch(() => {
      throw new KaError('EVERIFY', `${path(rel)} is missing: run ./install from an unpacked kube-airgap bundle`)
    })
    const want = verified?.get(rel)
    if (verified && !want) throw new KaError('EVERIFY', `${rel} is not part of the verified bundle`)
    if (want) {
      const got = Sha256.of(bytes)
      if (!got.equals(want)) throw integrityError(`${rel} (changed since verification)`, want, got, { path: path(rel) })
    }
    return bytes.toString('utf8')
  }
  // The lock verification parsed came from the bytes it hashed: it is not parsed twice.
  const lock = verifiedLock ?? parseLock(await read(LOCK_FILE), join(dir, LOCK_FILE))
  const file = (name: string) => {
    const locked = lock.files.find((f) => f.name === name)
    if (!locked) throw new KaError('EVERIFY', `this bundle carries no ${name}; build it from a lock that pins ${name}`)
    return { locked, path: path(filePath(locked.file)) }
  }
  const images = ImageLayout.parseIndex(await read(IMAGE_INDEX))
  const manifests = await Promise.all(manifestFiles(lock).map(async (f) => ({ component: f.name, text: await read(filePath(f.file)) })))
  // An image bundle adds images to a running node: what it needs is its own images, nothing of kubeadm's.
  const { kubeadm, pause, needed } = isImageLock(lock)
    ? { kubeadm: [], pause: '', needed: images.map((i) => i.name) }
    : requiredImages(lock.kubernetes, await read(KUBEADM_TABLE_FILE), manifests)
  const manifest = (component: ManifestComponent) => manifests.find((m) => m.component === component)?.text
  return {
    dir,
    lock,
    platform: lock.platforms[0]!,
    file,
    images,
    layout: new ImageLayout(path),
    required: { kubeadm, pause },
    needed,
    manifests,
    manifest,
    read,
    path,
  }
}
