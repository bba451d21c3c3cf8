import { createPublicKey } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { tableWith } from '../bundle/closed-world.js'
import { KaError } from '../bundle/errors.js'
import { bundleTarName, DELTA_FILE, deltaName, EXEC_MODE, FILE_MODE, PACKAGES_DIR, partsSumName, RUNTIME_NODE } from '../bundle/layout.js'
import { deltaBytes } from '../bundle/delta.js'
import { type BaseBundle, baseBundle, baseFiles, inBase } from './delta.js'
import { keyFingerprint } from '../bundle/signing.js'
import { imagesOf, isImageLock, manifestFiles, parseLock, type Lock } from '../bundle/lock.js'
import type { Platform } from '../bundle/platform.js'
import { Cache } from './download/cache.js'
import { Connections } from './download/connections.js'
import { DockerCredentials } from './images/credentials.js'
import { Cancelled, Fetcher, type Item } from './download/fetcher.js'
import { download } from './download/download.js'
import { warmHasher } from '../bundle/hasher.js'
import { applyMirrors, httpDefaults, redactUrl } from './download/http.js'
import { checkClosedWorld, planImages } from './images/images.js'
import { checkHosts, hostsFor } from './download/hosts.js'
import { parseImageRef } from '../bundle/reference.js'
import { extractRuntime } from './pack/node-runtime.js'
import type { FetchOptions } from './options.js'
import { ANSIBLE_SOURCE_DIR, CLUSTER_EXAMPLE, COMPATIBILITY, INSTALLER_BUILT, KUBEADM_TABLE, QUICKSTART_DIR } from './package-files.js'
import { TOOL_VERSION } from '../bundle/version.js'
import { packBundle } from './pack/pack.js'
import { splitTar } from './pack/parts.js'
import { type BundlePlan, bundleData, bundlePathOf, imageBlobs, planBundle, type PlannedDownload } from './plan.js'
import { Schedule } from './schedule.js'
import { silentProgress } from './progress.js'
import { RegistryClient } from './images/registry.js'

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
  /** An older lock (best: the old bundle's own bundle.lock.json): build a delta bundle of what its bundle lacks (--upgrade-from). */
  upgradeFrom?: string
  /** Only the lock's images: an image bundle for `./install images` (--images-only; a lock of images alone builds one anyway). */
  imagesOnly?: boolean
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
  /** The signing key's fingerprint, when signed. */
  signedBy?: string
  /** OS packages carried, per release. */
  packages: { release: string; count: number }[]
  /** A delta bundle: the old bundle it completes, and the files (and bytes, where known) it leaves to it. */
  delta?: { base: string; files: number; bytes: number }
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

/** What a build works with once its inputs are read: shared by its stages. */
interface Build {
  o: BuildOptions
  lock: Lock
  plan: BundlePlan
  registry: RegistryClient
  fetcher: Fetcher
  schedule: Schedule
  /** A delta: what the old bundle holds is neither fetched nor packed. */
  old: BaseBundle | undefined
}

/**
 * Builds the bundle for one platform, as zarf's Create does: read the plan (what the bundle
 * carries, from the lock alone), fetch on the schedule (every pinned file and image blob into
 * the cache, checked against its pin; the closed world, that the bundle holds every image the
 * node will ask for, checked before any image blob is fetched or anything written), assemble
 * the files made at build time, pack (SHA256SUMS, the signed statement, one deterministic
 * tar) and split.
 */
export async function buildBundle(options: Partial<BuildOptions> = {}): Promise<BuildResult> {
  // The hash worker starts now, not on its first hash: that is a manifest's (Calico's), which every other file waits on.
  warmHasher()
  const defaults = buildDefaults(options)
  // One budget of connections for every request of the build: files, their ranges, registry blobs and manifests.
  const connections = new Connections(defaults.concurrency, defaults.http.segmentBytes)
  const o: BuildOptions = { ...defaults, http: { ...defaults.http, connections } }
  const read = await readLock(o.lockPath)
  const lock = o.imagesOnly ? imagesOf(read) : read
  if (isImageLock(lock) && (o.upgradeFrom || o.releases))
    throw new KaError(
      'EUSAGE',
      `${o.upgradeFrom ? '--upgrade-from' : '--os'} is for a bundle that installs Kubernetes; an image bundle carries images alone: leave it out`,
    )
  const plan = planBundle(lock, o.platform, o.releases, o.lockPath)
  const registry = new RegistryClient({ http: o.http, mirrors: o.registryMirrors, credentials: o.credentials })
  const fetcher = new Fetcher(o)
  try {
    const old = o.upgradeFrom ? await baseBundle(await readLock(o.upgradeFrom), o.upgradeFrom, lock, o.platform, { registry, ...o }) : undefined
    const installer = isImageLock(lock)
      ? undefined
      : await readFile(o.installerFile).catch(() => {
          throw new KaError('EUSAGE', `${o.installerFile} is missing: run \`npm run build\` first`)
        })
    const b: Build = { o, lock, plan, registry, fetcher, schedule: new Schedule(fetcher, connections), old }
    const fetched = await fetchAll(b)
    const { data, id, delta } = await assemble(b, fetched, installer)
    const { sha256, size } = await packBundle(
      o,
      fetcher,
      fetched.all.filter((i) => !inBase(old, i)),
      data,
      id,
    )
    const tarPath = join(o.outDir, id.tarName)
    const split = o.splitBytes ? { parts: await splitTar(tarPath, o.splitBytes, sha256), partsFile: join(o.outDir, partsSumName(id.tarName)) } : undefined
    return {
      bundle: tarPath,
      ...(split ?? {}),
      sha256: sha256.hex,
      name: id.name,
      platform: o.platform,
      size,
      ...summary(b, fetched.images),
      ...(delta ? { delta } : {}),
    }
  } catch (e) {
    // Whatever failed before packing (which stops them itself), the downloads still running
    // stop with it; a download's own failure is shown, not the cancellation it caused.
    const first = await fetcher.stop(e)
    throw e instanceof Cancelled && first ? first : e
  } finally {
    o.progress.close()
  }
}

/**
 * Every byte the bundle carries, into the cache on the schedule (schedule.ts), the closed
 * world checked before the image blobs. Returns every item the bundle holds (the runtime as
 * its extracted binary) and the planned images.
 */
async function fetchAll(b: Build): Promise<{ all: Item[]; images: Awaited<ReturnType<typeof planImages>> }> {
  const { o, lock, plan, registry, fetcher, schedule, old } = b
  // The manifests and the runtime's tarball are urgent: they take the first connections.
  const manifestRels = new Set(plan.manifests.map((m) => m.rel))
  const items = new Map(plan.downloads.map((d) => [d.rel, downloadItem(d, o, d.rel === plan.runtime?.rel || manifestRels.has(d.rel))]))
  const carried = (list: Item[]) => list.filter((i) => !inBase(old, i))
  // The manifests are read for the closed world even when the old bundle holds them.
  const missing = new Set(
    (
      await expectMissing(
        o,
        [...items.values()].filter((i) => !inBase(old, i) || manifestRels.has(i.rel)),
      )
    ).map((i) => i.rel),
  )
  const needed = plan.downloads.filter((d) => missing.has(d.rel)).map((d) => ({ url: d.url, what: redactUrl(d.url) }))
  for (const im of lock.images)
    if (!im.digest || !(await o.cache.has(im.digest))) needed.push({ url: `${registry.endpoint(parseImageRef(im.ref)).base}/v2/`, what: im.ref })
  const hostsChecked = needed.length ? checkHosts(hostsFor(needed, o.mirrors), o.http, o.mirrorsFile) : Promise.resolve()
  const tarball = plan.runtime ? items.get(plan.runtime.rel) : undefined
  const manifests = plan.manifests.map((m) => items.get(m.rel)!)
  const others = [...items.values()].filter((i) => i !== tarball && !manifestRels.has(i.rel))
  const manifestsFetched = schedule.files(hostsChecked, {
    manifests,
    ...(tarball ? { runtime: tarball } : {}),
    files: carried([...manifests, ...others]),
  })
  const [hosts, manifestsIn, planned] = await Promise.allSettled([
    hostsChecked,
    manifestsFetched,
    schedule.manifests(() => planImages(lock.images, o.platform, { registry, cache: o.cache, progress: o.progress })),
  ])
  if (hosts.status === 'rejected') throw hosts.reason
  if (manifestsIn.status === 'rejected') throw manifestsIn.reason
  // The closed world before the image blobs: no layer is pulled and nothing written for a bundle that could not work.
  // An image bundle adds images to a node that runs already: it has no world of its own to close.
  if (!isImageLock(lock))
    checkClosedWorld(
      await readFile(o.kubeadmTable, 'utf8'),
      lock,
      await Promise.all(manifestFiles(lock).map(async (f) => ({ component: f.name, text: await readFile(o.cache.blobPath(f.integrity), 'utf8') }))),
    )
  if (planned.status === 'rejected') throw planned.reason
  const images = planned.value
  const blobs = imageBlobs(images.planned).map(
    (bl): Item => ({
      rel: bl.rel,
      digest: bl.digest,
      size: bl.size,
      label: bl.label,
      group: bl.image.name,
      fetch: (partial, hooks) => registry.blob(bl.image.ref, bl.digest, bl.size, partial, { ...hooks, order: bl.rel }),
    }),
  )
  await expectMissing(o, carried(blobs))
  schedule.blobs(carried(blobs))
  if (!tarball || !plan.runtime) return { all: [...items.values(), ...blobs], images }
  // The runtime tarball is fetched like any file, but the bundle carries only its binary.
  await fetcher.ensure(tarball)
  const node = await extractRuntime(o.cache, plan.runtime.digest, o.xz)
  items.delete(plan.runtime.rel)
  const runtime: Item = {
    rel: RUNTIME_NODE,
    digest: node.digest,
    size: node.size,
    mode: EXEC_MODE,
    label: 'Node.js runtime',
    fetch: () => Promise.reject(new Error('the runtime is extracted, not fetched')),
  }
  return { all: [...items.values(), runtime, ...blobs], images }
}

/** The progress total counts what is not in the cache yet: the files first, the image blobs once known. */
async function expectMissing(o: BuildOptions, list: Item[]): Promise<Item[]> {
  const missing: Item[] = []
  for (const i of list) if (!(await o.cache.has(i.digest))) missing.push(i)
  // An image's blobs count as one item: the summary counts files and images.
  const groups = new Map<string, number>()
  for (const i of missing) if (i.group !== undefined) groups.set(i.group, (groups.get(i.group) ?? 0) + 1)
  o.progress.expect(
    missing.length,
    missing.reduce((n, i) => n + (i.size ?? 0), 0),
    missing.filter((i) => i.size === undefined).length,
    groups,
  )
  return missing
}

/** The files made at build time (the lock, the installer, the quickstart, ...), and for a delta its DELTA.json and name. */
async function assemble(
  { o, lock, plan, old }: Build,
  fetched: Awaited<ReturnType<typeof fetchAll>>,
  installer: Buffer | undefined,
): Promise<{ data: ReturnType<typeof bundleData>['data']; id: BundlePlan['id']; delta?: BuildResult['delta'] }> {
  if (!installer) return { data: bundleData(lock, plan, undefined, fetched.images, { toolVersion: TOOL_VERSION }).data, id: plan.id }
  const quickstart = {
    en: await readFile(join(QUICKSTART_DIR, 'README.txt')),
    zh: await readFile(join(QUICKSTART_DIR, 'README.zh-CN.txt')),
    clusterExample: await readFile(CLUSTER_EXAMPLE),
    ansible: await readTree(ANSIBLE_SOURCE_DIR),
  }
  const { data } = bundleData(lock, plan, o.releases, fetched.images, {
    installer,
    // The node checks kubeadm against the bundle's table: it carries the lock's own row.
    kubeadmTable: Buffer.from(tableWith(await readFile(o.kubeadmTable, 'utf8'), lock.kubernetes, lock.kubeadmImages)),
    compatibility: await readFile(COMPATIBILITY),
    toolVersion: TOOL_VERSION,
    quickstart,
  })
  if (!old) return { data, id: plan.id }
  const left = await baseFiles(old, fetched.all, o.cache)
  data.set(DELTA_FILE, { bytes: deltaBytes({ base: old.name, kubernetes: old.kubernetes, files: left }), mode: FILE_MODE })
  const name = deltaName(plan.id.name, old.kubernetes)
  return {
    data,
    id: { ...plan.id, name, tarName: bundleTarName(name) },
    delta: { base: old.name, files: left.length, bytes: left.reduce((n, f) => n + (f.size ?? 0), 0) },
  }
}

/** What the result says of the files, images, bytes, signature and packages. */
function summary({ o, plan, fetcher }: Build, images: Awaited<ReturnType<typeof planImages>>) {
  return {
    files: plan.files.map(
      (f): BuiltFile => ({
        name: f.name,
        version: f.version,
        path: bundlePathOf(f),
        size: fetcher.sizes.get(f.integrity.hex) ?? 0,
        from: fetcher.downloaded.has(f.integrity.hex) ? 'download' : 'cache',
      }),
    ),
    images: images.planned.map(
      (p): BuiltImage => ({
        name: p.name,
        digest: p.pinned.oci,
        manifest: p.manifest.digest.oci,
        size: p.manifest.size + p.blobs.reduce((n, bl) => n + bl.size, 0),
      }),
    ),
    downloadedBytes: fetcher.downloadedBytes,
    ...(o.signingKeyPem ? { signedBy: keyFingerprint(createPublicKey(o.signingKeyPem).export({ type: 'spki', format: 'pem' }).toString()) } : {}),
    packages: packageCounts(plan.downloads.map((d) => d.rel)),
  }
}

/** A planned download as the fetcher's item: its source is the URL through the mirrors, then the fallback on 404/410. */
function downloadItem(d: PlannedDownload, o: BuildOptions, urgent: boolean): Item {
  return {
    rel: d.rel,
    digest: d.digest,
    ...(d.size !== undefined ? { size: d.size } : {}),
    label: d.label,
    fetch: async (partial, hooks) => {
      const get = (url: string) =>
        download(
          {
            what: d.what,
            url: applyMirrors(url, o.mirrors),
            partial,
            expected: d.digest,
            ...(d.size !== undefined ? { size: d.size } : {}),
            ...hooks,
            urgent,
            order: d.rel,
          },
          o.http,
        )
      try {
        return await get(d.url)
      } catch (e) {
        // Distributions drop superseded packages (a pool's old .debs, a point release's whole
        // tree); the snapshot service or vault keeps them. The same pinned sha256 is checked either way.
        const status = (e as KaError).facts?.status
        if (!d.fallback || (status !== 404 && status !== 410)) throw e
        o.progress.note(`moved    ${d.label}: gone from the pool, fetching it from the snapshot service or vault at ${new URL(d.fallback).host} (the same pin)`)
        return get(d.fallback)
      }
    },
  }
}

/** How many OS packages the bundle carries for each release, by their paths (packages/<release>/...). */
function packageCounts(rels: string[]): { release: string; count: number }[] {
  const counts = new Map<string, number>()
  for (const rel of rels) if (rel.startsWith(`${PACKAGES_DIR}/`)) counts.set(rel.split('/')[1]!, (counts.get(rel.split('/')[1]!) ?? 0) + 1)
  return [...counts].map(([release, count]) => ({ release, count }))
}

/** Every file under a folder, by its `/`-separated path inside it, in name order. */
async function readTree(dir: string): Promise<Map<string, Buffer>> {
  const files = (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile())
  const rels = files.map((e) => relative(dir, join(e.parentPath, e.name))).sort()
  return new Map(await Promise.all(rels.map(async (rel) => [rel, await readFile(join(dir, rel))] as const)))
}
