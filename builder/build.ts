import { readFileSync } from 'node:fs'
import { tempPrefix, writeAtomic } from '../bundle/atomic.js'
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import pLimit from 'p-limit'
import { Sha256 } from '../bundle/digest.js'
import { missingImages, requiredImages } from '../bundle/closed-world.js'
import { OCI_LAYOUT_CONTENT } from '../bundle/oci.js'
import { KaError } from '../bundle/errors.js'
import { bundleName, bundleTarName, EXEC_MODE, FILE_MODE, filePath, IMAGE_INDEX, IMAGE_LAYOUT_FILE, imageBlobPath, INSTALL_SCRIPT, INSTALLER_FILE, KUBEADM_TABLE_FILE, LOCK_FILE, packagePath, partsSumName, RUNTIME_COMPONENT, RUNTIME_NODE, SBOM_FILE, SIGNATURE_FILE, STATEMENT_FILE, SUMS_FILE, tarSumName } from '../bundle/layout.js'
import { filesFor, packagesFor, parseLock, reduceLock, serializeLock, type Lock } from '../bundle/lock.js'
import { archOf, type Platform } from '../bundle/platform.js'
import { formatSums } from '../bundle/sums.js'
import { Cache } from './cache.js'
import { FileHasher } from './hasher.js'
import { DockerCredentials } from './credentials.js'
import { applyMirrors, download, httpDefaults, type Downloaded } from './http.js'
import { layoutImages, planImages, type PlannedImage } from './images.js'
import { ImageLayout } from '../bundle/image-layout.js'
import type { FetchOptions } from './options.js'
import { INSTALLER_BUILT, KUBEADM_TABLE, PACKAGE_VERSION } from './package-files.js'
import { extractRuntime } from './node-runtime.js'
import { installScript } from '../bundle/entry.js'
import { signStatement, statementBytes } from '../bundle/signing.js'
import { splitTar } from './parts.js'
import { cycloneDx } from './sbom.js'
import { RegistryClient } from './registry.js'
import { silentProgress } from './progress.js'
import { TarWriter } from '../bundle/tar.js'

export interface BuildOptions extends FetchOptions {
  lockPath: string
  platform: Platform
  outDir: string
  /** The kubeadm image table (manifests/kubeadm-images.yaml). */
  kubeadmTable: string
  /** The bundled installer (lib/installer/install.mjs, made by `npm run build`). */
  installerFile: string
  /** The xz program that unpacks the Node.js runtime. */
  xz: string
  /** The distribution releases whose OS packages to carry (--os); all the lock has when unset. */
  releases?: string[]
  /** An Ed25519 private key (PEM) to sign the bundle with (--sign). */
  signingKeyPem?: string
  /** Cut the tar into parts of this many bytes (--split, --media fat32). */
  splitBytes?: number
}

export interface BuiltFile {
  name: string
  version: string
  path: string
  size: number
  from: 'cache' | 'download'
}

export interface BuiltImage {
  name: string
  /** The digest the lock pins (index or manifest). */
  digest: string
  /** The platform manifest the bundle carries: what `ctr images ls` shows after import. */
  manifest: string
  size: number
}

export interface BuildResult {
  bundle: string
  /** With --split: the parts, and the file listing their sha256. */
  parts?: string[]
  partsFile?: string
  sha256: string
  name: string
  platform: Platform
  size: number
  files: BuiltFile[]
  images: BuiltImage[]
  downloadedBytes: number
}

export function buildDefaults(over: Partial<BuildOptions> = {}): BuildOptions {
  return {
    lockPath: 'bundle.lock.json',
    platform: 'linux/amd64',
    outDir: 'dist',
    cache: over.cache ?? new Cache(Cache.defaultRoot()),
    http: over.http ?? httpDefaults(),
    mirrors: [],
    registryMirrors: [],
    credentials: over.credentials ?? DockerCredentials.fromEnv(),
    concurrency: 8,
    progress: silentProgress,
    kubeadmTable: KUBEADM_TABLE,
    installerFile: INSTALLER_BUILT,
    xz: 'xz',
    ...over,
  }
}

export async function readLock(path: string): Promise<Lock> {
  const text = await readFile(path, 'utf8').catch(() => {
    throw new KaError('EUSAGE', `${path}: cannot read the lock; give one with --lock or make one with \`bundle lock\``)
  })
  return parseLock(text, path)
}

/**
 * One piece of content the bundle carries, kept in the cache by its digest: a pinned
 * upstream file or an image blob. `fetch` brings it into a partial file when it is not
 * cached yet.
 */
interface Item {
  rel: string
  digest: Sha256
  size?: number
  mode?: number
  label: string
  fetch(partial: string, onBytes: (n: number) => void, signal: AbortSignal): Promise<Downloaded>
}

/** A cache entry whose bytes no longer match its address, found while packing. */
class CorruptEntry extends Error {
  constructor(readonly item: Item) {
    super(`cache entry for ${item.label} is corrupt`)
  }
}

/**
 * Builds the bundle for one platform: every pinned file and every image blob fetched (or
 * found in the cache), checked against its pin, and packed with the reduced lock, the
 * images' OCI layout and SHA256SUMS into one deterministic tar. The closed-world check runs
 * before anything is written: the bundle must hold every image the node will ask for. The
 * tar is written under a temp name and renamed only when complete.
 */
export async function buildBundle(options: Partial<BuildOptions> = {}): Promise<BuildResult> {
  const o = buildDefaults(options)
  const lock = await readLock(o.lockPath)
  if (!lock.platforms.includes(o.platform)) {
    throw new KaError('EUSAGE', `${o.lockPath} has no ${o.platform} files (it locks ${lock.platforms.join(', ')}); add the platform to the manifest and run \`bundle lock\``)
  }
  const files = filesFor(lock, o.platform)
  const name = bundleName(lock.kubernetes, archOf(o.platform))
  const tarName = bundleTarName(name)
  const registry = new RegistryClient({ http: o.http, mirrors: o.registryMirrors, credentials: o.credentials })

  const lockedReleases = [...new Set(lock.packages.map((p) => p.release))]
  for (const r of o.releases ?? []) if (!lockedReleases.includes(r)) throw new KaError('EUSAGE', `--os ${r}: the lock has no packages for it (it has ${lockedReleases.join(', ') || 'none'}); add it to the manifest's packages.releases and run \`bundle lock\``)
  const packageItems: Item[] = packagesFor(lock, o.platform, o.releases).map((p) => ({
    rel: packagePath(p.release, p.file),
    digest: p.integrity,
    size: p.size,
    label: `${p.release} ${p.name} ${p.version}`,
    fetch: async (partial, onBytes, signal) => {
      const get = (url: string) => download({ what: `${p.release} package ${p.name} ${p.version}`, url: applyMirrors(url, o.mirrors), partial, expected: p.integrity, size: p.size, onBytes, signal }, o.http)
      try {
        return await get(p.url)
      } catch (e) {
        // Distributions drop superseded .debs from their pools; the snapshot service keeps
        // them. The same pinned sha256 is checked either way.
        const status = (e as KaError).facts?.status
        if (!p.snapshot || (status !== 404 && status !== 410)) throw e
        o.progress.note(`moved    ${p.release} ${p.name} ${p.version}: gone from the pool, fetching it from the snapshot service`)
        return get(p.snapshot)
      }
    },
  }))
  const fileItems = new Map<string, Item>()
  for (const f of files) {
    fileItems.set(f.file, {
      rel: filePath(f.file),
      digest: f.integrity,
      ...(f.size !== undefined ? { size: f.size } : {}),
      label: `${f.name} ${f.version}`,
      fetch: (partial, onBytes, signal) =>
        download({ what: `${f.name} ${f.version} (${filePath(f.file)})`, url: applyMirrors(f.url, o.mirrors), partial, expected: f.integrity, ...(f.size !== undefined ? { size: f.size } : {}), onBytes, signal }, o.http),
    })
  }

  const state = new Fetcher(o)
  try {
    // The closed world first: nothing is pulled or written for a bundle that could not work.
    const calico = files.find((f) => f.name === 'calico-manifest')
    if (calico) await state.ensure(fileItems.get(calico.file)!)
    await checkClosedWorld(o, lock, calico ? await readFile(o.cache.blobPath(calico.integrity), 'utf8') : undefined)

    const installer = await readFile(o.installerFile).catch(() => {
      throw new KaError('EUSAGE', `${o.installerFile} is missing: run \`npm run build\` first`)
    })
    const { planned, locked } = await planImages(lock.images, o.platform, { registry, cache: o.cache, progress: o.progress, concurrency: o.concurrency })
    // The runtime tarball is fetched like any file, but the bundle carries only its binary.
    const runtimeFile = files.find((f) => f.name === RUNTIME_COMPONENT)
    if (!runtimeFile) throw new KaError('ENOTPINNED', `the lock pins no Node.js runtime (component ${RUNTIME_COMPONENT}); the installer cannot run without it`)
    const tarball = fileItems.get(runtimeFile.file)!
    await state.ensure(tarball)
    const node = await extractRuntime(o.cache, runtimeFile.integrity, o.xz)
    const runtime: Item = { rel: RUNTIME_NODE, digest: node.digest, size: node.size, mode: EXEC_MODE, label: 'Node.js runtime', fetch: () => Promise.reject(new Error('the runtime is extracted, not fetched')) }
    const items = [...[...fileItems.values()].filter((i) => i !== tarball), runtime, ...packageItems, ...imageItems(planned, registry)]
    const bundleLock: Lock = { ...reduceLock(lock, o.platform, o.releases), images: locked }
    const data = new Map<string, { bytes: Buffer; mode: number }>([
      [LOCK_FILE, { bytes: Buffer.from(serializeLock(bundleLock)), mode: FILE_MODE }],
      [SBOM_FILE, { bytes: cycloneDx(name, bundleLock, planned, PACKAGE_VERSION), mode: FILE_MODE }],
      [IMAGE_LAYOUT_FILE, { bytes: Buffer.from(OCI_LAYOUT_CONTENT), mode: FILE_MODE }],
      [IMAGE_INDEX, { bytes: ImageLayout.indexBytes(layoutImages(planned)), mode: FILE_MODE }],
      [INSTALL_SCRIPT, { bytes: Buffer.from(installScript(archOf(o.platform))), mode: EXEC_MODE }],
      [INSTALLER_FILE, { bytes: installer, mode: FILE_MODE }],
      [KUBEADM_TABLE_FILE, { bytes: await readFile(o.kubeadmTable), mode: FILE_MODE }],
    ])
    const { sha256, size } = await state.packAll(items, data, { name, kubernetes: lock.kubernetes }, tarName)
    let split: { parts: string[]; partsFile: string } | undefined
    if (o.splitBytes) {
      const parts = await splitTar(join(o.outDir, tarName), o.splitBytes, sha256)
      split = { parts, partsFile: join(o.outDir, partsSumName(tarName)) }
    }
    return {
      bundle: join(o.outDir, tarName),
      ...(split ?? {}),
      sha256: sha256.hex,
      name,
      platform: o.platform,
      size,
      files: files.map((f) => ({ name: f.name, version: f.version, path: f.name === RUNTIME_COMPONENT ? RUNTIME_NODE : filePath(f.file), size: state.sizes.get(f.integrity.hex) ?? 0, from: state.downloaded.has(f.integrity.hex) ? 'download' : 'cache' })),
      images: planned.map((p) => ({ name: p.name, digest: p.pinned.oci, manifest: p.manifest.digest.oci, size: p.manifest.size + p.blobs.reduce((s, b) => s + b.size, 0) })),
      downloadedBytes: state.downloadedBytes,
    }
  } finally {
    o.progress.close()
    await state.close()
  }
}

async function checkClosedWorld(o: BuildOptions, lock: Lock, calicoYaml: string | undefined): Promise<void> {
  const { wants } = requiredImages(lock.kubernetes, await readFile(o.kubeadmTable, 'utf8'), calicoYaml)
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

function imageItems(planned: readonly PlannedImage[], registry: RegistryClient): Item[] {
  const items = new Map<string, Item>()
  for (const p of planned) {
    for (const d of [p.manifest, ...p.blobs]) {
      if (items.has(d.digest.hex)) continue // a layer shared by two images is stored once
      items.set(d.digest.hex, {
        rel: imageBlobPath(d.digest.hex),
        digest: d.digest,
        size: d.size,
        label: `${p.name} ${d === p.manifest ? 'manifest' : `blob ${d.digest.hex.slice(0, 12)}`}`,
        fetch: (partial, onBytes, signal) => registry.blob(p.ref, d.digest, d.size, partial, { onBytes, signal }),
      })
    }
  }
  return [...items.values()]
}

/**
 * Brings items into the cache (in parallel, each at most once) and packs them. Packing
 * starts at once and takes each item as soon as it is in the cache, so writing the tar
 * overlaps with downloads still running. Items found in the cache are hashed again on a
 * second thread; one damaged on disk is evicted, fetched again, and the pack restarts.
 */
class Fetcher {
  readonly downloaded = new Set<string>()
  readonly sizes = new Map<string, number>()
  downloadedBytes = 0
  private checking = new Map<string, Promise<Sha256>>()
  private inflight = new Map<string, Promise<void>>()
  private hasher = new FileHasher()
  private limit: ReturnType<typeof pLimit>
  // The first failure stops the others: the user sees its error last, at once. What the
  // others had downloaded stays in the cache's partial files, to be resumed next time.
  private abort = new AbortController()

  constructor(private readonly o: BuildOptions) {
    this.limit = pLimit(o.concurrency)
  }

  ensure(item: Item): Promise<void> {
    let p = this.inflight.get(item.digest.hex)
    if (!p) {
      p = this.limit(() => this.fetchOne(item))
      p.catch((e: unknown) => this.abort.abort(e))
      this.inflight.set(item.digest.hex, p)
    }
    return p
  }

  private async fetchOne(item: Item): Promise<void> {
    const signal = this.abort.signal
    if (signal.aborted) throw new Error('stopped: another download failed')
    const blob = this.o.cache.blobPath(item.digest)
    const have = await stat(blob).catch(() => undefined)
    if (have && (item.size === undefined || have.size === item.size)) {
      this.sizes.set(item.digest.hex, have.size)
      if (!this.downloaded.has(item.digest.hex)) this.checking.set(item.digest.hex, this.hasher.hash(blob))
      this.o.progress.note(`cached   ${item.label}`)
      return
    }
    if (have) await this.o.cache.evict(item.digest)
    const id = item.digest.hex
    this.o.progress.start(id, item.label, item.size)
    const partial = this.o.cache.partialPath(item.digest.hex)
    const got = await item.fetch(partial, (n) => this.o.progress.advance(id, n), signal)
    await this.o.cache.commit(partial, got.digest)
    this.downloadedBytes += got.size
    this.downloaded.add(item.digest.hex)
    this.sizes.set(item.digest.hex, got.size)
    this.o.progress.done(id, 'fetched')
  }

  async packAll(items: Item[], data: Map<string, { bytes: Buffer; mode: number }>, id: BundleId, tarName: string): Promise<{ sha256: Sha256; size: number }> {
    await mkdir(this.o.outDir, { recursive: true })
    await removeStaleTemps(this.o.outDir, tarName)
    for (const item of items) void this.ensure(item).catch(() => {})
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await pack(this.o, items, data, id, tarName, {
          ready: (i) => this.ensure(i),
          check: (i) => this.checking.get(i.digest.hex),
        })
        await Promise.all(items.map((i) => this.ensure(i)))
        return result
      } catch (e) {
        if (e instanceof CorruptEntry && attempt < 2) {
          this.o.progress.note(`corrupt  cache entry for ${e.item.label}: fetching it again`)
          await Promise.allSettled(this.inflight.values())
          await this.o.cache.evict(e.item.digest)
          this.checking.delete(e.item.digest.hex)
          this.inflight.delete(e.item.digest.hex)
          continue
        }
        this.abort.abort(e)
        // Surface the first real failure, not the "stopped" of the ones it cancelled.
        const results = await Promise.allSettled(this.inflight.values())
        const first = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !/^stopped:/.test(String((r.reason as Error)?.message)))
        throw first && !(e instanceof KaError) ? first.reason : e
      }
    }
  }

  async close(): Promise<void> {
    await this.hasher.close()
  }
}

interface PackInputs {
  /** Resolves when the item is in the cache. */
  ready(i: Item): Promise<void>
  /** The digest of a cache entry that was found rather than fetched, once computed. */
  check(i: Item): Promise<Sha256> | undefined
}

/** What names a bundle: its top folder, and the Kubernetes version the signed statement states. */
interface BundleId {
  name: string
  kubernetes: string
}

async function pack(o: BuildOptions, items: Item[], data: Map<string, { bytes: Buffer; mode: number }>, id: BundleId, tarName: string, inputs: PackInputs): Promise<{ sha256: Sha256; size: number }> {
  const { name } = id
  const sums = new Map<string, Sha256>()
  for (const [rel, d] of data) sums.set(rel, Sha256.of(d.bytes))
  for (const i of items) sums.set(i.rel, i.digest)
  const sumsText = Buffer.from(formatSums(sums))

  type Entry = { rel: string; dir?: true; data?: Buffer; mode?: number; item?: Item }
  const entries: Entry[] = [{ rel: SUMS_FILE, data: sumsText }, ...[...data].map(([rel, d]) => ({ rel, data: d.bytes, mode: d.mode })), ...items.map((item) => ({ rel: item.rel, item }))]
  if (o.signingKeyPem) {
    // Ed25519 signatures are deterministic: a signed bundle is still the same bytes every build.
    const statement = statementBytes({ bundle: name, kubernetes: id.kubernetes, platform: o.platform, sha256sums: Sha256.of(sumsText).oci, lock: Sha256.of(data.get(LOCK_FILE)!.bytes).oci })
    entries.push({ rel: STATEMENT_FILE, data: statement }, { rel: SIGNATURE_FILE, data: signStatement(statement, o.signingKeyPem) })
  }
  const dirs = new Set<string>([''])
  for (const e of entries) {
    const parts = e.rel.split('/')
    for (let k = 1; k < parts.length; k++) dirs.add(`${parts.slice(0, k).join('/')}/`)
  }
  entries.push(...[...dirs].map((rel): Entry => ({ rel, dir: true })))
  entries.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0))

  const final = join(o.outDir, tarName)
  const sidecar = join(o.outDir, tarSumName(tarName))
  let size = 0
  const sha256 = await writeAtomic(
    final,
    async (sink) => {
      const tar = new TarWriter(sink)
      for (const e of entries) {
        const path = `${name}/${e.rel}`
        if (e.dir) await tar.directory(path)
        else if (e.data) await tar.data(path, e.mode ?? FILE_MODE, e.data)
        else {
          const i = e.item!
          await inputs.ready(i)
          const blob = o.cache.blobPath(i.digest)
          await tar.file(path, (await stat(blob)).size, i.mode ?? FILE_MODE, blob)
        }
      }
      await tar.end()
      size = tar.bytes
      for (const i of items) {
        const checked = await inputs.check(i)
        if (checked && !checked.equals(i.digest)) throw new CorruptEntry(i)
      }
    },
    // The old checksum goes first: never a new tar beside an old .sha256.
    { beforeRename: () => rm(sidecar, { force: true }) },
  )
  await writeAtomic(sidecar, `${sha256.hex}  ${tarName}\n`)
  return { sha256, size }
}

async function removeStaleTemps(dir: string, tarName: string): Promise<void> {
  const prefix = tempPrefix(tarName)
  for (const n of await readdir(dir)) {
    if (!n.startsWith(prefix)) continue
    const pid = Number(n.slice(prefix.length).split('-')[0])
    if (Number.isInteger(pid) && pid !== process.pid && !alive(pid)) await rm(join(dir, n), { force: true })
  }
}

/** Whether a build that left a temp tar may still be writing it: a zombie (killed, not yet reaped) is not. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ...": the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat[stat.lastIndexOf(')') + 2] !== 'Z'
  } catch {
    return true
  }
}
