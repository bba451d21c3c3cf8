import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Cache } from '../../builder/download/cache.js'
import { httpDefaults, parseMirror } from '../../builder/download/http.js'
import { createLock } from '../../builder/lock/lock.js'
import { parseManifest } from '../../builder/lock/manifest.js'
import { releaseNamed } from '../../builder/packages/releases.js'
import { parseLock, serializeLock } from '../../bundle/lock.js'
import { archOf } from '../../bundle/platform.js'
import { REAL_FILES, REAL_SHA256 } from '../fixtures/upstream-facts.js'
import { DEFAULT_MANIFEST, fakeUpstream, REPO, type FakeUpstream } from '../support/fake-upstream.js'
import { busyboxBinary, image, layer } from '../support/images.js'
import { startRegistry, type TestRegistry } from '../support/registry.js'
import { parseRegistryMirror } from '../../builder/images/registry.js'
import { DockerCredentials } from '../../builder/images/credentials.js'
import { REFERENCE } from '../support/world.js'

const LOCK = join(REPO, 'bundle.lock.json')

describe('the committed default lock', () => {
  let dir: string
  let fake: FakeUpstream
  let hub: TestRegistry
  beforeAll(async () => {
    // Calico's images have no known digest: `bundle lock` resolves them from the registry,
    // here a local one standing in for docker.io.
    dir = await mkdtemp(join(tmpdir(), 'ka-deflock-'))
    hub = await startRegistry(join(dir, 'hub'))
    const base = layer({ 'bin/busybox': { data: await busyboxBinary(), mode: 0o755 } })
    for (const name of ['cni', 'node', 'kube-controllers']) {
      const im = image({ os: 'linux', architecture: 'amd64' }, [base], ['/bin/busybox', 'true'])
      await hub.push(`calico/${name}`, 'v3.28.0', im.manifest, [im])
    }
    // Upstream as it really is: checksum files carrying the published hashes, and the
    // two files upstream publishes no checksum for served from the reference copies.
    fake = await fakeUpstream(join(dir, 'up'), {
      claim: (w) => REAL_SHA256[w.name]?.[archOf(w.platform!)],
      content: async (w) => {
        const ref = REAL_FILES[w.name]
        return ref ? readFile(join(REFERENCE, ref.reference)) : undefined
      },
    })
  })
  afterAll(async () => {
    await fake.close()
    await hub.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('is exactly what `bundle lock` makes of manifests/default.yaml with the real upstream checksums', async () => {
    const lock = await createLock(fake.manifest, {
      cache: new Cache(join(dir, 'cache')),
      http: httpDefaults(),
      mirrors: fake.mirrors.map(parseMirror),
      registryMirrors: [parseRegistryMirror(`docker.io=${hub.url}`)],
      credentials: new DockerCredentials({ configDir: join(dir, 'none') }),
      // The real kubeadm is not served here (its bytes are not upstream's): the table answers, as on a machine that cannot run it.
      runKubeadm: false,
    })
    // The registry's answers for Calico are the stand-in's: the committed lock leaves them
    // to be resolved online (upstream-facts.md does not know them).
    const calico = lock.images.filter((i) => i.ref.startsWith('docker.io/calico/'))
    expect(calico.map((i) => i.digest)).toHaveLength(3)
    for (const i of calico) {
      expect(i.digest).toBeDefined()
      delete i.digest
    }
    const committed = parseLock(await readFile(LOCK, 'utf8'))
    if (process.env.UPDATE_DEFAULT_LOCK) {
      // Refreshing: the OS packages from the distributions' real archives (their signatures
      // checked), everything else as above. Only here does a test reach an archive.
      const full = parseManifest(await readFile(DEFAULT_MANIFEST, 'utf8'), 'manifests/default.yaml')
      lock.packages = (
        await createLock(
          { ...full, images: [] },
          { cache: new Cache(join(dir, 'cache')), http: httpDefaults(), mirrors: fake.mirrors.map(parseMirror), runKubeadm: false },
        )
      ).packages
      await writeFile(LOCK, serializeLock(lock))
      return
    }
    // The packages are checked for consistency below, not re-resolved against a live archive.
    expect(serializeLock(lock)).toBe(serializeLock({ ...committed, packages: [] }))
    expect(await readFile(LOCK, 'utf8')).toBe(serializeLock(committed))
  })

  it('pins a complete, well-formed OS package set for every release and platform the manifest names', async () => {
    const lock = parseLock(await readFile(LOCK, 'utf8'))
    const manifest = parseManifest(await readFile(DEFAULT_MANIFEST, 'utf8'), 'manifests/default.yaml')
    const sets = manifest.platforms.flatMap((platform) =>
      manifest.packages.releases.filter((r) => !r.platforms || r.platforms.includes(platform)).map((r) => ({ release: r.id, platform })),
    )
    expect(sets.length).toBeGreaterThan(0)
    for (const { release, platform } of sets) {
      const set = lock.packages.filter((p) => p.release === release && p.platform === platform)
      const at = `${release} ${platform}`
      // Every name the manifest asks for, once; each with its dependencies' libraries.
      for (const n of manifest.packages.names)
        expect(
          set.filter((p) => p.name === n),
          `${at} ${n}`,
        ).toHaveLength(1)
      expect(new Set(set.map((p) => p.name)).size, at).toBe(set.length)
      expect(
        set.some((p) => p.name.startsWith('libnetfilter-conntrack')),
        `${at}: conntrack's library`,
      ).toBe(true)
      const r = releaseNamed(release)!
      const archives = r.suites.map((s) => (s.archive ?? r.archive)(archOf(platform)))
      for (const p of set) {
        expect(
          archives.some((a) => p.url.startsWith(`${a}/pool/`)),
          `${at} ${p.url}`,
        ).toBe(true)
        expect(p.url.endsWith(`/${p.file}`)).toBe(true)
        expect(p.file).toMatch(new RegExp(`^${p.name.replace(/[+.]/g, '\\$&')}_[^_]+_(${archOf(platform)}|all)\\.deb$`))
        expect(p.snapshot, `${at} ${p.name}`).toMatch(/^https:\/\/snapshot\.(debian\.org\/archive|ubuntu\.com)\/.+\/\d{8}T\d{6}Z\/pool\//)
        expect(p.snapshot!.endsWith(`/${p.file}`)).toBe(true)
        expect(p.size).toBeGreaterThan(0)
      }
    }
    // Nothing beyond what the manifest names.
    expect(lock.packages.length).toBeGreaterThan(0)
    expect(lock.packages.every((p) => sets.some((s) => s.release === p.release && s.platform === p.platform))).toBe(true)
  })

  it('pins both platforms, ten images, and the published hashes', async () => {
    const lock = parseLock(await readFile(LOCK, 'utf8'))
    expect(lock.kubernetes).toBe('1.29.3')
    expect(lock.platforms).toEqual(['linux/amd64', 'linux/arm64'])
    for (const [name, byArch] of Object.entries(REAL_SHA256)) {
      for (const arch of ['amd64', 'arm64'] as const) {
        const f = lock.files.find((x) => x.name === name && x.platform === `linux/${arch}`)
        expect(f?.integrity.hex, `${name} ${arch}`).toBe(byArch[arch])
      }
    }
    for (const [name, real] of Object.entries(REAL_FILES)) expect(lock.files.find((f) => f.name === name)?.integrity.hex).toBe(real.sha256)
    expect(lock.images).toHaveLength(10)
    expect(lock.images.filter((i) => i.digest).map((i) => i.ref)).toHaveLength(7)
    expect(lock.images.find((i) => i.ref === 'registry.k8s.io/pause:3.9')?.digest?.hex).toBe('7031c1b283388d2c2e09b57badb803c05ebed362dc88d84b480cc47f72a21097')
  })
})
