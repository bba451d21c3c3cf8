import { randomBytes } from 'node:crypto'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { readSuite, type AptOptions } from '../packages/apt.js'
import { closure, installStages, newest, type DebPackage } from '../packages/debian.js'
import { releaseNamed, rpmArch, type DebRelease, type RpmRelease } from '../packages/releases.js'
import { readRepo, type DnfOptions } from '../packages/dnf.js'
import { newestRpms, rpmClosure } from '../packages/rpm.js'
import { COMPATIBILITY, KEYRING_DIR, KUBEADM_TABLE } from '../package-files.js'
import { kubeadmImages, manifestImageRefs } from '../../bundle/closed-world.js'
import { Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import { LOCK_VERSION, manifestFiles, type Lock, type LockedFile, type LockedPackage, type PackageUse } from '../../bundle/lock.js'
import { checkFit, checkKubeadmAnswer } from './fit.js'
import { kubeadmAnswer, precheckKubeadm } from './kubeadm.js'
import { archOf, type Platform } from '../../bundle/platform.js'
import type { FetchOptions } from '../options.js'
import { DockerCredentials } from '../images/credentials.js'
import { imageName, parseImageRef } from '../../bundle/reference.js'
import { RegistryClient } from '../images/registry.js'
import { COMPONENTS, componentNamed, FOLLOWS_KUBERNETES, pickChecksum, urlBaseName, type Component } from './components.js'
import { C } from '../../bundle/components.js'
import { Connections } from '../download/connections.js'
import { checkHosts, hostsFor } from '../download/hosts.js'
import { download } from '../download/download.js'
import { applyMirrors, fetchText } from '../download/http.js'
import type { Manifest, PackageRelease } from './manifest.js'
import { silentProgress } from '../progress.js'

export interface LockOptions extends FetchOptions {
  /** The programs that unpack .zst and .bz2 repodata (RPM releases). */
  zstd: string
  bzip2: string
  /** The archive keyrings the release table names (manifests/keyrings/). */
  keyringDir: string
  /** Keyrings the user adds (a mirror that signs its own indexes): trusted as well. */
  keyrings: readonly string[]
  gpgv: string
  xz: string
  /** The kubeadm image table: the answer where the pinned kubeadm cannot run here, and a cache of what it said. */
  kubeadmTable: string
  /** Ask the pinned kubeadm for its images (default); false: the table answers (--no-kubeadm). */
  runKubeadm?: boolean
  /** Fail unless the table agrees with what the pinned kubeadm lists (--check-images). */
  checkImages?: boolean
  /** manifests/compatibility.yaml: a manifest whose components do not fit together is refused before anything is fetched. */
  compatibility: string
}

export interface Want {
  name: string
  version: string
  platform?: Platform
  url: string
  checksumUrl?: string
  sha256?: Sha256
}

/**
 * Turns a manifest into a lock: for every file, its canonical URL and its sha256, read from
 * the checksum file upstream publishes beside it when there is one, else by downloading and
 * hashing the file (which then sits in the cache, so the first build does not fetch it
 * again); for every image, the digest its tag names. Mirrors only change where bytes come
 * from: the lock records canonical URLs and names.
 */
export async function createLock(manifest: Manifest, opts: Partial<LockOptions> & Pick<LockOptions, 'cache' | 'http'>): Promise<Lock> {
  const o: LockOptions = {
    mirrors: [],
    registryMirrors: [],
    concurrency: 8,
    progress: silentProgress,
    credentials: opts.credentials ?? DockerCredentials.fromEnv(),
    keyringDir: KEYRING_DIR,
    keyrings: [],
    gpgv: 'gpgv',
    xz: 'xz',
    zstd: 'zstd',
    bzip2: 'bzip2',
    kubeadmTable: KUBEADM_TABLE,
    compatibility: COMPATIBILITY,
    ...opts,
  }
  // --concurrency means what it means in bundle build: connections of one budget, which every
  // request (checksum files, files hashed by download, package indexes, tags) holds while it runs.
  o.http = { ...o.http, connections: o.http.connections ?? new Connections(o.concurrency, o.http.segmentBytes) }
  const tableText = await readFile(o.kubeadmTable, 'utf8')
  if (manifest.kubernetes) {
    await checkFit(manifest, o)
    precheckKubeadm(manifest.kubernetes, manifest.platforms, tableText, o)
  }
  const wants = wantsOf(manifest)
  const registry = new RegistryClient({ http: o.http, mirrors: o.registryMirrors, credentials: o.credentials })
  // Every host the lock will ask, checked at once before any work: a user behind a firewall
  // learns every unreachable one in one line, as bundle build says it.
  await checkHosts(hostsFor(lockHosts(manifest, wants, registry), o.mirrors), o.http, o.mirrorsFile)
  const checksumFiles = new Map<string, Promise<string | undefined>>()
  const lockFile = async (w: Want): Promise<LockedFile> => {
    const file = urlBaseName(w.url)
    const base: LockedFile = {
      name: w.name,
      version: w.version,
      ...(w.platform ? { platform: w.platform } : {}),
      url: w.url,
      integrity: w.sha256 ?? Sha256.of(''),
      file,
    }
    if (w.sha256) return base
    if (w.checksumUrl) {
      const url = applyMirrors(w.checksumUrl, o.mirrors)
      let text = checksumFiles.get(url)
      if (!text) {
        text = fetchText(`checksum of ${label(w)}`, url, o.http)
        checksumFiles.set(url, text)
      }
      const hex = pickChecksum((await text) ?? '', file)
      if (hex) return { ...base, integrity: Sha256.fromHex(hex) }
      o.progress.note(`note     ${label(w)}: no usable checksum at ${w.checksumUrl}; downloading to hash it`)
    }
    const { digest, size } = await hashByDownload(w, o)
    return { ...base, integrity: digest, size }
  }
  const files = await Promise.all(wants.map(lockFile))

  // kubeadm's own images for the version, from the pinned kubeadm (or the table): those the
  // manifest does not name are pinned with the rest.
  const kubeadm = manifest.kubernetes ? await kubeadmAnswer(manifest.kubernetes, files, tableText, o) : undefined
  if (kubeadm) checkKubeadmAnswer(manifest, kubeadm, o)
  // The etcd clients follow kubeadm's etcd when the manifest names none.
  if (kubeadm && !manifest.components.has(C.etcd)) {
    const etcd = componentNamed(C.etcd)!
    const version = kubeadm.row.etcd.replace(/-\d+$/, '')
    files.push(...(await Promise.all(manifest.platforms.map((p) => lockFile(componentWant(etcd, version, p, p))))))
  }
  const wanted = [...manifest.images]
  for (const ref of kubeadm ? kubeadmImages(manifest.kubernetes, tableText, kubeadm.row).kubeadm : [])
    if (!wanted.some((w) => w.ref === ref)) wanted.push({ ref })
  // Every image the CNI's and add-ons' manifests name is pinned too (with the digest the manifest gives, if any).
  for (const ref of await manifestImageWants(files, o)) if (!wanted.some((w) => w.ref === ref.ref)) wanted.push(ref)

  // Each image is pinned to what its tag names now: the multi-platform index, so one lock
  // serves every platform. A digest the manifest gives is kept as it is.
  const images = await Promise.all(
    wanted.map(async (im) => {
      if (im.digest) return { ref: im.ref, digest: im.digest }
      const top = await registry.resolve(parseImageRef(im.ref))
      o.progress.note(`resolved ${im.ref}@${top.digest.oci}`)
      return { ref: im.ref, digest: top.digest }
    }),
  )
  const packages = await lockAllPackages(manifest, o)
  return {
    lockVersion: LOCK_VERSION,
    kubernetes: manifest.kubernetes,
    platforms: manifest.platforms,
    files,
    images,
    ...(kubeadm ? { kubeadmImages: kubeadm.row } : {}),
    packages,
  }
}

/** The images the locked manifests name, from their bytes in the cache (read as the lock hashed them); a manifest pinned by checksum alone is not read. */
async function manifestImageWants(files: readonly LockedFile[], o: LockOptions): Promise<{ ref: string; digest?: Sha256 }[]> {
  const out: { ref: string; digest?: Sha256 }[] = []
  for (const f of manifestFiles({ files })) {
    if (!(await o.cache.has(f.integrity))) continue
    for (const x of manifestImageRefs(await readFile(o.cache.blobPath(f.integrity), 'utf8'))) {
      const parsed = parseImageRef(x)
      out.push(parsed.digest ? { ref: imageName(parsed), digest: parsed.digest } : { ref: imageName(parsed) })
    }
  }
  return out
}

/** What the lock will fetch, by URL: checksum files or the files themselves, tags, every package archive of every set. */
function lockHosts(manifest: Manifest, wants: readonly Want[], registry: RegistryClient): { url: string; what: string }[] {
  const out = wants.filter((w) => !w.sha256).map((w) => ({ url: w.checksumUrl ?? w.url, what: label(w) }))
  for (const im of manifest.images) if (!im.digest) out.push({ url: `${registry.endpoint(parseImageRef(im.ref)).base}/v2/`, what: im.ref })
  for (const { id, platform } of packageSets(manifest)) {
    const release = releaseNamed(id)!
    const arch = archOf(platform)
    const urls =
      release.family === 'rpm'
        ? release.repos.map((repo) => repo.url(arch))
        : [release.archive(arch), ...release.suites.map((s) => s.archive?.(arch) ?? release.archive(arch))]
    for (const url of urls) out.push({ url, what: `${id} packages` })
  }
  return out
}

/** One release on one platform, and the package names each of its users (the nodes, the controller) installs there. */
interface PackageSet {
  id: string
  platform: Platform
  wants: [PackageUse, readonly string[]][]
}

/** Every (release, platform) the manifest's packages need, once, with who wants what there. */
function packageSets(manifest: Manifest): PackageSet[] {
  const sets: PackageSet[] = []
  const users: [PackageUse, PackageRelease[], readonly string[]][] = [['node', manifest.packages.releases, manifest.packages.names]]
  if (manifest.packages.controller) users.push(['controller', manifest.packages.controller.releases, manifest.packages.controller.names])
  for (const platform of manifest.platforms)
    for (const [use, releases, names] of users)
      for (const r of releases.filter((r) => !r.platforms || r.platforms.includes(platform))) {
        const set = sets.find((s) => s.id === r.id && s.platform === platform) ?? sets[sets.push({ id: r.id, platform, wants: [] }) - 1]!
        set.wants.push([use, names])
      }
  return sets
}

/** Every OS package the manifest asks for, each (release, platform) read once for the nodes and the controller. */
export const lockAllPackages = async (manifest: Manifest, o: LockOptions): Promise<LockedPackage[]> =>
  (await Promise.all(packageSets(manifest).map((set) => lockPackages(set, o)))).flat()

/** One release's packages for one platform, read the way its own package manager reads its archive. */
async function lockPackages(set: PackageSet, o: LockOptions): Promise<LockedPackage[]> {
  const release = releaseNamed(set.id)!
  return release.family === 'rpm' ? lockRpms(release, set, o) : lockDebs(release, set, o)
}

/**
 * Each user's closure, then one entry per file: a package both the nodes and the controller
 * need is carried once, for both. The nodes' entries say nothing (as in locks before the controller's).
 */
function closures<P extends { name: string }>(set: PackageSet, close: (names: readonly string[]) => P[], where: string, o: LockOptions): [P, PackageUse[]][] {
  const chosen = new Map<string, [P, PackageUse[]]>()
  for (const [use, names] of set.wants) {
    const field = use === 'node' ? 'packages.names' : `packages.${use}.names`
    let mine: P[]
    try {
      mine = close(names)
    } catch (e) {
      throw new KaError('ENOTPINNED', `${set.id} ${set.platform}: ${(e as Error).message}; check ${field}, or ${where} and --mirror`)
    }
    o.progress.note(`packages ${set.id} ${set.platform}${use === 'node' ? '' : ` (${use})`}: ${mine.length} (${mine.map((p) => p.name).join(', ')})`)
    for (const p of mine) (chosen.get(p.name) ?? chosen.set(p.name, [p, []]).get(p.name)!)[1].push(use)
  }
  return [...chosen.values()]
}

const usedBy = (uses: PackageUse[]) => (uses.length === 1 && uses[0] === 'node' ? {} : { for: uses })

/**
 * An RPM release's packages for one platform: every repository's repodata, read the way
 * dnf reads it with repo_gpgcheck (signed repomd.xml, primary.xml checked against it:
 * builder/packages/dnf.ts), the newest of each package, the closure of `names` (in the release's
 * spelling) beyond what its core group has, each .rpm pinned by the sha256 the signed
 * repodata gives.
 */
async function lockRpms(release: RpmRelease, set: PackageSet, o: LockOptions): Promise<LockedPackage[]> {
  const { platform } = set
  const arch = archOf(platform)
  if (!release.arches.includes(arch))
    throw new KaError(
      'EUSAGE',
      `${release.id} publishes no ${arch} packages; limit it to ${release.arches.map((a) => `linux/${a}`).join(', ')} in packages.releases`,
    )
  const keyrings = [...(release.keyring ? [join(o.keyringDir, release.keyring)] : []), ...o.keyrings]
  if (!keyrings.length) throw new KaError('EUSAGE', `${release.id}: ${release.keyHelp ?? 'no archive key is known for it; pass one with --keyring'}`)
  const dnf: DnfOptions = { cache: o.cache, http: o.http, mirrors: o.mirrors, keyrings, gpgv: o.gpgv, xz: o.xz, zstd: o.zstd, bzip2: o.bzip2 }
  const repos = await Promise.all(release.repos.map((r) => readRepo(release, r, arch, dnf)))
  const available = newestRpms(
    repos.map((r) => r.packages),
    rpmArch(arch),
    {
      visible: new Set(repos.flatMap((r) => [...(r.modules?.visible ?? [])])),
      names: new Set(repos.flatMap((r) => [...(r.modules?.names ?? [])])),
    },
  )
  const core = repos.flatMap((r) => r.core)
  const chosen = closures(
    set,
    (names) =>
      rpmClosure(
        names.map((n) => release.names[n] ?? n),
        available,
        core,
      ),
    'the repositories',
    o,
  )
  const vaults = new Map(repos.map((r) => [r.base, r.vault]))
  return chosen.map(([p, uses]) => ({
    release: release.id,
    ...usedBy(uses),
    family: 'rpm' as const,
    platform,
    name: p.name,
    version: p.evr,
    url: `${p.repo}/${p.href}`,
    ...(vaults.get(p.repo) ? { snapshot: `${vaults.get(p.repo)}/${p.href}` } : {}),
    integrity: Sha256.fromHex(p.sha256),
    size: p.size,
    file: p.href.split('/').pop()!,
  }))
}

/**
 * One Debian-family release's packages for one platform: every suite's index, read the way apt reads it
 * (signed Release, indexes checked against it: builder/packages/apt.ts), the newest version of each
 * package, the closure of `names` beyond what every installation has, each .deb pinned by
 * the sha256 the signed index gives, with the snapshot URL that keeps it after the pool
 * drops it.
 */
async function lockDebs(release: DebRelease, set: PackageSet, o: LockOptions): Promise<LockedPackage[]> {
  const { id } = release
  const { platform } = set
  const arch = archOf(platform)
  const apt: AptOptions = {
    cache: o.cache,
    http: o.http,
    mirrors: o.mirrors,
    keyrings: [join(o.keyringDir, release.keyring), ...o.keyrings],
    gpgv: o.gpgv,
    xz: o.xz,
  }
  const indexes: DebPackage[][] = []
  const snapshots = new Map<string, string>()
  for (const s of release.suites) {
    const { packages, timestamp } = await readSuite(release, s, arch, apt)
    indexes.push(packages)
    snapshots.set((s.archive ?? release.archive)(arch), (s.snapshot ?? release.snapshot)(arch, timestamp))
  }
  const available = newest(indexes)
  const chosen = closures(set, (names) => closure(names, available), 'the archive', o)
  let stages: Map<string, number>
  try {
    stages = installStages(chosen.map(([p]) => p))
  } catch (e) {
    throw new KaError('ENOTPINNED', `${id} ${platform}: ${(e as Error).message}; check the package names`)
  }
  return chosen.map(([p, uses]) => ({
    release: id,
    ...usedBy(uses),
    family: 'deb' as const,
    platform,
    name: p.name,
    version: p.version,
    url: `${p.archive}/${p.filename}`,
    snapshot: `${snapshots.get(p.archive)}/${p.filename}`,
    integrity: Sha256.fromHex(p.sha256),
    size: p.size,
    file: p.filename.split('/').pop()!,
    ...(stages.get(p.name) ? { stage: stages.get(p.name)! } : {}),
  }))
}

/** Every file a manifest asks for, with its canonical URL and where its checksum is published. */
export function wantsOf(manifest: Manifest): Want[] {
  const wants: Want[] = []
  for (const c of COMPONENTS) {
    const version = manifest.components.get(c.name) ?? (FOLLOWS_KUBERNETES.has(c.name) ? manifest.kubernetes : undefined)
    if (!version) continue
    for (const platform of c.perPlatform ? manifest.platforms : [undefined]) wants.push(componentWant(c, version, platform ?? manifest.platforms[0]!, platform))
  }
  for (const f of manifest.files) {
    const perPlatform = f.url.includes('{arch}')
    for (const platform of perPlatform ? manifest.platforms : [undefined]) {
      const url = platform ? f.url.replaceAll('{arch}', archOf(platform)) : f.url
      wants.push({ name: f.name, version: f.version, ...(platform ? { platform } : {}), url, ...(f.sha256 ? { sha256: f.sha256 } : {}) })
    }
  }
  return wants
}

function componentWant(c: Component, version: string, archFrom: Platform, platform: Platform | undefined): Want {
  const arch = archOf(archFrom)
  return {
    name: c.name,
    version,
    ...(platform ? { platform } : {}),
    url: c.url(version, arch),
    ...(c.checksumUrl ? { checksumUrl: c.checksumUrl(version, arch) } : {}),
  }
}

const label = (w: Want): string => `${w.name} ${w.version}${w.platform ? ` ${w.platform}` : ''}`

async function hashByDownload(w: Want, o: LockOptions): Promise<{ digest: Sha256; size: number }> {
  const partial = o.cache.partialPath(`lock-${randomBytes(8).toString('hex')}`)
  const id = `${w.url}`
  o.progress.start(id, label(w))
  try {
    const got = await download({ what: label(w), url: applyMirrors(w.url, o.mirrors), partial, onBytes: (n) => o.progress.advance(id, n) }, o.http)
    if (got.size === 0) throw new KaError('EFETCH', `${label(w)}: ${w.url} is empty; check the URL and --mirror`)
    await o.cache.commit(partial, got.digest)
    o.progress.done(id, 'hashed')
    return got
  } finally {
    await rm(partial, { force: true })
  }
}
