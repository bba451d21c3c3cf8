import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { kubeadmImages, manifestImages, type RequiredImages } from './core/closed-world.js'
import { integrityError, Sha256 } from './core/digest.js'
import { KaError } from './core/errors.js'
import { filePath, IMAGE_INDEX, KUBEADM_TABLE_FILE, LOCK_FILE } from './core/layout.js'
import { parseLock, type Lock, type LockedFile } from './core/lock.js'
import { ANNOTATION_IMAGE_NAME } from './core/oci.js'
import type { Platform } from './core/platform.js'

export interface BundleImage {
  name: string
  /** The platform manifest digest the bundle carries (what `ctr images ls` shows). */
  manifest: string
}

/** An unpacked bundle, as the installer reads it (after `verify` proved it). */
export interface Bundle {
  dir: string
  lock: Lock
  platform: Platform
  /** A locked file by component name: its lock entry and its path on disk. */
  file(name: string): { locked: LockedFile; path: string }
  images: BundleImage[]
  required: RequiredImages
  /** Every image the node will ask for: kubeadm's, the sandbox's, Calico's. */
  needed: string[]
  /** A small file of the bundle, read again and checked against what verification saw. */
  read(rel: string): Promise<string>
}

/**
 * The bundle the installer works from. With `verified` (every file's sha256 as verification
 * found it), every file read here is checked against it again: a file swapped on the stick
 * after verification is EINTEGRITY, not an input. Without it (--no-verify, development
 * only), files are read as they are.
 */
export async function openBundle(dir: string, verified?: ReadonlyMap<string, Sha256>): Promise<Bundle> {
  const read = async (rel: string): Promise<string> => {
    const bytes = await readFile(join(dir, rel)).catch(() => {
      throw new KaError('EVERIFY', `${join(dir, rel)} is missing: run ./install from an unpacked kube-airgap bundle`)
    })
    const want = verified?.get(rel)
    if (verified && !want) throw new KaError('EVERIFY', `${rel} is not part of the verified bundle`)
    if (want) {
      const got = Sha256.of(bytes)
      if (!got.equals(want)) throw integrityError(`${rel} (changed since verification)`, want, got, { path: join(dir, rel) })
    }
    return bytes.toString('utf8')
  }
  const lock = parseLock(await read(LOCK_FILE), join(dir, LOCK_FILE))
  const file = (name: string) => {
    const locked = lock.files.find((f) => f.name === name)
    if (!locked) throw new KaError('EVERIFY', `this bundle carries no ${name}; build it from a lock that pins ${name}`)
    return { locked, path: join(dir, filePath(locked.file)) }
  }
  const index = JSON.parse(await read(IMAGE_INDEX)) as { manifests: { digest: string; annotations?: Record<string, string> }[] }
  const images = index.manifests.map((m) => ({ name: m.annotations?.[ANNOTATION_IMAGE_NAME] ?? '', manifest: m.digest }))
  const required = kubeadmImages(lock.kubernetes, await read(KUBEADM_TABLE_FILE))
  const calico = lock.files.find((f) => f.name === 'calico-manifest')
  const needed = [...new Set([...required.kubeadm, ...(calico ? manifestImages(await read(filePath(calico.file))) : [])])]
  return { dir, lock, platform: lock.platforms[0]!, file, images, required, needed, read }
}
