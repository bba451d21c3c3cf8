import { readFile } from 'node:fs/promises'
import { integrityError, Sha256 } from './digest.js'
import { KaError } from './errors.js'
import { IMAGE_INDEX, imageBlobPath } from './layout.js'
import { ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, MediaType, type OciPlatform } from './oci.js'

/** One image of the bundle's layout: its canonical name and the platform manifest carried for it. */
export interface LayoutImage {
  /** The canonical name containerd imports it as (`registry.k8s.io/pause:3.9`). */
  name: string
  /** The platform manifest (what `ctr images ls` shows as the image's digest). */
  manifest: Sha256
  mediaType: string
  size: number
  platform?: OciPlatform
  /** The tag, or the pinned digest for an image locked by digest alone. */
  ref: string
}

/**
 * The bundle's images as one OCI image layout (`images/`), read and written here only, in
 * the manner of go-containerregistry's `layout.Path`: the builder writes the index, verify,
 * inspect and the installer read it, and every blob's path comes from its digest.
 */
export class ImageLayout {
  /** `at`: where a file of the unpacked bundle is (a delta's blobs may be in its old bundle). */
  constructor(private readonly at: (rel: string) => string) {}

  /** `images/index.json`: one manifest per image, named the way containerd's importer reads. */
  static indexBytes(images: readonly LayoutImage[], pretty = true): Buffer {
    const manifests = images.map((im) => ({
      mediaType: im.mediaType,
      digest: im.manifest.oci,
      size: im.size,
      ...(im.platform ? { platform: im.platform } : {}),
      annotations: { [ANNOTATION_IMAGE_NAME]: im.name, [ANNOTATION_REF_NAME]: im.ref },
    }))
    const doc = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }
    return Buffer.from(pretty ? `${JSON.stringify(doc, null, 2)}\n` : JSON.stringify(doc))
  }

  /**
   * The images an index names, in its order. Anything that is not an index of sha256
   * manifests with names is one EVERIFY line (verify reports it as the index's problem).
   */
  static parseIndex(text: string | Buffer, where = IMAGE_INDEX): LayoutImage[] {
    const bad = (why: string): never => {
      throw new KaError('EVERIFY', `${where}: not an OCI image index (${why}); do not install it: copy or build the bundle again`)
    }
    let doc: { manifests?: unknown }
    try {
      doc = JSON.parse(text.toString()) as { manifests?: unknown }
    } catch {
      return bad('not JSON')
    }
    if (typeof doc !== 'object' || doc === null || !Array.isArray(doc.manifests)) return bad('no manifests')
    return doc.manifests.map((m: Record<string, unknown> | null, i): LayoutImage => {
      if (typeof m !== 'object' || m === null) return bad(`manifests[${i}] is not a descriptor`)
      const annotations = (typeof m.annotations === 'object' && m.annotations !== null ? m.annotations : {}) as Record<string, unknown>
      let manifest: Sha256
      try {
        manifest = Sha256.fromOci(String(m.digest))
      } catch {
        return bad(`manifests[${i}] has digest ${JSON.stringify(m.digest)}`)
      }
      const size =
        typeof m.size === 'number' && Number.isSafeInteger(m.size) && m.size >= 0 ? m.size : bad(`manifests[${i}] has size ${JSON.stringify(m.size)}`)
      return {
        name: typeof annotations[ANNOTATION_IMAGE_NAME] === 'string' ? annotations[ANNOTATION_IMAGE_NAME] : '',
        manifest,
        mediaType: typeof m.mediaType === 'string' ? m.mediaType : MediaType.ociManifest,
        size,
        ...(typeof m.platform === 'object' && m.platform !== null ? { platform: m.platform as OciPlatform } : {}),
        ref: typeof annotations[ANNOTATION_REF_NAME] === 'string' ? annotations[ANNOTATION_REF_NAME] : '',
      }
    })
  }

  /** Where a blob lives on disk. */
  blobPath(d: Sha256): string {
    return this.at(imageBlobPath(d.hex))
  }

  /**
   * The blobs an image consists of: its manifest, config and layers. The manifest is read
   * and checked against its name (containerd checks the rest as it imports them).
   */
  async blobsOf(manifest: Sha256): Promise<Sha256[]> {
    const bytes = await readFile(this.blobPath(manifest))
    const got = Sha256.of(bytes)
    if (!got.equals(manifest)) throw integrityError(imageBlobPath(manifest.hex), manifest, got)
    const doc = JSON.parse(bytes.toString('utf8')) as { config: { digest: string }; layers: { digest: string }[] }
    return [manifest, ...[doc.config, ...doc.layers].map((d) => Sha256.fromOci(d.digest))]
  }
}
