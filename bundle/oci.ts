import { Sha256 } from './digest.js'
import { KaError } from './errors.js'
import { archOf, type Platform } from './platform.js'

/** OCI and Docker media types, and the annotations containerd's importer reads. */
export const MediaType = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const

export const INDEX_TYPES: readonly string[] = [MediaType.ociIndex, MediaType.dockerList]
export const MANIFEST_TYPES: readonly string[] = [MediaType.ociManifest, MediaType.dockerManifest]
export const ACCEPT_MANIFESTS = [...INDEX_TYPES, ...MANIFEST_TYPES].join(', ')

export const ANNOTATION_IMAGE_NAME = 'io.containerd.image.name'
export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name'
export const OCI_LAYOUT_CONTENT = '{"imageLayoutVersion":"1.0.0"}'

export interface OciPlatform {
  os: string
  architecture: string
  variant?: string
}

export interface Descriptor {
  mediaType: string
  digest: Sha256
  size: number
  platform?: OciPlatform
  annotations?: Record<string, string>
}

export type ManifestDoc =
  | { kind: 'index'; mediaType: string; manifests: Descriptor[] }
  | { kind: 'manifest'; mediaType: string; config: Descriptor; layers: Descriptor[] }

function descriptor(v: unknown, where: string): Descriptor {
  const o = v as Record<string, unknown>
  if (typeof o !== 'object' || o === null) throw new KaError('EREGISTRY', `${where}: not a descriptor`)
  let digest: Sha256
  try {
    digest = Sha256.fromOci(String(o.digest))
  } catch {
    throw new KaError('EREGISTRY', `${where}: digest ${JSON.stringify(o.digest)} is not sha256; only sha256 content is supported`)
  }
  if (typeof o.size !== 'number' || !Number.isSafeInteger(o.size) || o.size < 0) throw new KaError('EREGISTRY', `${where}: bad size ${JSON.stringify(o.size)}`)
  const d: Descriptor = { mediaType: String(o.mediaType ?? ''), digest, size: o.size }
  if (o.platform && typeof o.platform === 'object') d.platform = o.platform as OciPlatform
  if (o.annotations && typeof o.annotations === 'object') d.annotations = o.annotations as Record<string, string>
  return d
}

/** Parses an image index or manifest (OCI or Docker schema 2); schema 1 and other kinds are refused. */
export function parseManifestDoc(data: Buffer, contentType: string | undefined, where: string): ManifestDoc {
  let o: Record<string, unknown>
  try {
    o = JSON.parse(data.toString('utf8')) as Record<string, unknown>
  } catch {
    throw new KaError('EREGISTRY', `${where}: the manifest is not JSON`)
  }
  const mediaType = String(o.mediaType ?? contentType ?? '')
    .split(';')[0]!
    .trim()
  if (o.schemaVersion !== 2)
    throw new KaError('EREGISTRY', `${where}: schema version ${JSON.stringify(o.schemaVersion)} is not supported (only schema 2 and OCI)`)
  if (Array.isArray(o.manifests) || INDEX_TYPES.includes(mediaType)) {
    return {
      kind: 'index',
      mediaType: mediaType || MediaType.ociIndex,
      manifests: ((o.manifests as unknown[]) ?? []).map((m, i) => descriptor(m, `${where}: manifests[${i}]`)),
    }
  }
  if (!o.config) throw new KaError('EREGISTRY', `${where}: neither an index nor an image manifest (${mediaType || 'no media type'})`)
  return {
    kind: 'manifest',
    mediaType: mediaType || MediaType.ociManifest,
    config: descriptor(o.config, `${where}: config`),
    layers: ((o.layers as unknown[]) ?? []).map((l, i) => descriptor(l, `${where}: layers[${i}]`)),
  }
}

const isAttestation = (d: Descriptor): boolean => d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' || d.platform?.os === 'unknown'

/**
 * The manifest for `platform` in an index: linux, the architecture, and for arm64 the
 * `v8` variant or none. Attestation manifests never match.
 */
export function selectPlatform(index: Descriptor[], platform: Platform): Descriptor | undefined {
  const arch = archOf(platform)
  const fits = index.filter((d) => !isAttestation(d) && d.platform?.os === 'linux' && d.platform.architecture === arch)
  const variantOk = (d: Descriptor) =>
    arch === 'arm64' ? d.platform?.variant === undefined || d.platform.variant === 'v8' : d.platform?.variant === undefined || d.platform.variant === 'v1'
  return fits.find(variantOk)
}

export const platformsOf = (index: Descriptor[]): string[] =>
  index
    .filter((d) => !isAttestation(d) && d.platform)
    .map((d) => `${d.platform!.os}/${d.platform!.architecture}${d.platform!.variant ? `/${d.platform!.variant}` : ''}`)
