import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { parseManifest } from '../../builder/lock/manifest.js'
import { DEFAULT_MANIFEST } from '../support/fake-upstream.js'

describe('the manifest', () => {
  const text = (etcd: string) => `kubernetes: 1.29.3\nplatforms: [linux/amd64]\ncomponents:\n  etcd: ${etcd}\nimages:\n  - registry.k8s.io/etcd:3.5.12-0\n`

  it("pins the etcd clients of the etcd the cluster runs: another version than the etcd image's is refused, naming both", () => {
    expect(parseManifest(text('3.5.12'), 'm.yaml').components.get('etcd')).toBe('3.5.12')
    expect(() => parseManifest(text('3.5.13'), 'm.yaml')).toThrow(
      /components\.etcd.*is 3\.5\.13, but the etcd image is 3\.5\.12: give the version of the etcd the cluster runs \(3\.5\.12\)/,
    )
  })

  it('a manifest of images alone names no Kubernetes and locks every platform; it must list images', () => {
    const m = parseManifest('images:\n  - docker.io/library/shop-api:2.0\n', 'apps.yaml')
    expect(m.kubernetes).toBe('')
    expect(m.platforms).toEqual(['linux/amd64', 'linux/arm64'])
    expect(m.images.map((i) => i.ref)).toEqual(['docker.io/library/shop-api:2.0'])
    expect(() => parseManifest('platforms: [linux/amd64]\n', 'apps.yaml')).toThrow(/images.*must list the images/)
    expect(() => parseManifest('components: {}\nimages: []\n', 'm.yaml')).toThrow(/kubernetes.*must be a version/)
  })

  it("the default manifest's etcd clients are its etcd image's version", async () => {
    const m = parseManifest(await readFile(DEFAULT_MANIFEST, 'utf8'), 'default.yaml')
    expect(m.images.some((i) => i.ref === `registry.k8s.io/etcd:${m.components.get('etcd')}-0`)).toBe(true)
  })
})
