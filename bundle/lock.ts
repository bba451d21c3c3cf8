import { CNI_MANIFEST, MANIFESTS, type Cni, type ManifestComponent } from './components.js'
import type { PackageFamily } from './os-release.js'
import { Sha256 } from './digest.js'
import { KaError } from './errors.js'
import { isSafeRelativePath, packagePath } from './layout.js'
import { PLATFORMS, parsePlatform, type Platform } from './platform.js'
import { imageName, parseImageRef } from './reference.js'

export const LOCK_VERSION = 1

/** One pinned upstream file. `platform` absent means the same bytes serve every platform. */
export interface LockedFile {
  name: string
  version: string
  platform?: Platform
  url: string
  integrity: Sha256
  size?: number
  /** The file's name under `files/` in the bundle. */
  file: string
}

/** One image, by canonical reference; `digest` is the index (or manifest) digest it is pinned to. */
export interface LockedImage {
  ref: string
  digest?: Sha256
  /**
   * In a bundle's own lock only: the manifest for the bundle's platform that the pinned
   * index resolved to, which `images/index.json` must name (verify checks it).
   */
  manifest?: Sha256
}

/** Who installs an OS package: every node (`./install`), or the machine that runs the fleet playbook (`./install controller`). */
export type PackageUse = 'node' | 'controller'
export const PACKAGE_USES: readonly PackageUse[] = ['node', 'controller']

/** One OS package (.deb or .rpm) for one distribution release and platform. */
export interface LockedPackage {
  release: string
  /** Who installs it; a lock leaves it out for the nodes' own packages (the only ones before the controller's). */
  for?: PackageUse[]
  /** How the release installs it: dpkg (.deb) or rpm (.rpm). Older locks leave it out: the file name's suffix says. */
  family?: PackageFamily
  platform: Platform
  name: string
  version: string
  url: string
  /** The same package where it stays once the distribution drops it: Debian's and Ubuntu's snapshot service, Rocky's and AlmaLinux's vault. A build fetches it there on 404. */
  snapshot?: string
  integrity: Sha256
  size: number
  /** The package file's name under `packages/<release>/`. */
  file: string
  /**
   * For a .deb: which `dpkg --install` of the set's it goes in (0 when left out): after its
   * pre-dependencies are configured, with its dependencies. rpm orders one transaction itself.
   */
  stage?: number
}

/** The images of kubeadm's own beyond kube-apiserver and the like: what `kubeadm config images list` names for the lock's version. */
export interface KubeadmRow {
  coredns: string
  etcd: string
  pause: string
}

export interface Lock {
  lockVersion: typeof LOCK_VERSION
  kubernetes: string
  platforms: Platform[]
  files: LockedFile[]
  images: LockedImage[]
  /** What the pinned kubeadm listed (or the committed table had) for this version, when the lock recorded it. */
  kubeadmImages?: KubeadmRow
  packages: LockedPackage[]
}

type Json = Record<string, unknown>

class Reader {
  constructor(private readonly source: string) {}

  fail(field: string, problem: string): never {
    throw new KaError('ELOCK', `${this.source}: ${field}: ${problem}; fix it or run \`bundle lock\` again`, { field })
  }

  object(v: unknown, field: string, known: readonly string[]): Json {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(field, 'must be an object')
    for (const key of Object.keys(v)) if (!known.includes(key)) this.fail(`${field}.${key}`.replace(/^\./, ''), 'unknown field')
    return v as Json
  }

  string(o: Json, key: string, field: string, optional = false): string | undefined {
    const v = o[key]
    if (v === undefined && optional) return undefined
    if (v === undefined) this.fail(field, 'missing')
    if (typeof v !== 'string' || v.length === 0) this.fail(field, 'must be a non-empty string')
    return v
  }

  /** An optional `sha256:<hex>` field. */
  digest(o: Json, key: string, field: string): Sha256 | undefined {
    const text = this.string(o, key, field, true)
    if (text === undefined) return undefined
    try {
      return Sha256.fromOci(text)
    } catch {
      return this.fail(field, `not a sha256 digest (sha256:<hex>): ${JSON.stringify(text)}`)
    }
  }

  /**
   * A download URL: http(s), parseable, with no credentials and no query string. A lock is
   * copied into every bundle and its SBOM: secrets never go in it (a proxy or --mirror
   * carries access to a private source instead).
   */
  url(o: Json, key: string, field: string): string {
    const text = this.string(o, key, field)!
    const bad = urlProblem(text)
    if (bad) this.fail(field, bad)
    return text
  }

  /** A name or version: printable text only (a lock can come from anywhere). */
  text(o: Json, key: string, field: string): string {
    const v = this.string(o, key, field)!
    if (/[\u0000-\u001f\u007f-\u009f]/.test(v)) this.fail(field, `holds control characters: ${JSON.stringify(v)}`)
    return v
  }

  array(o: Json, key: string, field: string): unknown[] {
    const v = o[key]
    if (v === undefined) this.fail(field, 'missing')
    if (!Array.isArray(v)) this.fail(field, 'must be an array')
    return v
  }
}

const VERSION = /^\d+\.\d+\.\d+$/

/**
 * What is wrong with a download URL for a lock or manifest, if anything: it must be http(s),
 * parseable, with no credentials and no query string or fragment. A lock is copied into
 * every bundle and its SBOM: secrets never go in it (a proxy or --mirror carries access to a
 * private source instead).
 */
export function urlProblem(text: string): string | undefined {
  let u: URL
  try {
    u = new URL(text)
  } catch {
    return `not a URL: ${JSON.stringify(text)}`
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return 'must be an http(s) URL'
  if (u.username || u.password)
    return 'holds credentials (user:password@); a lock goes into every bundle: reach a private source through --mirror or a proxy instead'
  if (u.search || u.hash || text.includes('?') || text.includes('#'))
    return 'has a query string or fragment (tokens live there); a lock goes into every bundle: use a plain URL, with --mirror for a private source'
  if (/%(?![0-9a-fA-F]{2})/.test(text)) return `has a malformed %-escape: ${JSON.stringify(text)}`
  return undefined
}

/**
 * A lock of images alone: no files (so no installer, no runtime), no OS packages. It builds an
 * image bundle, which `./install images` imports into a running node; its Kubernetes is ''
 * when its manifest named none.
 */
export const isImageLock = (lock: Pick<Lock, 'files' | 'packages'>): boolean => lock.files.length === 0 && lock.packages.length === 0

/** The Kubernetes manifests a lock carries (its CNI's, each add-on's), in the order of MANIFESTS. */
export const manifestFiles = (lock: { files: readonly LockedFile[] }): (LockedFile & { name: ManifestComponent })[] =>
  (Object.keys(MANIFESTS) as ManifestComponent[]).flatMap((name) =>
    lock.files.filter((f): f is LockedFile & { name: ManifestComponent } => f.name === name).slice(0, 1),
  )

/** The pod network a lock's bundle installs: Flannel when it carries Flannel's manifest, Calico otherwise. */
export const cniOf = (lock: { files: readonly LockedFile[] }): Cni => (lock.files.some((f) => f.name === CNI_MANIFEST.flannel) ? 'flannel' : 'calico')

/** The images of a lock, alone (`bundle build --images-only`). */
export const imagesOf = (lock: Lock): Lock => ({ ...lock, files: [], packages: [] })

/** Parses and checks a lock; every problem names its field. Never returns a half-valid lock. */
export function parseLock(text: string, source = 'bundle.lock.json'): Lock {
  const r: Reader = new Reader(source)
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (e) {
    throw new KaError('ELOCK', `${source}: not valid JSON (${(e as Error).message}); fix it or run \`bundle lock\` again`)
  }
  const top = r.object(raw, '', ['lockVersion', 'kubernetes', 'platforms', 'files', 'images', 'kubeadmImages', 'packages'])
  if (top.lockVersion !== LOCK_VERSION) r.fail('lockVersion', `must be ${LOCK_VERSION}, found ${JSON.stringify(top.lockVersion)}`)
  // A lock of images alone (a manifest with only images:) names no Kubernetes.
  const kubernetes =
    top.kubernetes === undefined && top.files !== undefined && (top.files as unknown[]).length === 0 ? '' : r.string(top, 'kubernetes', 'kubernetes')!
  if (kubernetes !== '' && !VERSION.test(kubernetes)) r.fail('kubernetes', `must be a version like 1.29.3, found ${JSON.stringify(kubernetes)}`)

  const platforms = r.array(top, 'platforms', 'platforms').map((p, i) => {
    if (typeof p !== 'string') r.fail(`platforms[${i}]`, 'must be a string')
    try {
      return parsePlatform(p, `platforms[${i}]`)
    } catch {
      return r.fail(`platforms[${i}]`, `unknown platform ${JSON.stringify(p)} (known: ${PLATFORMS.join(', ')})`)
    }
  })
  if (platforms.length === 0) r.fail('platforms', 'must name at least one platform')

  const files = r.array(top, 'files', 'files').map((f, i) => lockedFile(r, f, `files[${i}]`, platforms))
  uniqueFileNames(r, files, platforms)
  const images = r.array(top, 'images', 'images').map((im, i) => lockedImage(r, im, `images[${i}]`))
  const packages = (top.packages === undefined ? [] : r.array(top, 'packages', 'packages')).map((pk, i) => lockedPackage(r, pk, `packages[${i}]`, platforms))
  const seen = new Map<string, number>()
  packages.forEach((p, i) => {
    const key = `${p.platform} ${packagePath(p.release, p.file)}`
    const prev = seen.get(key)
    if (prev !== undefined) r.fail(`packages[${i}].file`, `${JSON.stringify(p.file)} is also packages[${prev}].file for ${p.release} ${p.platform}`)
    seen.set(key, i)
  })
  let kubeadmImages: KubeadmRow | undefined
  if (top.kubeadmImages !== undefined) {
    const k = r.object(top.kubeadmImages, 'kubeadmImages', ['coredns', 'etcd', 'pause'])
    const tag = (key: string) => {
      const v = r.string(k, key, `kubeadmImages.${key}`)!
      if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(v)) r.fail(`kubeadmImages.${key}`, `${JSON.stringify(v)} is not an image tag`)
      return v
    }
    kubeadmImages = { coredns: tag('coredns'), etcd: tag('etcd'), pause: tag('pause') }
  }
  return { lockVersion: LOCK_VERSION, kubernetes, platforms, files, images, ...(kubeadmImages ? { kubeadmImages } : {}), packages }
}

function lockedFile(r: Reader, f: unknown, at: string, platforms: readonly Platform[]): LockedFile {
  const o = r.object(f, at, ['name', 'version', 'platform', 'url', 'integrity', 'size', 'file'])
  const platformText = r.string(o, 'platform', `${at}.platform`, true)
  let platform: Platform | undefined
  if (platformText !== undefined) {
    if (!(PLATFORMS as readonly string[]).includes(platformText)) r.fail(`${at}.platform`, `unknown platform ${JSON.stringify(platformText)}`)
    if (!platforms.includes(platformText as Platform)) r.fail(`${at}.platform`, `${platformText} is not in platforms`)
    platform = platformText as Platform
  }
  const url = r.url(o, 'url', `${at}.url`)
  const integrityText = r.string(o, 'integrity', `${at}.integrity`)!
  let integrity: Sha256
  try {
    integrity = Sha256.fromSri(integrityText)
  } catch {
    r.fail(`${at}.integrity`, `not a sha256 integrity string (sha256-<base64>): ${JSON.stringify(integrityText)}`)
  }
  const size = o.size
  if (size !== undefined && (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)) r.fail(`${at}.size`, 'must be a whole number of bytes')
  const file = r.string(o, 'file', `${at}.file`)!
  if (!isSafeRelativePath(file) || file.includes('/')) r.fail(`${at}.file`, `must be a plain file name, found ${JSON.stringify(file)}`)
  const out: LockedFile = { name: r.text(o, 'name', `${at}.name`), version: r.text(o, 'version', `${at}.version`), url, integrity, file }
  if (platform) out.platform = platform
  if (size !== undefined) out.size = size as number
  return out
}

/** A file name is the file's path in the bundle: one per platform. */
function uniqueFileNames(r: Reader, files: readonly LockedFile[], platforms: readonly Platform[]): void {
  for (const p of platforms) {
    const seen = new Map<string, number>()
    files.forEach((f, i) => {
      if (f.platform && f.platform !== p) return
      const prev = seen.get(f.file)
      if (prev !== undefined) r.fail(`files[${i}].file`, `${JSON.stringify(f.file)} is also files[${prev}].file for ${p}`)
      seen.set(f.file, i)
    })
  }
}

function lockedImage(r: Reader, im: unknown, at: string): LockedImage {
  const o = r.object(im, at, ['ref', 'digest', 'manifest'])
  const ref = r.string(o, 'ref', `${at}.ref`)!
  let canonical: string | undefined
  try {
    canonical = ref.includes('@') ? undefined : imageName(parseImageRef(ref))
  } catch {
    canonical = undefined
  }
  if (canonical !== ref)
    r.fail(
      `${at}.ref`,
      `must be a canonical reference like registry.k8s.io/pause:3.9 or docker.io/calico/node:v3.28.0 (the digest goes in "digest"), found ${JSON.stringify(ref)}`,
    )
  const digest = r.digest(o, 'digest', `${at}.digest`)
  const manifest = r.digest(o, 'manifest', `${at}.manifest`)
  if (manifest && !digest) r.fail(`${at}.manifest`, 'only an image pinned by "digest" can name its platform manifest')
  return { ref, ...(digest ? { digest } : {}), ...(manifest ? { manifest } : {}) }
}

function lockedPackage(r: Reader, pk: unknown, at: string, platforms: readonly Platform[]): LockedPackage {
  const o = r.object(pk, at, ['release', 'for', 'family', 'platform', 'name', 'version', 'url', 'snapshot', 'integrity', 'size', 'file', 'stage'])
  const platform = r.string(o, 'platform', `${at}.platform`)!
  if (!platforms.includes(platform as Platform)) r.fail(`${at}.platform`, `${platform} is not in platforms`)
  const release = r.string(o, 'release', `${at}.release`)!
  if (!/^[a-z]+-[0-9][0-9a-z.]*$|^kylin-v10sp[0-9]$/.test(release))
    r.fail(`${at}.release`, `must be like ubuntu-22.04 or rocky-9, found ${JSON.stringify(release)}`)
  const file = r.string(o, 'file', `${at}.file`)!
  if (!isSafeRelativePath(file) || file.includes('/') || !/\.(deb|rpm)$/.test(file))
    r.fail(`${at}.file`, `must be a .deb or .rpm file name, found ${JSON.stringify(file)}`)
  let integrity: Sha256
  try {
    integrity = Sha256.fromSri(r.string(o, 'integrity', `${at}.integrity`)!)
  } catch {
    return r.fail(`${at}.integrity`, 'not a sha256 integrity string (sha256-<base64>)')
  }
  if (typeof o.size !== 'number' || !Number.isSafeInteger(o.size) || o.size < 0) r.fail(`${at}.size`, 'must be a whole number of bytes')
  const snapshot = o.snapshot === undefined ? undefined : r.url(o, 'snapshot', `${at}.snapshot`)
  const family = r.string(o, 'family', `${at}.family`, true)
  if (family !== undefined && family !== file.slice(-3))
    r.fail(`${at}.family`, `must be ${file.slice(-3)} for ${JSON.stringify(file)}, found ${JSON.stringify(family)}`)
  const stage = o.stage
  if (stage !== undefined && (typeof stage !== 'number' || !Number.isSafeInteger(stage) || stage < 0 || stage > 99))
    r.fail(`${at}.stage`, `must be a whole number from 0 to 99, found ${JSON.stringify(stage)}`)
  const uses = o.for === undefined ? undefined : r.array(o, 'for', `${at}.for`)
  if (uses && (!uses.length || !uses.every((u, i) => PACKAGE_USES.includes(u as PackageUse) && uses.indexOf(u) === i)))
    r.fail(`${at}.for`, `must list who installs it, once each: ${PACKAGE_USES.join(', ')}; found ${JSON.stringify(uses)}`)
  return {
    release,
    ...(uses ? { for: uses as PackageUse[] } : {}),
    ...(family ? { family: family as PackageFamily } : {}),
    platform: platform as Platform,
    name: r.text(o, 'name', `${at}.name`),
    version: r.text(o, 'version', `${at}.version`),
    url: r.url(o, 'url', `${at}.url`),
    ...(snapshot ? { snapshot } : {}),
    integrity,
    size: o.size as number,
    file,
    ...(stage ? { stage } : {}),
  }
}

/** Whether `use` installs the package (a package whose lock entry names no one is the nodes'). */
export const installedBy = (p: LockedPackage, use: PackageUse): boolean => (p.for ?? ['node']).includes(use)

/** The OS packages a bundle for `platform` carries, for the chosen releases (all when none are named). */
export const packagesFor = (lock: Lock, platform: Platform, releases?: readonly string[]): LockedPackage[] =>
  lock.packages.filter((p) => p.platform === platform && (!releases || releases.includes(p.release)))

/** The files a bundle for `platform` carries: that platform's own and the shared ones. */
export const filesFor = (lock: Lock, platform: Platform): LockedFile[] => lock.files.filter((f) => f.platform === undefined || f.platform === platform)

/** The lock as one bundle carries it: its platform only (and the chosen releases' packages). */
export function reduceLock(lock: Lock, platform: Platform, releases?: readonly string[]): Lock {
  return { ...lock, platforms: [platform], files: filesFor(lock, platform), packages: packagesFor(lock, platform, releases) }
}

/** Stable JSON: fixed key order, two-space indent, newline at the end. */
export function serializeLock(lock: Lock): string {
  const files = lock.files.map((f) => ({
    name: f.name,
    version: f.version,
    ...(f.platform ? { platform: f.platform } : {}),
    url: f.url,
    integrity: f.integrity.sri,
    ...(f.size !== undefined ? { size: f.size } : {}),
    file: f.file,
  }))
  const images = lock.images.map((im) => ({
    ref: im.ref,
    ...(im.digest ? { digest: im.digest.oci } : {}),
    ...(im.manifest ? { manifest: im.manifest.oci } : {}),
  }))
  const packages = lock.packages.map((p) => ({
    release: p.release,
    ...(p.for ? { for: p.for } : {}),
    ...(p.family ? { family: p.family } : {}),
    platform: p.platform,
    name: p.name,
    version: p.version,
    url: p.url,
    ...(p.snapshot ? { snapshot: p.snapshot } : {}),
    integrity: p.integrity.sri,
    size: p.size,
    file: p.file,
    ...(p.stage ? { stage: p.stage } : {}),
  }))
  return `${JSON.stringify({ lockVersion: lock.lockVersion, ...(lock.kubernetes ? { kubernetes: lock.kubernetes } : {}), platforms: lock.platforms, files, images, ...(lock.kubeadmImages ? { kubeadmImages: lock.kubeadmImages } : {}), ...(packages.length ? { packages } : {}) }, null, 2)}\n`
}
