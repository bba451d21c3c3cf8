import { createCipheriv, createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { gzipSync } from 'node:zlib'
import { Header } from 'tar'

/**
 * Builds small but real container images in memory: gzip'd tar layers, an image config,
 * manifests and indexes in OCI or Docker schema 2 media types. The amd64 fixture runs a
 * real static busybox, so containerd can run it.
 */
export interface Blob {
  mediaType: string
  digest: string
  size: number
  data: Buffer
}

export const MT = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const

export const blob = (mediaType: string, data: Buffer): Blob => ({
  mediaType,
  data,
  size: data.length,
  digest: `sha256:${createHash('sha256').update(data).digest('hex')}`,
})
const json = (mediaType: string, value: unknown): Blob => blob(mediaType, Buffer.from(JSON.stringify(value)))

/** A tar of the given files (path -> bytes, mode), deterministic. */
export function tarOf(files: Record<string, { data: Buffer; mode?: number }>): Buffer {
  const parts: Buffer[] = []
  for (const [path, f] of Object.entries(files).sort()) {
    const h = Buffer.alloc(512)
    new Header({ path, type: 'File', size: f.data.length, mode: f.mode ?? 0o644, uid: 0, gid: 0, mtime: new Date(0) }).encode(h, 0)
    parts.push(h, f.data, Buffer.alloc((512 - (f.data.length % 512)) % 512))
  }
  parts.push(Buffer.alloc(1024))
  return Buffer.concat(parts)
}

export interface Layer {
  blob: Blob
  diffId: string
}

export function layer(files: Record<string, { data: Buffer; mode?: number }>, mediaType: string = MT.ociLayer): Layer {
  const raw = tarOf(files)
  return { blob: blob(mediaType, gzipSync(raw, { level: 1 })), diffId: `sha256:${createHash('sha256').update(raw).digest('hex')}` }
}

export interface ImagePlatform {
  os: string
  architecture: string
  variant?: string
}

export interface Image {
  manifest: Blob
  config: Blob
  layers: Blob[]
  platform: ImagePlatform
}

export function image(platform: ImagePlatform, layers: Layer[], cmd: string[], docker = false): Image {
  const config = json(docker ? MT.dockerConfig : MT.ociConfig, {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: { Cmd: cmd, Env: ['PATH=/bin'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  })
  const desc = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size })
  const manifest = json(docker ? MT.dockerManifest : MT.ociManifest, {
    schemaVersion: 2,
    mediaType: docker ? MT.dockerManifest : MT.ociManifest,
    config: desc(config),
    layers: layers.map((l) => desc(l.blob)),
  })
  return { manifest, config, layers: layers.map((l) => l.blob), platform }
}

/** An index over per-platform images, optionally with a BuildKit-style attestation manifest. */
export function index(images: Image[], opts: { docker?: boolean; attestation?: boolean } = {}): { index: Blob; extra: Blob[] } {
  const manifests: unknown[] = images.map((im) => ({
    mediaType: im.manifest.mediaType,
    digest: im.manifest.digest,
    size: im.manifest.size,
    platform: im.platform,
  }))
  const extra: Blob[] = []
  if (opts.attestation && images[0]) {
    const statement = blob('application/vnd.in-toto+json', Buffer.from('{"_type":"https://in-toto.io/Statement/v0.1"}'))
    const cfg = json(MT.ociConfig, { architecture: 'unknown', os: 'unknown', rootfs: { type: 'layers', diff_ids: [] } })
    const att = json(MT.ociManifest, {
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      config: { mediaType: cfg.mediaType, digest: cfg.digest, size: cfg.size },
      layers: [{ mediaType: statement.mediaType, digest: statement.digest, size: statement.size }],
    })
    extra.push(statement, cfg, att)
    manifests.push({
      mediaType: att.mediaType,
      digest: att.digest,
      size: att.size,
      platform: { os: 'unknown', architecture: 'unknown' },
      annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': images[0].manifest.digest },
    })
  }
  const mt = opts.docker ? MT.dockerList : MT.ociIndex
  return { index: json(mt, { schemaVersion: 2, mediaType: mt, manifests }), extra }
}

/** An uncompressed layer holding `bytes` pseudo-random bytes (for benchmarks: large, cheap to make). */
export function randomLayer(bytes: number, seed: string): Layer {
  const data = createCipheriv('aes-128-ctr', createHash('sha256').update(seed).digest().subarray(0, 16), Buffer.alloc(16)).update(Buffer.alloc(bytes))
  const raw = tarOf({ [`data/${seed.replace(/\W/g, '_')}`]: { data } })
  return { blob: blob('application/vnd.oci.image.layer.v1.tar', raw), diffId: `sha256:${createHash('sha256').update(raw).digest('hex')}` }
}

let busybox: Buffer | undefined
/** The machine's static busybox (Debian's busybox-static), the one real program in the fixtures. */
export async function busyboxBinary(): Promise<Buffer> {
  busybox ??= await readFile('/bin/busybox')
  return busybox
}
