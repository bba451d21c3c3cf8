import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { KaError } from '../bundle/errors.js'
import { filePath, IMAGE_INDEX, IMAGES_DIR, LOCK_FILE } from '../bundle/layout.js'
import { ImageLayout, type LayoutImage } from '../bundle/image-layout.js'
import { parseLock, type Lock } from '../bundle/lock.js'
import { listTar } from '../bundle/verify.js'

export interface Inspection {
  name: string
  kubernetes: string
  platform: string
  files: { name: string; version: string; path: string; size?: number; sha256: string; url: string }[]
  images: { ref: string; digest?: string; manifest?: string }[]
  /** Bytes under images/ (each shared layer counted once). */
  imageBytes: number
  entries: number
  size: number
}

/**
 * What a bundle holds, read without unpacking: a tar is walked header by header (seeking
 * past file bodies), so inspecting a multi-GiB bundle reads kilobytes. It does not verify
 * anything; that is `bundle verify`.
 */
export async function inspectBundle(path: string): Promise<Inspection> {
  const st = await stat(path).catch(() => {
    throw new KaError('EUSAGE', `${path}: no such bundle; give a bundle .tar or an unpacked bundle folder`)
  })
  const sizes = new Map<string, number>()
  let name: string
  let lockText: string
  let indexText: string | undefined
  let total = 0
  if (st.isDirectory()) {
    name = path.replace(/\/+$/, '').split('/').pop() ?? path
    lockText = await readFile(join(path, LOCK_FILE), 'utf8').catch(() => {
      throw new KaError('EVERIFY', `${path}: no ${LOCK_FILE}; this is not a bundle folder`)
    })
    indexText = await readFile(join(path, IMAGE_INDEX), 'utf8').catch(() => undefined)
  } else {
    const listing = await listTar(path, [LOCK_FILE, IMAGE_INDEX])
    indexText = listing.small.get(IMAGE_INDEX)?.toString('utf8')
    name = listing.top
    for (const [p, s] of listing.sizes) {
      sizes.set(p, s)
      total += s
    }
    const text = listing.small.get(LOCK_FILE)
    if (text === undefined) throw new KaError('EVERIFY', `${path}: no ${LOCK_FILE} inside; this is not a bundle`)
    lockText = text.toString('utf8')
  }
  const lock: Lock = parseLock(lockText, `${path}: ${LOCK_FILE}`)
  const manifests = new Map<string, string>()
  for (const m of indexImages(indexText)) if (m.name) manifests.set(m.name, m.manifest.oci)
  const imageBytes = [...sizes].filter(([p]) => p.startsWith(`${IMAGES_DIR}/`)).reduce((a, [, n]) => a + n, 0)
  const files = await Promise.all(
    lock.files.map(async (f) => {
      const p = filePath(f.file)
      const size = sizes.get(p) ?? (st.isDirectory() ? (await stat(join(path, p)).catch(() => undefined))?.size : undefined)
      if (st.isDirectory() && size) total += size
      return { name: f.name, version: f.version, path: p, ...(size !== undefined ? { size } : {}), sha256: f.integrity.hex, url: f.url }
    }),
  )
  return {
    name,
    kubernetes: lock.kubernetes,
    platform: lock.platforms.join(','),
    files,
    images: lock.images.map((im) => ({
      ref: im.ref,
      ...(im.digest ? { digest: im.digest.oci } : {}),
      ...(manifests.has(im.ref) ? { manifest: manifests.get(im.ref)! } : {}),
    })),
    imageBytes,
    entries: st.isDirectory() ? files.length : sizes.size,
    size: st.isDirectory() ? total : st.size,
  }
}

/** One small file of a bundle (tar or folder), by its path under the top folder. */
export async function readBundleFile(path: string, rel: string): Promise<string> {
  const st = await stat(path).catch(() => undefined)
  if (!st) throw new KaError('EUSAGE', `${path}: no such bundle; give a bundle .tar or an unpacked bundle folder`)
  const text = st.isDirectory() ? await readFile(join(path, rel), 'utf8').catch(() => undefined) : (await listTar(path, [rel])).small.get(rel)?.toString('utf8')
  if (text === undefined) throw new KaError('EVERIFY', `${path} has no ${rel}; it was built by an older kube-airgap`)
  return text
}

/** The images an index.json names, or none when it is not one (inspect shows; verify judges). */
function indexImages(text: string | undefined): LayoutImage[] {
  try {
    return text === undefined ? [] : ImageLayout.parseIndex(text)
  } catch {
    return []
  }
}
