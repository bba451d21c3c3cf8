import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { LOCK_FILE, RUNTIME_COMPONENT, SUMS_FILE } from '../../bundle/layout.js'
import { parseLock, type Lock } from '../../bundle/lock.js'
import { bundleData, planBundle } from '../../builder/plan.js'
import { REPO } from '../support/fake-upstream.js'

const lock = async (): Promise<Lock> => parseLock(await readFile(join(REPO, 'bundle.lock.json'), 'utf8'), 'bundle.lock.json')

describe('planBundle: what a bundle carries, from the lock alone', () => {
  it('names the bundle, and plans every file and package of the platform once, with its source', async () => {
    const l = await lock()
    const plan = planBundle(l, 'linux/arm64', ['debian-12'], 'bundle.lock.json')
    expect(plan.id).toEqual({
      name: `kube-airgap-v${l.kubernetes}-linux-arm64`,
      tarName: `kube-airgap-v${l.kubernetes}-linux-arm64.tar`,
      kubernetes: l.kubernetes,
      platform: 'linux/arm64',
    })
    const rels = plan.downloads.map((d) => d.rel)
    expect(new Set(rels).size).toBe(rels.length)
    const files = plan.downloads.filter((d) => d.rel.startsWith('files/'))
    const packages = plan.downloads.filter((d) => d.rel.startsWith('packages/'))
    expect(files.length).toBe(plan.files.length)
    expect(files.length).toBeGreaterThan(5)
    expect(packages.length).toBe(l.packages.filter((p) => p.release === 'debian-12' && p.platform === 'linux/arm64').length)
    expect(packages.length).toBeGreaterThan(0)
    for (const p of packages) expect(p.rel, p.label).toMatch(/^packages\/debian-12\/.*_(arm64|all)\.deb$/)
    expect(plan.downloads.every((d) => !d.url.includes('amd64') || d.rel.includes('all'))).toBe(true)
    expect(plan.runtime?.label).toMatch(/^node /)
    expect(plan.manifests.map((m) => m.rel)).toEqual([expect.stringMatching(/calico/)])
    // A package a pool may drop has the snapshot service as its fallback.
    expect(packages.filter((p) => p.fallback).length).toBe(packages.length)
  })

  it('an image lock (or --images-only): no files, no runtime, named by the images it pins', async () => {
    const l = await lock()
    const images = { ...l, files: [], packages: [] }
    const plan = planBundle(images, 'linux/amd64', undefined, 'x.json')
    expect(plan.id.name).toMatch(/^kube-airgap-images-[0-9a-f]{12}-linux-amd64$/)
    expect(plan.downloads).toEqual([])
    expect(plan.runtime).toBeUndefined()
    // Other images, another name; the same images, the same name.
    expect(planBundle({ ...images, images: images.images.slice(1) }, 'linux/amd64', undefined, 'x.json').id.name).not.toBe(plan.id.name)
    expect(planBundle({ ...images, kubernetes: '' }, 'linux/amd64', undefined, 'x.json').id.name).toBe(plan.id.name)
  })

  it('refuses a platform the lock lacks, a release it has no packages for, a lock without the runtime', async () => {
    const l = await lock()
    expect(() => planBundle({ ...l, platforms: ['linux/amd64'] }, 'linux/arm64', undefined, 'x.json')).toThrow(/^x\.json has no linux\/arm64 files/)
    expect(() => planBundle(l, 'linux/amd64', ['fedora-40'], 'x.json')).toThrow(/--os fedora-40: the lock has no packages for it/)
    expect(() => planBundle({ ...l, files: l.files.filter((f) => f.name !== RUNTIME_COMPONENT) }, 'linux/amd64', undefined, 'x.json')).toThrow(
      /pins no Node\.js runtime/,
    )
  })

  it('makes the same build-time files from the same inputs', async () => {
    const l = await lock()
    const plan = planBundle(l, 'linux/amd64', undefined, 'bundle.lock.json')
    const inputs = { installer: Buffer.from('installer'), kubeadmTable: Buffer.from('table'), toolVersion: '0.0.0' }
    const a = bundleData(l, plan, undefined, { planned: [], locked: [] }, inputs)
    const b = bundleData(l, plan, undefined, { planned: [], locked: [] }, inputs)
    expect([...a.data.keys()].sort()).toEqual([...b.data.keys()].sort())
    for (const [k, v] of a.data) expect(v.bytes.equals(b.data.get(k)!.bytes), k).toBe(true)
    expect(a.data.has(SUMS_FILE)).toBe(false)
    expect(a.lock.platforms).toEqual(['linux/amd64'])
    expect(JSON.parse(a.data.get(LOCK_FILE)!.bytes.toString()).platforms).toEqual(['linux/amd64'])
  })
})
