import yaml from 'js-yaml'
import { execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { CACHE_FORMAT } from '../../builder/download/cache.js'
import { C } from '../../bundle/components.js'
import { Sha256 } from '../../bundle/digest.js'
import { parseLock } from '../../bundle/lock.js'
import { parseImageRef } from '../../bundle/reference.js'
import { bundleCli, CLI } from '../support/cli.js'
import { inFlight } from '../support/gauge.js'
import type { FakeUpstream } from '../support/fake-upstream.js'
import { startProxy } from '../support/proxy.js'
import { EXTRA_IMAGE, lockWorld, startWorld, type World } from '../support/world.js'

/**
 * `bundle lock` and `bundle build` against a real HTTP upstream on loopback that serves
 * generated artifacts at the canonical paths, with faults on demand.
 */
let dir: string
let world: World
let fake: FakeUpstream
let lockPath: string
const BIG = 6 << 20

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-build-'))
  // containerd (amd64) is made large enough to cut, throttle and kill in the middle of.
  world = await startWorld(dir, { size: (w) => (w.name === 'containerd' && w.platform === 'linux/amd64' ? BIG : 3000 + w.url.length * 37) })
  fake = world.fake
  lockPath = join(dir, 'bundle.lock.json')
  await lockWorld(world, lockPath, join(dir, 'lock-cache'))
})
afterAll(async () => {
  await world.close()
  await rm(dir, { recursive: true, force: true })
})
afterEach(() => {
  fake.up.clearFaults()
  fake.up.throttle = 0
})

const mirrorArgs = (): string[] => world.args
let n = 0
const fresh = async (): Promise<{ out: string; cache: string }> => {
  const base = join(dir, `run-${n++}`)
  return { out: join(base, 'out'), cache: join(base, 'cache') }
}
const build = (out: string, cache: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}, onSpawn?: (c: ChildProcess) => void) =>
  bundleCli(['build', '--lock', lockPath, '--out', out, '--cache', cache, ...mirrorArgs(), ...extra], { env, ...(onSpawn ? { onSpawn } : {}) })
/** Kills the build with SIGKILL as soon as `ready` says so (asked every 20 ms; a throw is a no). */
const killWhen = (ready: () => Promise<boolean>) => (child: ChildProcess) => {
  const timer = setInterval(() => {
    void ready().then(
      (yes) => {
        if (!yes) return
        clearInterval(timer)
        child.kill('SIGKILL')
      },
      () => {},
    )
  }, 20)
  child.on('close', () => clearInterval(timer))
}
/** Builds again at full speed into the same cache and out folder; the requests it made for `path`. */
const rebuild = async (out: string, cache: string, path: string) => {
  fake.up.throttle = 0
  const start = fake.up.log.length
  const r = await build(out, cache)
  expect(r.code, r.stderr).toBe(0)
  return fake.up.log.slice(start).filter((l) => l.path === path)
}
const TAR = 'kube-airgap-v1.29.3-linux-amd64.tar'
const requestsFor = (path: string) => fake.up.log.filter((l) => l.path === path)

describe('the bundle command', () => {
  it('is one file that loads no module of ours at run time (each costs its start, whatever the command)', async () => {
    const text = await readFile(CLI, 'utf8')
    expect(text.startsWith('#!/usr/bin/env node\n')).toBe(true)
    expect(text.match(/(?:from|import\()\s*["'](?:\.\.?\/)[^"']*["']/g) ?? []).toEqual([])
  })
})

describe('bundle lock', () => {
  it('reads checksum files where upstream publishes them and hashes the rest', async () => {
    const lock = parseLock(await readFile(lockPath, 'utf8'))
    for (const a of fake.artifacts) {
      const f = lock.files.find((x) => x.url === a.want.url)
      expect(f?.integrity.hex, a.want.url).toBe(a.sha256)
    }
    // The lock records canonical URLs, never the mirror's.
    expect(lock.files.length).toBeGreaterThan(0)
    expect(lock.files.every((f) => !f.url.includes('127.0.0.1'))).toBe(true)
    // calico.yaml and containerd.service have no published checksum: they were downloaded.
    expect(lock.files.find((f) => f.name === 'calico-manifest')?.size).toBeGreaterThan(0)
    expect(lock.files.find((f) => f.name === 'containerd')?.size).toBeUndefined()
  })

  it("pins each image to its tag's index digest, under its canonical name", async () => {
    const lock = parseLock(await readFile(lockPath, 'utf8'))
    expect(lock.images).toHaveLength(11)
    for (const im of lock.images) expect(im.digest?.oci, im.ref).toBe(world.images.get(im.ref)!.top.digest)
    expect(lock.images.map((i) => i.ref)).toContain('docker.io/calico/node:v3.28.0')
  })
})

describe('bundle build', () => {
  it('builds, verifies, and passes sha256sum -c once unpacked', async () => {
    const { out, cache } = await fresh()
    const r = await build(out, cache, ['--json'])
    expect(r.code, r.stderr).toBe(0)
    const result = JSON.parse(r.stdout)
    expect(result.bundle).toBe(join(out, TAR))
    // containerd, its unit, runc, crictl, kubeadm, kubelet, kubectl, CNI plugins, calicoctl, calico.yaml, etcd (its clients), node.
    expect(result.files).toHaveLength(12)
    expect(await readdir(out)).toEqual([TAR, `${TAR}.sha256`])
    execFileSync('sha256sum', ['-c', `${TAR}.sha256`], { cwd: out })

    const v = await bundleCli(['verify', join(out, TAR)])
    expect(v.code, v.stderr).toBe(0)
    expect(v.stdout).toMatch(/^ok: kube-airgap-v1.29.3-linux-amd64: \d+ files/)

    execFileSync('tar', ['xf', TAR], { cwd: out })
    const unpacked = join(out, 'kube-airgap-v1.29.3-linux-amd64')
    execFileSync('sha256sum', ['--strict', '-c', 'SHA256SUMS'], { cwd: unpacked })
    expect((await bundleCli(['verify', unpacked])).code).toBe(0)
    // Only this platform's files, and the lock reduced to it.
    const files = await readdir(join(unpacked, 'files'))
    expect(files.some((f) => f.includes('arm64'))).toBe(false)
    expect(parseLock(await readFile(join(unpacked, 'bundle.lock.json'), 'utf8')).platforms).toEqual(['linux/amd64'])

    const listing = execFileSync('tar', ['tvf', TAR], { cwd: out, encoding: 'utf8' }).trim().split('\n')
    expect(listing.length).toBeGreaterThan(0)
    expect(listing.every((l) => l.includes(' 0/0 ') && l.includes('2000-01-01 00:00'))).toBe(true)

    const i = await bundleCli(['inspect', join(out, TAR), '--json'])
    const info = JSON.parse(i.stdout)
    expect(info.platform).toBe('linux/amd64')
    expect(info.files.find((f: { name: string }) => f.name === 'containerd').size).toBe(BIG)
    expect(info.images).toHaveLength(11)
  })

  it('fetches nothing on a second build (nor loads the HTTP client) and leaves the same tar as it is; refetches a corrupted cache entry', async () => {
    const { out, cache } = await fresh()
    expect((await build(out, cache)).code).toBe(0)
    const before = fake.up.log.length
    const tar = join(out, TAR)
    const built = await stat(tar)
    // A quarter of a second saved on every build from the cache: undici is loaded on the first request only.
    const hook = join(dir, 'undici-hook.mjs')
    await writeFile(
      hook,
      "import { createRequire } from 'node:module'\nconst cache = createRequire(import.meta.url).cache\n" +
        "process.on('exit', () => { const k = Object.keys(cache); if (k.some((x) => x.includes('/undici/'))) process.stderr.write('undici was loaded\\n'); if (k.some((x) => x.includes('/undici/lib/web/'))) process.stderr.write('undici fetch was loaded\\n') })\n",
    )
    const again = await build(out, cache, [], { NODE_OPTIONS: `--import ${hook}` })
    expect(again.code, again.stderr).toBe(0)
    expect(again.stderr).not.toContain('undici was loaded')
    expect(fake.up.log.length).toBe(before)
    // The very same bytes: not written again (rsync and make see no change).
    expect(await stat(tar)).toMatchObject({ ino: built.ino, mtimeMs: built.mtimeMs })
    // A byte of it changed on disk: the next build writes it anew.
    const damaged = await readFile(tar)
    damaged[damaged.length >> 1] = damaged[damaged.length >> 1]! ^ 1
    await writeFile(tar, damaged)
    expect((await build(out, cache)).code).toBe(0)
    expect((await stat(tar)).ino).not.toBe(built.ino)
    execFileSync('sha256sum', ['-c', `${TAR}.sha256`], { cwd: out })
    // The hook itself sees a build that downloads.
    // ... and only the parts of undici it uses: not its fetch, WebSocket or caches (40 ms before the first request).
    const downloading = await build(out, join(dir, `run-${n++}`), [], { NODE_OPTIONS: `--import ${hook}` })
    expect(downloading.stderr).toContain('undici was loaded')
    expect(downloading.stderr).not.toContain('undici fetch was loaded')

    const containerd = fake.artifact('containerd', 'linux/amd64')
    const blob = join(cache, CACHE_FORMAT, 'blobs', 'sha256', containerd.sha256)
    const bytes = await readFile(blob)
    bytes[1000] = bytes[1000]! ^ 1
    await writeFile(blob, bytes)
    const healed = await build(out, cache)
    expect(healed.code, healed.stderr).toBe(0)
    expect(healed.stderr).toMatch(/corrupt\s+cache entry for containerd/)
    expect(requestsFor(containerd.path).length).toBeGreaterThan(0)
    expect((await Sha256.ofFile(blob)).digest.hex).toBe(containerd.sha256)
  })

  it('gives identical tar bytes for two builds from one lock with separate caches', async () => {
    const a = await fresh()
    const b = await fresh()
    expect((await build(a.out, a.cache)).code).toBe(0)
    expect((await build(b.out, b.cache, ['--concurrency', '1'])).code).toBe(0)
    const [x, y] = await Promise.all([readFile(join(a.out, TAR)), readFile(join(b.out, TAR))])
    expect(x.equals(y)).toBe(true)
    expect(await readFile(join(a.out, `${TAR}.sha256`), 'utf8')).toBe(await readFile(join(b.out, `${TAR}.sha256`), 'utf8'))
  })

  it('fails with EINTEGRITY when upstream serves wrong bytes, and leaves nothing behind', async () => {
    const { out, cache } = await fresh()
    const containerd = fake.artifact('containerd', 'linux/amd64')
    fake.up.fault(containerd.path, { kind: 'wrong-bytes' })
    const r = await build(out, cache)
    expect(r.code).toBe(1)
    const line = r.stderr.trim().split('\n').pop()!
    expect(line).toContain('EINTEGRITY')
    expect(line).toContain('containerd 1.7.16')
    expect(line).toContain(`expected sha256 ${containerd.sha256}`)
    expect(line).toMatch(/got [0-9a-f]{64}/)
    // Whose bytes (the URL, a mirror's here) and what to do.
    expect(line).toMatch(/containerd 1\.7\.16 \(files\/containerd-1\.7\.16-linux-amd64\.tar\.gz\) from http:\/\/127\.0\.0\.1:\d+\/\S+: expected sha256 /)
    expect(line).toMatch(/not the bytes the lock pins, so nothing was kept; if that is a mirror, it serves other bytes \(fetch without it\)/)
    expect(existsSync(join(out, TAR))).toBe(false)
    expect((await readdir(out).catch(() => [])).length).toBe(0)
    expect(existsSync(join(cache, CACHE_FORMAT, 'blobs', 'sha256', containerd.sha256))).toBe(false)
    expect(existsSync(join(cache, CACHE_FORMAT, 'partial', containerd.sha256))).toBe(false)
  })

  it('resumes with Range after a connection cut mid-body', async () => {
    const { out, cache } = await fresh()
    const containerd = fake.artifact('containerd', 'linux/amd64')
    fake.up.fault(containerd.path, { kind: 'cut', afterBytes: 2 << 20, times: 1 })
    const start = fake.up.log.length
    const r = await build(out, cache)
    expect(r.code, r.stderr).toBe(0)
    const reqs = fake.up.log.slice(start).filter((l) => l.path === containerd.path)
    expect(reqs.length).toBe(2)
    expect(reqs[1]!.range).toMatch(/^bytes=[1-9]\d*-$/)
    expect(reqs[1]!.status).toBe(206)
    const sent = reqs.reduce((s, l) => s + l.bytesSent, 0)
    expect(sent).toBeLessThan(BIG * 1.1)
  })

  it('finishes a build killed with SIGKILL mid-download, fetching only the rest', async () => {
    const { out, cache } = await fresh()
    const containerd = fake.artifact('containerd', 'linux/amd64')
    fake.up.throttle = 2 << 20 // 6 MiB at 2 MiB/s: three seconds to kill it in
    const partial = join(cache, CACHE_FORMAT, 'partial', containerd.sha256)
    const first = await build(
      out,
      cache,
      [],
      // One range, never split (a split download killed is the test below): what it kept is the prefix.
      { KUBE_AIRGAP_SEGMENT_MIB: '8' },
      killWhen(async () => (await stat(partial)).size > 1 << 20),
    )
    expect(first.signal).toBe('SIGKILL')
    const kept = (await stat(partial)).size
    expect(kept).toBeGreaterThan(1 << 20)
    expect(kept).toBeLessThan(BIG)

    const reqs = await rebuild(out, cache, containerd.path)
    expect(reqs).toHaveLength(1)
    expect(reqs[0]!.range).toBe(`bytes=${kept}-`)
    expect(reqs[0]!.bytesSent).toBe(BIG - kept)
    expect(await readdir(out)).toEqual([TAR, `${TAR}.sha256`])
    expect((await bundleCli(['verify', join(out, TAR)])).code).toBe(0)
  })

  it('splits a large file over connections as they free up: every byte once, never more connections than --concurrency', async () => {
    const { out, cache } = await fresh()
    const containerd = fake.artifact('containerd', 'linux/amd64')
    fake.up.throttle = 1 << 20 // 6 MiB at 1 MiB/s a connection: long enough to split, and split again
    inFlight.reset()
    const start = fake.up.log.length
    const r = await build(out, cache, ['--concurrency', '4'], { KUBE_AIRGAP_SEGMENT_MIB: '1' })
    expect(r.code, r.stderr).toBe(0)
    const reqs = fake.up.log.slice(start).filter((l) => l.path === containerd.path)
    // The first request takes the whole file; each split asks for the second half of the widest range left.
    expect(reqs[0]).toMatchObject({ status: 200 })
    expect(reqs[0]!.range).toBeUndefined()
    expect(reqs.length).toBeGreaterThanOrEqual(4)
    for (const l of reqs.slice(1)) expect(l).toMatchObject({ status: 206, range: expect.stringMatching(/^bytes=[1-9]\d*-(\d+)?$/) })
    expect(reqs.reduce((n, l) => n + l.bytesSent, 0)).toBeLessThan(BIG * 1.1)
    expect(inFlight.max).toBeLessThanOrEqual(4)
    expect(await readdir(join(cache, CACHE_FORMAT, 'partial'))).toEqual([])
    expect((await bundleCli(['verify', join(out, TAR)])).code).toBe(0)
  })

  it('asks for the runtime tarball first: nothing is packed before it', async () => {
    const { out, cache } = await fresh()
    const files = new Set(fake.artifacts.filter((a) => a.want.name !== 'calico-manifest').map((a) => a.path))
    const start = fake.up.log.length
    const r = await build(out, cache, ['--concurrency', '1'])
    expect(r.code, r.stderr).toBe(0)
    const order = fake.up.log
      .slice(start)
      .filter((l) => l.method === 'GET' && files.has(l.path))
      .map((l) => l.path)
    // One connection: the file that reached it first holds it; the runtime's tarball is next,
    // ahead of every other file (their sizes unpinned, or larger).
    expect(order.indexOf(fake.artifact('node', 'linux/amd64').path), order.join(' ')).toBeLessThanOrEqual(1)
    expect(order.length).toBeGreaterThan(5)
  })

  it("the image manifests, and a single-platform image's config (it names the platform), are not queued behind the files", async () => {
    // The files are held back and fill every connection the build leaves them while the image
    // manifests are read; the user's single-platform image's config is asked for after its
    // manifest, once they all queued. Every image layer waits on it, through the closed world.
    // They are let go once it is asked for, or after 10 s: then it came after them.
    const config = world.images.get(EXTRA_IMAGE)!.amd64.config.digest
    let release = () => {}
    const until = new Promise<void>((r) => (release = r))
    const held = fake.artifacts.filter((a) => a.want.platform !== 'linux/arm64' && a.want.name !== C.calicoManifest && a.want.name !== C.node)
    for (const a of held) fake.up.fault(a.path, { kind: 'hold', until })
    world.front.delay(`${parseImageRef(EXTRA_IMAGE).repository}/manifests/`, 100)
    const since = Date.now()
    let released = Number.POSITIVE_INFINITY
    const asked = () => world.front.log.find((l) => l.at >= since && l.path.endsWith(config))?.at
    const watch = setInterval(() => {
      if (asked() === undefined && Date.now() - since < 10_000) return
      released = Date.now()
      release()
      clearInterval(watch)
    }, 20)
    try {
      const { out, cache } = await fresh()
      const r = await build(out, cache)
      expect(r.code, r.stderr).toBe(0)
    } finally {
      clearInterval(watch)
      release()
      world.front.delay(undefined)
    }
    expect(fake.up.log.filter((l) => l.at >= since && held.some((a) => a.path === l.path))).toHaveLength(held.length)
    expect(asked()).toBeLessThan(released)
  })

  it('a server that does not take ranges gets one connection for the file, as before', async () => {
    const { out, cache } = await fresh()
    const containerd = fake.artifact('containerd', 'linux/amd64')
    fake.up.throttle = 4 << 20
    fake.up.ranges = false
    try {
      const start = fake.up.log.length
      const r = await build(out, cache, ['--concurrency', '4'], { KUBE_AIRGAP_SEGMENT_MIB: '1' })
      expect(r.code, r.stderr).toBe(0)
      expect(fake.up.log.slice(start).filter((l) => l.path === containerd.path)).toMatchObject([{ status: 200, bytesSent: BIG }])
    } finally {
      fake.up.ranges = true
    }
  })

  it('resumes every range of a split download killed with SIGKILL, fetching only the bytes its sidecar says are missing', async () => {
    const { out, cache } = await fresh()
    const containerd = fake.artifact('containerd', 'linux/amd64')
    fake.up.throttle = 512 << 10
    const partial = join(cache, CACHE_FORMAT, 'partial', containerd.sha256)
    const sidecar = `${partial}.ranges`
    const synced = async () => JSON.parse(await readFile(sidecar, 'utf8')).done as [number, number][]
    const first = await build(
      out,
      cache,
      ['--concurrency', '4'],
      { KUBE_AIRGAP_SEGMENT_MIB: '1' },
      killWhen(async () => {
        const d = await synced()
        return d.length >= 2 && d.reduce((n, [a, b]) => n + b - a, 0) > 1 << 20
      }),
    )
    expect(first.signal).toBe('SIGKILL')
    const done = await synced()
    const kept = done.reduce((n, [a, b]) => n + b - a, 0)
    expect(kept).toBeLessThan(BIG)

    const reqs = await rebuild(out, cache, containerd.path)
    // One request per gap, each starting where a synced range ends (or at 0), and nothing fetched twice.
    const gaps = [...(done[0]![0] > 0 ? [0] : []), ...done.map(([, b]) => b).filter((b) => b < BIG)]
    expect(reqs.map((l) => Number(/^bytes=(\d+)-/.exec(l.range ?? 'bytes=0-')![1])).sort((a, b) => a - b)).toEqual(gaps)
    expect(reqs.every((l) => l.status === 206 || (l.status === 200 && l.range === undefined))).toBe(true)
    expect(reqs.reduce((n, l) => n + l.bytesSent, 0)).toBe(BIG - kept)
    expect(existsSync(sidecar)).toBe(false)
    expect((await bundleCli(['verify', join(out, TAR)])).code).toBe(0)
  })

  it('retries 503 and 429 (honouring Retry-After) and fails at once on 404 with the URL redacted', async () => {
    const { out, cache } = await fresh()
    const runc = fake.artifact('runc', 'linux/amd64')
    const kubeadm = fake.artifact('kubeadm', 'linux/amd64')
    fake.up.fault(runc.path, { kind: 'status', status: 503, times: 2 })
    fake.up.fault(kubeadm.path, { kind: 'status', status: 429, times: 1, retryAfter: '1' })
    const start = fake.up.log.length
    const t0 = Date.now()
    const r = await build(out, cache)
    expect(r.code, r.stderr).toBe(0)
    const log = fake.up.log.slice(start)
    expect(log.filter((l) => l.path === runc.path).map((l) => l.status)).toEqual([503, 503, 200])
    const k = log.filter((l) => l.path === kubeadm.path)
    expect(k.map((l) => l.status)).toEqual([429, 200])
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1000)

    // A 404 is final: one request, the URL in the message without the mirror's credentials
    // (a lock itself can hold neither credentials nor a query: hostile.test.ts).
    const lock = JSON.parse(await readFile(lockPath, 'utf8'))
    const broken = lock.files.find((f: { name: string; platform?: string }) => f.name === 'kubectl' && f.platform === 'linux/amd64')
    broken.url = broken.url.replace('https://dl.k8s.io/', 'https://dl.k8s.io/missing/')
    const badLock = join(dir, 'lock-404.json')
    await writeFile(badLock, JSON.stringify(lock))
    const fresh404 = await fresh()
    const before = fake.up.log.length
    const r404 = await bundleCli([
      'build',
      '--lock',
      badLock,
      '--out',
      fresh404.out,
      '--cache',
      fresh404.cache,
      '--mirror',
      `https://dl.k8s.io=http://user:pw@${fake.up.url.slice(7)}/dl.k8s.io`,
      ...world.args.filter((a, i, all) => !a.startsWith('https://dl.k8s.io') && !(a === '--mirror' && all[i + 1]?.startsWith('https://dl.k8s.io'))),
    ])
    expect(r404.code).toBe(1)
    const line = r404.stderr.trim().split('\n').pop()!
    expect(line).toMatch(/EFETCH: kubectl 1\.29\.3 .*HTTP 404/)
    expect(line).toContain('/dl.k8s.io/missing/release/v1.29.3/bin/linux/amd64/kubectl')
    expect(line).not.toContain('s3cret')
    expect(line).not.toContain('pw@')
    expect(fake.up.log.slice(before).filter((l) => l.path.includes('/missing/'))).toHaveLength(1)
  })

  it('goes through HTTP_PROXY, and around it for NO_PROXY hosts', async () => {
    const proxy = await startProxy()
    try {
      const a = await fresh()
      const r = await build(a.out, a.cache, [], { HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url })
      expect(r.code, r.stderr).toBe(0)
      // undici tunnels through the proxy with CONNECT, one tunnel per connection.
      expect(proxy.log.length).toBeGreaterThan(0)
      const hosts = [fake.up.url, world.front.url].map((u) => u.slice('http://'.length))
      expect(proxy.log.length).toBeGreaterThan(0)
      expect(proxy.log.every((l) => l.method === 'CONNECT' && hosts.includes(l.target))).toBe(true)
      expect(new Set(proxy.log.map((l) => l.target)).size).toBe(2)
      const b = await fresh()
      const seen = proxy.log.length
      const r2 = await build(b.out, b.cache, [], { http_proxy: proxy.url, NO_PROXY: '127.0.0.1' })
      expect(r2.code, r2.stderr).toBe(0)
      expect(proxy.log.length).toBe(seen)
    } finally {
      await proxy.close()
    }
  })
})

describe('bad input', () => {
  const cases: [string, (lock: Record<string, any>) => unknown, RegExp][] = [
    ['bad JSON', () => '{"lockVersion": 1,', /not valid JSON/],
    [
      'a missing field',
      (l) => {
        delete l.files[2].url
        return l
      },
      /files\[2\]\.url: missing/,
    ],
    [
      'a bad integrity string',
      (l) => ({ ...l, files: [{ ...l.files[0], integrity: 'sha256-nope' }, ...l.files.slice(1)] }),
      /files\[0\]\.integrity: not a sha256 integrity string/,
    ],
    ['an unknown platform', (l) => ({ ...l, platforms: ['linux/amd64', 'linux/s390x'] }), /platforms\[1\]: unknown platform "linux\/s390x"/],
  ]
  for (const [what, mangle, message] of cases) {
    it(`a lock with ${what}: one line naming the field, exit 2`, async () => {
      const lock = JSON.parse(await readFile(lockPath, 'utf8'))
      const mangled = mangle(lock)
      const path = join(dir, `bad-${what.replace(/\W/g, '-')}.json`)
      await writeFile(path, typeof mangled === 'string' ? mangled : JSON.stringify(mangled))
      const { out, cache } = await fresh()
      const bad = await bundleCli(['build', '--lock', path, '--out', out, '--cache', cache])
      expect(bad.code).toBe(2)
      expect(bad.stderr.trim().split('\n')).toHaveLength(1)
      expect(bad.stderr).toMatch(message)
      expect(bad.stderr).toMatch(/^bundle: ELOCK: /)
    })
  }

  it('one mirrors file instead of the flags (--mirrors or $KUBE_AIRGAP_MIRRORS); every unreachable host named at once, before any download', async () => {
    const file = join(dir, 'mirrors.yaml')
    const registries = Object.fromEntries(world.args.flatMap((a, i) => (world.args[i - 1] === '--registry-mirror' ? [a.split('=')] : [])))
    const files = Object.fromEntries(fake.mirrors.map((m) => m.split('=')))
    await writeFile(file, yaml.dump({ files, registries }))
    const a = await fresh()
    const viaFlag = await bundleCli(['build', '--lock', lockPath, '--out', a.out, '--cache', a.cache, '--mirrors', file])
    expect(viaFlag.code, viaFlag.stderr).toBe(0)
    const b = await fresh()
    const viaEnv = await bundleCli(['build', '--lock', lockPath, '--out', b.out, '--cache', b.cache], { env: { KUBE_AIRGAP_MIRRORS: file } })
    expect(viaEnv.code, viaEnv.stderr).toBe(0)
    expect(await readFile(join(b.out, `${TAR}.sha256`), 'utf8')).toBe(await readFile(join(a.out, `${TAR}.sha256`), 'utf8'))

    // Two hosts down (nothing listens on ports 1 and 9): one line names both, and nothing was fetched.
    await writeFile(
      file,
      yaml.dump({ files: { ...files, 'https://dl.k8s.io': 'http://127.0.0.1:1/k8s' }, registries: { ...registries, 'docker.io': 'http://127.0.0.1:9/hub' } }),
    )
    const c = await fresh()
    const down = await bundleCli(['build', '--lock', lockPath, '--out', c.out, '--cache', c.cache, '--mirrors', file])
    expect(down.code).toBe(1)
    // Every host is asked at once, while calico.yaml (the closed-world check reads it) and the
    // image manifests come: no file and no layer is fetched.
    expect(down.stderr.trim().split('\n').pop()).toMatch(
      /^bundle: EFETCH: 2 of \d+ hosts the lock needs cannot be reached: http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED; for https:\/\/dl\.k8s\.io\/.*\), http:\/\/127\.0\.0\.1:9 \(ECONNREFUSED; for docker\.io\/\S+\); /,
    )
    // With a mirrors file in use, the advice is to fix its lines, not to try china.yaml.
    expect(down.stderr).toContain(`fix or replace their lines in ${file} (or remove them to go direct)`)
    expect(down.stderr).not.toContain('china.yaml')
    // bundle lock asks every host at once too, before any work: the same one line, and no lock written.
    const lockOut = join(c.out, 'down.lock.json')
    const lockDown = await bundleCli(['lock', '--manifest', world.manifestPath, '--out', lockOut, '--cache', c.cache, '--mirrors', file])
    expect(lockDown.code).toBe(1)
    expect(lockDown.stderr.trim().split('\n')).toHaveLength(1)
    expect(lockDown.stderr).toMatch(
      /^bundle: EFETCH: 2 of \d+ hosts the lock needs cannot be reached: http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED; for [^)]*\), http:\/\/127\.0\.0\.1:9 \(ECONNREFUSED; for docker\.io\/\S+\); .*fix or replace their lines in /,
    )
    expect(existsSync(lockOut)).toBe(false)
    const locked = parseLock(await readFile(lockPath, 'utf8')).files
    const calico = locked.find((f) => f.name === 'calico-manifest')!
    const cached = await readdir(join(c.cache, CACHE_FORMAT, 'blobs', 'sha256'))
    expect(cached).toContain(calico.integrity.hex)
    expect(locked.filter((f) => f !== calico && cached.includes(f.integrity.hex))).toEqual([])
    // The rest are image manifests and indexes: small JSON documents.
    for (const hex of cached.filter((h) => h !== calico.integrity.hex)) {
      const text = await readFile(join(c.cache, CACHE_FORMAT, 'blobs', 'sha256', hex), 'utf8')
      expect(text.length, hex).toBeLessThan(64 << 10)
      expect(JSON.parse(text), hex).toHaveProperty('mediaType')
    }
    // A bad mirrors file is one usage line.
    await writeFile(file, 'file:\n  a: b\n')
    const bad = await bundleCli(['build', '--lock', lockPath, '--mirrors', file])
    expect([bad.code, bad.stderr]).toEqual([2, `bundle: EUSAGE: ${file}: unknown key "file" (a mirrors file has files and registries)\n`])
  })

  it('a wrong flag or platform: exit 2 with a usage line', async () => {
    const r = await bundleCli(['build', '--no-such-flag'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/unknown option '--no-such-flag'/)
    const p = await bundleCli(['build', '--platform', 'linux/riscv64'])
    expect(p.code).toBe(2)
    expect(p.stderr).toMatch(/linux\/riscv64/)
    const c = await bundleCli(['build', '--concurrency', '0', '--lock', lockPath])
    expect(c.code).toBe(2)
    expect(c.stderr).toMatch(/--concurrency/)
  })
})
