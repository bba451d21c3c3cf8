import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { parseDelta } from '../bundle/delta.js'
import { KaError } from '../bundle/errors.js'
import { DELTA_FILE, IMAGE_INDEX, IMAGES_DIR, LOCK_FILE, packagePath, SIGNATURE_FILE, STATEMENT_FILE, SUMS_FILE } from '../bundle/layout.js'
import { checkSignature, keyFingerprint } from '../bundle/signing.js'
import { bundlePathOf } from './plan.js'
import { ImageLayout, type LayoutImage } from '../bundle/image-layout.js'
import { filesFor, installedBy, type Lock, packagesFor, parseLock } from '../bundle/lock.js'
import { listTar } from '../bundle/scan.js'

export interface Inspection {
  name: string
  kubernetes: string
  platform: string
  /** `base`: the file is not in this delta but in the old bundle it names. */
  files: { name: string; version: string; path: string; size?: number; sha256: string; url: string; base?: string }[]
  images: { ref: string; digest?: string; manifest?: string }[]
  /** Bytes under images/ (each shared layer counted once). */
  imageBytes: number
  /** OS packages per release: how many, how many of them the fleet's controller installs, and their bytes. */
  packages: { release: string; count: number; controller: number; bytes: number }[]
  /** A delta bundle: the old bundle it completes, and the files (and bytes, where DELTA.json gives them) left to it. */
  delta?: { base: string; files: number; bytes: number }
  /** Whether the bundle carries a signed statement, and (with a public key) whose signature holds. */
  signature: { signed: boolean; signedBy?: string }
  entries: number
  size: number
}

/** What a lock would build, without downloading: per platform, the files, the hosts, and the size known in advance. */
export interface LockPreview {
  lock: string
  kubernetes: string
  platforms: { platform: string; files: number; packages: number; knownBytes: number }[]
  images: number
  /** The hosts a build fetches from (before mirrors). */
  hosts: string[]
}

/**
 * What a bundle holds, read without unpacking: a tar is walked header by header (seeking
 * past file bodies), so inspecting a multi-GiB bundle reads kilobytes. It does not verify
 * anything; that is `bundle verify`.
 */
export async function inspectBundle(path: string, o: { publicKeyPem?: string } = {}): Promise<Inspection> {
  const st = await stat(path).catch(() => {
    throw new KaError('EUSAGE', `${path}: no such bundle; give a bundle .tar or an unpacked bundle folder`)
  })
  const sizes = new Map<string, number>()
  const small = new Map<string, Buffer>()
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
    for (const f of [SUMS_FILE, STATEMENT_FILE, SIGNATURE_FILE, DELTA_FILE]) {
      const b = await readFile(join(path, f)).catch(() => undefined)
      if (b) small.set(f, b)
    }
  } else {
    const listing = await listTar(path, [LOCK_FILE, IMAGE_INDEX, SUMS_FILE, STATEMENT_FILE, SIGNATURE_FILE, DELTA_FILE])
    for (const f of [SUMS_FILE, STATEMENT_FILE, SIGNATURE_FILE, DELTA_FILE]) {
      const b = listing.small.get(f)
      if (b) small.set(f, b)
    }
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
  const deltaText = small.get(DELTA_FILE)
  const delta = deltaText ? parseDelta(deltaText.toString('utf8')) : undefined
  const left = new Map(delta?.files.map((f) => [f.path, f]))
  const imageBytes = [...sizes].filter(([p]) => p.startsWith(`${IMAGES_DIR}/`)).reduce((a, [, n]) => a + n, 0)
  const files = await Promise.all(
    lock.files.map(async (f) => {
      const p = bundlePathOf(f)
      const from = left.get(p)
      const size = from ? from.size : (sizes.get(p) ?? (st.isDirectory() ? (await stat(join(path, p)).catch(() => undefined))?.size : undefined))
      if (st.isDirectory() && size && !from) total += size
      return {
        name: f.name,
        version: f.version,
        path: p,
        ...(size !== undefined ? { size } : {}),
        sha256: f.integrity.hex,
        url: f.url,
        ...(from ? { base: delta!.base } : {}),
      }
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
    packages: packagesOf(lock, (rel) => sizes.get(rel)),
    ...(delta ? { delta: { base: delta.base, files: delta.files.length, bytes: delta.files.reduce((n, f) => n + (f.size ?? 0), 0) } } : {}),
    signature: signatureOf(name, small, lockText, o.publicKeyPem),
    entries: st.isDirectory() ? files.length : sizes.size,
    size: st.isDirectory() ? total : st.size,
  }
}

/** OS packages per release, with their bytes as the bundle holds them (the lock's sizes when not listed). */
function packagesOf(lock: Lock, sizeOf: (rel: string) => number | undefined): Inspection['packages'] {
  const out = new Map<string, { count: number; controller: number; bytes: number }>()
  for (const p of lock.packages) {
    const r = out.get(p.release) ?? { count: 0, controller: 0, bytes: 0 }
    r.count++
    if (installedBy(p, 'controller')) r.controller++
    r.bytes += sizeOf(packagePath(p.release, p.file)) ?? p.size
    out.set(p.release, r)
  }
  return [...out].map(([release, r]) => ({ release, ...r }))
}

/** Whether there is a signature, and with a key whether it holds: inspect shows, verify judges the files. */
function signatureOf(name: string, small: Map<string, Buffer>, lockText: string, publicKeyPem?: string): Inspection['signature'] {
  const statement = small.get(STATEMENT_FILE)
  const signature = small.get(SIGNATURE_FILE)
  const signed = !!(statement && signature)
  if (!signed || !publicKeyPem) return { signed }
  checkSignature({
    statement,
    signature,
    sums: small.get(SUMS_FILE) ?? Buffer.alloc(0),
    lock: Buffer.from(lockText),
    publicKeyPem,
    keySource: 'the public key',
    name,
  })
  return { signed, signedBy: keyFingerprint(publicKeyPem) }
}

/** A lock as a preview of the bundles it builds: nothing is downloaded. */
export function previewLock(path: string, lock: Lock): LockPreview {
  return {
    lock: path,
    kubernetes: lock.kubernetes,
    platforms: lock.platforms.map((platform) => {
      const files = filesFor(lock, platform)
      const packages = packagesFor(lock, platform)
      return {
        platform,
        files: files.length,
        packages: packages.length,
        knownBytes: files.reduce((n, f) => n + (f.size ?? 0), 0) + packages.reduce((n, p) => n + p.size, 0),
      }
    }),
    images: lock.images.length,
    hosts: [
      ...new Set([
        ...lock.files.map((f) => new URL(f.url).host),
        ...lock.packages.map((p) => new URL(p.url).host),
        ...lock.images.map((im) => im.ref.split('/')[0]!),
      ]),
    ].sort(),
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
