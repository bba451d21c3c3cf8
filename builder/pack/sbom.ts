import type { Lock } from '../../bundle/lock.js'
import type { PlannedImage } from '../images/images.js'

/**
 * The bundle's software bill of materials, CycloneDX 1.5 JSON: chosen over SPDX because it
 * has first-class container images (with purl `pkg:oci`) and OS packages (`pkg:deb`) and its
 * published schema ships in a well-kept npm package, so the test validates against it. Every
 * file, image and package with version, download location, sha256 and package URL. No
 * timestamp or serial number: the same lock gives the same bytes.
 */
export function cycloneDx(name: string, lock: Lock, images: readonly PlannedImage[], toolVersion: string): Buffer {
  const enc = encodeURIComponent
  const components = [
    ...lock.files.map((f) => ({
      type: 'file',
      'bom-ref': `file:${f.file}`,
      name: f.name,
      version: f.version,
      hashes: [{ alg: 'SHA-256', content: f.integrity.hex }],
      purl: `pkg:generic/${enc(f.name)}@${enc(f.version)}?download_url=${enc(f.url)}&checksum=sha256:${f.integrity.hex}`,
      externalReferences: [{ type: 'distribution', url: f.url }],
    })),
    ...images.map((im) => {
      const repo = im.ref.repository.split('/').pop()!
      return {
        type: 'container',
        'bom-ref': `image:${im.name}`,
        name: im.name,
        version: im.ref.tag ?? im.pinned.oci,
        hashes: [{ alg: 'SHA-256', content: im.manifest.digest.hex }],
        purl: `pkg:oci/${enc(repo)}@${enc(im.pinned.oci)}?repository_url=${enc(`${im.ref.registry}/${im.ref.repository}`)}${im.ref.tag ? `&tag=${enc(im.ref.tag)}` : ''}`,
        externalReferences: [{ type: 'distribution', url: `https://${im.ref.registry}/v2/${im.ref.repository}/manifests/${im.pinned.oci}` }],
      }
    }),
    ...lock.packages.map((p) => ({
      type: 'library',
      'bom-ref': `deb:${p.release}:${p.file}`,
      name: p.name,
      version: p.version,
      hashes: [{ alg: 'SHA-256', content: p.integrity.hex }],
      purl: `pkg:deb/${p.release.split('-')[0]}/${enc(p.name)}@${enc(p.version)}?arch=${p.platform.split('/')[1]}&distro=${enc(p.release)}`,
      externalReferences: [{ type: 'distribution', url: p.url }],
    })),
  ]
  const bom = {
    bomFormat: 'CycloneDX',
    specVersion: '1.5',
    version: 1,
    metadata: {
      tools: { components: [{ type: 'application', name: 'kube-airgap', version: toolVersion }] },
      component: { type: 'application', 'bom-ref': 'bundle', name, ...(lock.kubernetes ? { version: lock.kubernetes } : {}) },
    },
    components,
    dependencies: [{ ref: 'bundle', dependsOn: components.map((c) => c['bom-ref']) }],
  }
  return Buffer.from(`${JSON.stringify(bom, null, 2)}\n`)
}
