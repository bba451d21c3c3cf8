import { execFileSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CACHE_FORMAT } from '../../builder/download/cache.js'
import { filesFor, parseLock, serializeLock } from '../../bundle/lock.js'
import { bundleCli } from '../support/cli.js'
import { startContainerd } from '../support/containerd.js'
import { EXTRA_IMAGE, lockWorld, startWorld, type World } from '../support/world.js'

/**
 * Images end to end: a real registry (token auth) behind a forwarder that can lie, the real
 * builder, and a real containerd that imports the bundle's images/ into k8s.io with the
 * real ctr and runs a container from one of them.
 */
let dir: string
let world: World
let lockPath: string
const NAME = 'kube-airgap-v1.29.3-linux-amd64'
let n = 0
const fresh = () => {
  const base = join(dir, `run-${n++}`)
  return { out: join(base, 'out'), cache: join(base, 'cache') }
}
const build = (lock: string, out: string, cache: string, extra: string[] = []) =>
  bundleCli(['build', '--lock', lock, '--out', out, '--cache', cache, ...world.args, ...extra])

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-images-'))
  world = await startWorld(dir, { token: true })
  lockPath = join(dir, 'bundle.lock.json')
  await lockWorld(world, lockPath, join(dir, 'lock-cache'))
})
afterAll(async () => {
  await world.close()
  await rm(dir, { recursive: true, force: true })
})

const tarList = (tar: string): string[] =>
  execFileSync('tar', ['tf', tar], { encoding: 'utf8', maxBuffer: 64 << 20 })
    .trim()
    .split('\n')
const blobsIn = (tar: string): Set<string> =>
  new Set(
    tarList(tar)
      .filter((p) => p.includes('/images/blobs/sha256/') && !p.endsWith('/'))
      .map((p) => `sha256:${p.split('/').pop()}`),
  )

describe('images in the bundle', () => {
  it('imports into a real containerd under the canonical names with the platform manifest digests, and runs', async () => {
    const { out, cache } = fresh()
    const r = await build(lockPath, out, cache, ['--json'])
    expect(r.code, r.stderr).toBe(0)
    const result = JSON.parse(r.stdout)
    expect(result.images).toHaveLength(11)
    const info = JSON.parse((await bundleCli(['inspect', join(out, `${NAME}.tar`), '--json'])).stdout)
    for (const im of info.images) expect(im.manifest, im.ref).toBe(world.images.get(im.ref)!.amd64.manifest.digest)
    expect(info.imageBytes).toBeGreaterThan(0)
    execFileSync('tar', ['xf', `${NAME}.tar`], { cwd: out })
    const images = join(out, NAME, 'images')
    const index = JSON.parse(await readFile(join(images, 'index.json'), 'utf8'))
    expect(index.manifests.map((m: { annotations: Record<string, string> }) => m.annotations['io.containerd.image.name'])).toEqual(
      parseLock(await readFile(lockPath, 'utf8')).images.map((i) => i.ref),
    )
    expect(
      index.manifests.find((m: { annotations: Record<string, string> }) => m.annotations['io.containerd.image.name'] === 'registry.k8s.io/pause:3.9')
        .annotations['org.opencontainers.image.ref.name'],
    ).toBe('3.9')

    const ctd = await startContainerd(join(dir, 'containerd'))
    try {
      // images/ streamed as a tar into ctr, as the installer does.
      const tar = spawn('tar', ['-C', images, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] })
      const imp = await ctd.ctr(['-n', 'k8s.io', 'images', 'import', '-'], tar.stdout)
      expect(imp.code, imp.stderr).toBe(0)
      const ls = await ctd.ctr(['-n', 'k8s.io', 'images', 'ls'])
      const rows = ls.stdout
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => l.split(/\s+/))
        // The CRI plugin also names each image by its config digest (its image ID); those are not ours.
        .filter((c) => !c[0]!.startsWith('sha256:'))
      const got = Object.fromEntries(rows.map((c) => [c[0], c[2]]))
      const want = Object.fromEntries([...world.images.values()].map((im) => [im.name, im.amd64.manifest.digest]))
      expect(got).toEqual(want)
      expect((await ctd.ctr(['-n', 'default', 'images', 'ls', '-q'])).stdout.trim()).toBe('')

      const run = await ctd.ctr(['-n', 'k8s.io', 'run', '--rm', 'registry.k8s.io/kube-proxy:v1.29.3', `ka-test-${process.pid}`])
      expect(run.code, run.stderr).toBe(0)
      expect(run.stdout).toBe('registry.k8s.io/kube-proxy:v1.29.3\n')
    } finally {
      await ctd.stop()
    }
  })

  it('an arm64 bundle holds no amd64 blob, and the reverse; a shared layer is stored once', async () => {
    // The user's image is amd64 only: an arm64 build must say so, not ship a wrong image.
    const a = fresh()
    const refused = await build(lockPath, a.out, a.cache, ['--platform', 'linux/arm64'])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/ENOTPINNED: docker\.io\/library\/hello-frontend:1\.0: a single-platform image for linux\/amd64, not linux\/arm64/)
    expect(existsSync(a.out) ? await readdir(a.out) : []).toEqual([])

    const armLock = join(dir, 'arm.lock.json')
    await lockWorld(world, armLock, join(dir, 'lock-cache'), world.manifestText.replace(`  - ${EXTRA_IMAGE}\n`, ''))
    const arm = fresh()
    const amd = fresh()
    expect((await build(armLock, arm.out, arm.cache, ['--platform', 'linux/arm64'])).code).toBe(0)
    expect((await build(armLock, amd.out, amd.cache)).code).toBe(0)
    const armBlobs = blobsIn(join(arm.out, 'kube-airgap-v1.29.3-linux-arm64.tar'))
    const amdBlobs = blobsIn(join(amd.out, `${NAME}.tar`))
    const all = [...world.images.values()].filter((i) => i.arm64)
    const only = (im: (typeof all)[number], which: 'amd64' | 'arm64') => [im[which]!.manifest.digest, im[which]!.config.digest, im[which]!.layers[0]!.digest]
    for (const im of all) {
      for (const d of only(im, 'arm64')) expect([armBlobs.has(d), amdBlobs.has(d)]).toEqual([true, false])
      for (const d of only(im, 'amd64')) expect([amdBlobs.has(d), armBlobs.has(d)]).toEqual([true, false])
      // No index, no attestation manifest.
      expect(armBlobs.has(im.top.digest)).toBe(false)
    }
    // Ten images share one busybox base layer: one entry in the tar.
    const base = all[0]!.amd64.layers[0]!.digest
    expect(all.length).toBeGreaterThan(0)
    expect(all.every((im) => im.amd64.layers[0]!.digest === base)).toBe(true)
    expect(tarList(join(amd.out, `${NAME}.tar`)).filter((p) => p.endsWith(base.slice(7)))).toHaveLength(1)
  })

  it('a second build asks the registry for nothing', async () => {
    const { out, cache } = fresh()
    expect((await build(lockPath, out, cache)).code).toBe(0)
    const before = world.front.log.length
    expect((await build(lockPath, out, cache)).code).toBe(0)
    expect(world.front.log.slice(before)).toEqual([])
  })

  it('a registry that answers 429 twice, then serves, succeeds', async () => {
    const { out, cache } = fresh()
    const start = world.front.log.length
    world.front.failNext('/manifests/', 429, 2)
    const r = await build(lockPath, out, cache)
    expect(r.code, r.stderr).toBe(0)
    expect(world.front.log.slice(start).filter((l) => l.status === 429)).toHaveLength(2)
  })

  it('a registry serving a manifest or a blob that does not match its digest fails with EINTEGRITY naming the image', async () => {
    const node = world.images.get('docker.io/calico/node:v3.28.0')!
    for (const target of [node.amd64.manifest.digest, node.amd64.layers[1]!.digest]) {
      const { out, cache } = fresh()
      world.front.corrupt(target)
      try {
        const r = await build(lockPath, out, cache)
        expect(r.code).toBe(1)
        const line = r.stderr.trim().split('\n').pop()!
        expect(line).toMatch(/^bundle: EINTEGRITY: docker\.io\/calico\/node:v3\.28\.0/)
        expect(existsSync(join(out, `${NAME}.tar`))).toBe(false)
        expect(existsSync(join(cache, CACHE_FORMAT, 'blobs', 'sha256', target.slice(7)))).toBe(false)
      } finally {
        world.front.corrupt(undefined)
      }
    }
  })

  it('a missing image fails the closed-world check, listing it, before any layer is pulled or anything written; the files came meanwhile', async () => {
    const lock = parseLock(await readFile(lockPath, 'utf8'))
    lock.images = lock.images.filter((i) => i.ref !== 'docker.io/calico/node:v3.28.0' && i.ref !== 'registry.k8s.io/pause:3.9')
    const broken = join(dir, 'missing.lock.json')
    await writeFile(broken, serializeLock(lock))
    const { out, cache } = fresh()
    // By when each request came, not by its place in the log: a request of the build before,
    // cut off by its failure, may be logged only now, when the registry answers it.
    const t0 = Date.now()
    // The image manifests (which the check waits for) come slowly: the files do not wait.
    world.front.delay('/manifests/', 500)
    const r = await build(broken, out, cache)
    world.front.delay(undefined)
    expect(r.code).toBe(2)
    const line = r.stderr.trim().split('\n').pop()!
    expect(line).toMatch(/ENOTPINNED: the lock lacks 2 images the nodes will ask for: /)
    expect(line).toContain("registry.k8s.io/pause:3.9 (kubeadm 1.29.3 and containerd's sandbox_image)")
    expect(line).toContain('docker.io/calico/node:v3.28.0 (calico.yaml)')
    // The image manifests (and a single-platform image's config, which says its platform) are
    // read while the check runs: small, and every layer waits on them. No layer is.
    const layers = [...world.images.values()].flatMap((im) => [im.amd64, im.arm64].flatMap((p) => p?.layers.map((l) => l.digest) ?? []))
    expect(world.front.log.filter((l) => l.at >= t0 && layers.some((d) => l.path.endsWith(d)))).toEqual([])
    expect(existsSync(out) ? await readdir(out) : []).toEqual([])
    // Every pinned file started with the check and is in the cache for the next try.
    const files = filesFor(lock, 'linux/amd64')
    const cached = new Set(await readdir(join(cache, CACHE_FORMAT, 'blobs', 'sha256')))
    expect(files.filter((f) => !cached.has(f.integrity.hex)).map((f) => f.name)).toEqual([])
  })

  it('an image without a digest is resolved at build time, with a warning, and the bundle lock records it', async () => {
    const lock = parseLock(await readFile(lockPath, 'utf8'))
    const extra = lock.images.find((i) => i.ref === EXTRA_IMAGE)!
    delete extra.digest
    const loose = join(dir, 'loose.lock.json')
    await writeFile(loose, serializeLock(lock))
    const { out, cache } = fresh()
    const r = await build(loose, out, cache)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/WARN +docker\.io\/library\/hello-frontend:1\.0 has no digest in the lock; resolved it to sha256:/)
    const inside = execFileSync('tar', ['xOf', join(out, `${NAME}.tar`), `${NAME}/bundle.lock.json`], { encoding: 'utf8' })
    expect(parseLock(inside).images.find((i) => i.ref === EXTRA_IMAGE)?.digest?.oci).toBe(world.images.get(EXTRA_IMAGE)!.top.digest)
  })
})
