import { mkdir, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { describe, expect, it } from 'vitest'
import { Sha256 } from '../../../bundle/digest.js'
import type { BundleImage } from '../../../bundle/open.js'
import { planImport } from '../../../installer/phases/images.js'
import { memoryBundle } from '../../support/memory-host.js'

/**
 * The import plan on hand-made images: each a manifest naming a config and its layers, written
 * where the bundle's layout keeps blobs. Layers are named by letter; a shared letter is a
 * shared blob.
 */
async function imagesOf(layers: Record<string, string[]>) {
  const bundle = await memoryBundle()
  const blob = async (bytes: Buffer) => {
    const d = Sha256.of(bytes)
    await mkdir(dirname(bundle.layout.blobPath(d)), { recursive: true })
    await writeFile(bundle.layout.blobPath(d), bytes)
    return d
  }
  const images: BundleImage[] = []
  for (const [name, ls] of Object.entries(layers)) {
    const config = await blob(Buffer.from(`config of ${name}`))
    const layerDigests = await Promise.all(ls.map((l) => blob(Buffer.from(`layer ${l}`))))
    const manifest = Buffer.from(JSON.stringify({ config: { digest: config.oci }, layers: layerDigests.map((d) => ({ digest: d.oci })) }))
    images.push({ name, manifest: await blob(manifest), mediaType: 'application/vnd.oci.image.manifest.v1+json', size: manifest.length, ref: 'v1' })
  }
  return { bundle, images }
}
const names = (list: BundleImage[]) => list.map((i) => i.name)

describe('the import plan', () => {
  it('sends the image with most shared layers first, alone; the rest in groups joined by what they still share, no blob in two', async () => {
    const { bundle, images } = await imagesOf({
      'calico/node': ['base', 'calico', 'node'],
      'calico/cni': ['base', 'calico', 'cni'],
      'calico/kube-controllers': ['base', 'kc'],
      'kube-apiserver': ['distroless', 'apiserver'],
      'kube-proxy': ['distroless', 'proxy'],
      pause: ['pause'],
    })
    const plan = await planImport(bundle, images)
    expect(names(plan.first)).toEqual(['calico/node'])
    expect(plan.groups.map(names).sort()).toEqual([['calico/cni'], ['calico/kube-controllers'], ['kube-apiserver', 'kube-proxy'], ['pause']])
  })

  it('imports two images or fewer in one stream: nothing to split', async () => {
    const { bundle, images } = await imagesOf({ a: ['x'], b: ['x'] })
    expect(await planImport(bundle, images)).toEqual({ first: images, groups: [], firstBlobs: new Set() })
  })
})
