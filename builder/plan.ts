import { Sha256 } from '../bundle/digest.js'
import { KaError } from '../bundle/errors.js'
import { ImageLayout } from '../bundle/image-layout.js'
import {
  bundleName,
  bundleTarName,
  imageBundleName,
  EXEC_MODE,
  FILE_MODE,
  filePath,
  IMAGE_INDEX,
  IMAGE_LAYOUT_FILE,
  imageBlobPath,
  INSTALL_SCRIPT,
  INSTALLER_FILE,
  KUBEADM_TABLE_FILE,
  COMPATIBILITY_FILE,
  LOCK_FILE,
  packagePath,
  RUNTIME_COMPONENT,
  RUNTIME_NODE,
  SBOM_FILE,
  QUICKSTART_FILE,
  QUICKSTART_ZH_FILE,
  CLUSTER_EXAMPLE_FILE,
  ANSIBLE_DIR,
} from '../bundle/layout.js'
import { filesFor, isImageLock, manifestFiles, packagesFor, reduceLock, serializeLock, type Lock, type LockedFile, type LockedImage } from '../bundle/lock.js'
import { OCI_LAYOUT_CONTENT } from '../bundle/oci.js'
import { archOf, type Platform } from '../bundle/platform.js'
import { installScript } from '../bundle/entry.js'
import type { BundleId, DataFiles } from './pack/pack.js'
import { layoutImages, type PlannedImage } from './images/images.js'
import { cycloneDx } from './pack/sbom.js'

/** A pinned download the bundle carries: where it goes in the bundle, and where it comes from. */
export interface PlannedDownload {
  rel: string
  digest: Sha256
  size?: number
  label: string
  /** Names it in an error ("containerd 1.7.16 (files/containerd-...)"). */
  what: string
  url: string
  /** Where it still is when `url` answers 404 or 410 (the snapshot service, for a package a pool dropped). */
  fallback?: string
}

export interface BundlePlan {
  id: BundleId
  /** The lock's files for this platform (the runtime tarball among them). */
  files: LockedFile[]
  /** Every file and OS package to download, the runtime tarball and the manifests among them. */
  downloads: PlannedDownload[]
  /** The Node.js tarball (fetched, but the bundle carries only its binary); an image bundle has none. */
  runtime?: PlannedDownload
  /** The Kubernetes manifests (the CNI's, each add-on's), which the closed world reads; an image bundle has none. */
  manifests: PlannedDownload[]
}

/**
 * The first stage, pure: from a lock, the platform and the OS releases, what the bundle
 * carries and where each piece comes from. No network, no disk: a wrong platform, an
 * unknown release or a lock without the runtime is refused here, before anything starts.
 */
export function planBundle(lock: Lock, platform: Platform, releases: readonly string[] | undefined, lockPath: string): BundlePlan {
  if (!lock.platforms.includes(platform)) {
    throw new KaError(
      'EUSAGE',
      `${lockPath} has no ${platform} files (it locks ${lock.platforms.join(', ')}); add the platform to the manifest and run \`bundle lock\``,
    )
  }
  const lockedReleases = [...new Set(lock.packages.map((p) => p.release))]
  for (const r of releases ?? [])
    if (!lockedReleases.includes(r))
      throw new KaError(
        'EUSAGE',
        `--os ${r}: the lock has no packages for it (it has ${lockedReleases.join(', ') || 'none'}); add it to the manifest's packages.releases and run \`bundle lock\``,
      )
  const files = filesFor(lock, platform)
  const images = isImageLock(lock)
  const name = images
    ? imageBundleName(
        Sha256.of(
          lock.images
            .map((i) => `${i.ref}@${i.digest?.oci ?? ''}\n`)
            .sort()
            .join(''),
        ).hex,
        archOf(platform),
      )
    : bundleName(lock.kubernetes, archOf(platform))
  const fileDownloads = files.map(
    (f): PlannedDownload => ({
      rel: filePath(f.file),
      digest: f.integrity,
      ...(f.size !== undefined ? { size: f.size } : {}),
      label: `${f.name} ${f.version}`,
      what: `${f.name} ${f.version} (${filePath(f.file)})`,
      url: f.url,
    }),
  )
  const packageDownloads = packagesFor(lock, platform, releases).map(
    (p): PlannedDownload => ({
      rel: packagePath(p.release, p.file),
      digest: p.integrity,
      size: p.size,
      label: `${p.release} ${p.name} ${p.version}`,
      what: `${p.release} package ${p.name} ${p.version}`,
      url: p.url,
      ...(p.snapshot ? { fallback: p.snapshot } : {}),
    }),
  )
  const at = (name: string) => {
    const i = files.findIndex((f) => f.name === name)
    return i < 0 ? undefined : fileDownloads[i]
  }
  const runtime = at(RUNTIME_COMPONENT)
  if (!runtime && !images)
    throw new KaError('ENOTPINNED', `the lock pins no Node.js runtime (component ${RUNTIME_COMPONENT}); the installer cannot run without it`)
  return {
    id: { name, tarName: bundleTarName(name), kubernetes: lock.kubernetes, platform },
    files,
    downloads: [...fileDownloads, ...packageDownloads],
    ...(runtime ? { runtime } : {}),
    manifests: manifestFiles({ files }).map((f) => at(f.name)!),
  }
}

/** The blobs of the planned images, each once (a layer two images share is stored once), with its label. */
export function imageBlobs(planned: readonly PlannedImage[]): { image: PlannedImage; rel: string; digest: Sha256; size: number; label: string }[] {
  const seen = new Map<string, { image: PlannedImage; rel: string; digest: Sha256; size: number; label: string }>()
  for (const p of planned) {
    for (const d of [p.manifest, ...p.blobs]) {
      if (seen.has(d.digest.hex)) continue
      seen.set(d.digest.hex, {
        image: p,
        rel: imageBlobPath(d.digest.hex),
        digest: d.digest,
        size: d.size,
        label: `${p.name} ${d === p.manifest ? 'manifest' : `blob ${d.digest.hex.slice(0, 12)}`}`,
      })
    }
  }
  return [...seen.values()]
}

/**
 * The files the build makes rather than downloads, pure: the bundle's lock (this platform
 * only, images resolved to their platform manifests), the SBOM, the images' OCI layout, the
 * `install` entry script, the installer and its image table (an image bundle: the lock, the
 * SBOM and the images alone).
 */
export function bundleData(
  lock: Lock,
  plan: BundlePlan,
  releases: readonly string[] | undefined,
  images: { planned: readonly PlannedImage[]; locked: LockedImage[] },
  inputs: {
    installer?: Buffer
    kubeadmTable?: Buffer
    compatibility?: Buffer
    toolVersion: string
    quickstart?: { en: Buffer; zh: Buffer; clusterExample: Buffer; ansible: ReadonlyMap<string, Buffer> }
  },
): { data: DataFiles; lock: Lock } {
  const bundleLock: Lock = { ...reduceLock(lock, plan.id.platform, releases), images: images.locked }
  const data: DataFiles = new Map([
    [LOCK_FILE, { bytes: Buffer.from(serializeLock(bundleLock)), mode: FILE_MODE }],
    [SBOM_FILE, { bytes: cycloneDx(plan.id.name, bundleLock, images.planned, inputs.toolVersion), mode: FILE_MODE }],
    [IMAGE_LAYOUT_FILE, { bytes: Buffer.from(OCI_LAYOUT_CONTENT), mode: FILE_MODE }],
    [IMAGE_INDEX, { bytes: ImageLayout.indexBytes(layoutImages(images.planned)), mode: FILE_MODE }],
    ...(inputs.installer && inputs.kubeadmTable
      ? ([
          [INSTALL_SCRIPT, { bytes: Buffer.from(installScript(archOf(plan.id.platform))), mode: EXEC_MODE }],
          [INSTALLER_FILE, { bytes: inputs.installer, mode: FILE_MODE }],
          [KUBEADM_TABLE_FILE, { bytes: inputs.kubeadmTable, mode: FILE_MODE }],
          ...(inputs.compatibility ? ([[COMPATIBILITY_FILE, { bytes: inputs.compatibility, mode: FILE_MODE }]] as const) : []),
        ] as const)
      : []),
    // The operator on the node has no README: a page in each language, and the example cluster.yaml.
    ...(inputs.quickstart
      ? ([
          [QUICKSTART_FILE, { bytes: inputs.quickstart.en, mode: FILE_MODE }],
          [QUICKSTART_ZH_FILE, { bytes: inputs.quickstart.zh, mode: FILE_MODE }],
          [CLUSTER_EXAMPLE_FILE, { bytes: inputs.quickstart.clusterExample, mode: FILE_MODE }],
          ...[...inputs.quickstart.ansible].map(([rel, bytes]) => [`${ANSIBLE_DIR}/${rel}`, { bytes, mode: FILE_MODE }] as const),
        ] as const)
      : []),
  ])
  return { data, lock: bundleLock }
}

/** Where a file of the lock lands in the bundle (the runtime: its binary). */
export const bundlePathOf = (f: LockedFile): string => (f.name === RUNTIME_COMPONENT ? RUNTIME_NODE : filePath(f.file))
