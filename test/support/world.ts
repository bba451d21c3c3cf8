import { execFileSync } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { manifestImages } from '../../bundle/closed-world.js'
import { imageName, parseImageRef } from '../../bundle/reference.js'
import { makeArtifacts } from './artifacts.js'
import { bundleCli } from './cli.js'
import { DEFAULT_MANIFEST, fakeUpstream, REPO, withoutPackages, type FakeOptions, type FakeUpstream } from './fake-upstream.js'
import { startForwarder, type Forwarder } from './forwarder.js'
import { busyboxBinary, image, index, layer, MT, randomLayer, type Blob, type Image } from './images.js'
import { startRegistry, type TestRegistry } from './registry.js'

/** Real upstream files (Calico's manifest, containerd's unit) the tests serve, vendored from shared/reference so a fresh clone runs every test. */
export const REFERENCE = join(REPO, 'test', 'fixtures', 'reference')

/** The user's own image from the field notes: single-platform (amd64), Docker schema 2. */
export const EXTRA_IMAGE = 'docker.io/library/hello-frontend:1.0'

export interface PushedImage {
  name: string
  top: Blob
  amd64: Image
  arm64?: Image
}

export interface World {
  fake: FakeUpstream
  registry: TestRegistry
  /** The registry as the builder sees it: through a forwarder that logs and injects faults. */
  front: Forwarder
  images: Map<string, PushedImage>
  /** `--mirror ...` and `--registry-mirror ...` arguments that point every download here. */
  args: string[]
  /** The default manifest without image digests (they are the fixtures'), plus EXTRA_IMAGE. */
  manifestText: string
  manifestPath: string
  close(): Promise<void>
}

/** Registry path prefixes, so that one local registry plays registry.k8s.io, docker.io and ghcr.io. */
const PREFIX: Record<string, string> = { 'registry.k8s.io': 'k8s', 'docker.io': 'hub', 'ghcr.io': 'ghcr' }

/** The real upstream manifests of the add-ons and of Flannel (test/fixtures/reference/addons), by component. */
export const ADDON_FIXTURES: Record<string, { version: string; file: string }> = {
  'local-path-provisioner': { version: '0.0.37', file: 'local-path-storage-v0.0.37.yaml' },
  'metrics-server': { version: '0.8.1', file: 'metrics-server-v0.8.1-components.yaml' },
  'ingress-nginx': { version: '1.15.1', file: 'ingress-nginx-controller-v1.15.1-baremetal.yaml' },
  'flannel-manifest': { version: '0.28.9', file: 'kube-flannel-v0.28.9.yml' },
}
const fixtureText = (component: string) => readFile(join(REFERENCE, 'addons', ADDON_FIXTURES[component]!.file), 'utf8')

/** The add-on's upstream file at the version a manifest asks for: the fixture, its own version's tags moved to that one (another release, as upstream would publish it). */
async function upstreamText(component: string, manifestText: string): Promise<string> {
  const text = await fixtureText(component)
  const asked = new RegExp(`^ {2}${component}: (\\S+)`, 'm').exec(manifestText)?.[1]
  const own = ADDON_FIXTURES[component]!.version
  return asked && asked !== own ? text.replaceAll(`v${own}`, `v${asked}`) : text
}

/** The world's manifest with the three add-ons in its components. */
export const withAddons = (t: string): string =>
  t.replace(
    /^(components:\n)/m,
    `$1${['local-path-provisioner', 'metrics-server', 'ingress-nginx'].map((c) => `  ${c}: ${ADDON_FIXTURES[c]!.version}\n`).join('')}`,
  )

/** The world's manifest with Flannel as its pod network instead of Calico. */
export const withFlannel = (t: string): string =>
  t
    .replace(/^cni: calico$/m, 'cni: flannel')
    .replace(/^components:\n/m, `components:\n  flannel-manifest: ${ADDON_FIXTURES['flannel-manifest']!.version}\n`)
    .replace(/^ {2}calico(ctl|-manifest): .*\n/gm, '')
    .replace(/^ {2}(- docker\.io\/calico\/.*|# the images calico\.yaml .*)\n/gm, '')

/**
 * Everything a build needs, on loopback: the fake upstream for files (with the real
 * calico.yaml, whose images the closed-world check reads) and a real registry holding
 * every image of the default manifest as a small multi-platform image that shares one
 * busybox base layer, plus a single-platform user image.
 */
export async function startWorld(
  dir: string,
  opts: {
    size?: FakeOptions['size']
    token?: boolean
    layerBytes?: { base: number; own: number }
    realistic?: boolean
    manifestEdit?: (text: string) => string
    /** Versions the stand-in kubeadm knows beyond the committed table. */
    kubeadmRows?: Record<string, Record<string, string>>
  } = {},
): Promise<World> {
  const baseText = withoutPackages(await readFile(DEFAULT_MANIFEST, 'utf8'))
    .replace(/@sha256:[0-9a-f]{64}/g, '')
    .replace(/\nimages:\n/, `\nimages:\n  - ${EXTRA_IMAGE}\n`)
  const manifestText = (opts.manifestEdit ?? ((t: string) => t))(baseText)
  const manifestPath = join(dir, 'manifest.yaml')
  await mkdir(dir, { recursive: true })
  await writeFile(manifestPath, manifestText)
  const artifacts = await makeArtifacts(join(dir, 'artifacts'), !!opts.realistic, opts.kubeadmRows)
  const registry = await startRegistry(join(dir, 'registry'), { ...(opts.token ? { token: true } : {}) })
  const front = await startForwarder(registry.url)

  // Benchmarks ask for large layers: one shared base, one of each image's own.
  const big = opts.layerBytes
  const base = big ? randomLayer(big.base, 'base') : layer({ 'bin/busybox': { data: await busyboxBinary(), mode: 0o755 } })
  const armBase = layer({ 'bin/busybox': { data: Buffer.from('an arm64 busybox would be here\n'), mode: 0o755 } })
  const images = new Map<string, PushedImage>()
  const names = [...manifestText.matchAll(/^\s+- ((?:registry\.k8s\.io|docker\.io)\/\S+)$/gm)].map((m) => m[1]!)
  // The images the add-ons' and Flannel's manifests name, when the manifest carries them (bundle lock pins them from the files).
  for (const [component] of Object.entries(ADDON_FIXTURES))
    if (new RegExp(`^  ${component}: `, 'm').test(manifestText))
      for (const n of manifestImages(await upstreamText(component, manifestText))) if (!names.includes(n)) names.push(n)
  for (const name of names) {
    const ref = parseImageRef(name)
    const own = big ? randomLayer(big.own, name) : layer({ 'etc/image-name': { data: Buffer.from(`${name}\n`) } })
    const cmd = ['/bin/busybox', 'cat', '/etc/image-name']
    const repo = `${PREFIX[ref.registry]}/${ref.repository}`
    if (name === EXTRA_IMAGE) {
      const only = image(
        { os: 'linux', architecture: 'amd64' },
        [layer({ 'bin/busybox': { data: await busyboxBinary(), mode: 0o755 } }, MT.dockerLayer), own],
        cmd,
        true,
      )
      await registry.push(repo, ref.tag!, only.manifest, [only])
      images.set(imageName(ref), { name, top: only.manifest, amd64: only })
      continue
    }
    const amd64 = image({ os: 'linux', architecture: 'amd64' }, [base, own], cmd)
    const arm64 = image({ os: 'linux', architecture: 'arm64', variant: 'v8' }, [armBase, own], cmd)
    const idx = index([amd64, arm64], { attestation: true })
    await registry.push(repo, ref.tag!, idx.index, [amd64, arm64], idx.extra)
    images.set(imageName(ref), { name, top: idx.index, amd64, arm64 })
  }
  const fake = await fakeUpstream(join(dir, 'up'), {
    manifestText,
    ...(opts.size ? { size: opts.size } : {}),
    content: async (w) =>
      w.name === 'calico-manifest'
        ? readFile(join(REFERENCE, 'calico-v3.28.0.yaml'))
        : w.name === 'containerd-service'
          ? readFile(join(REFERENCE, 'containerd-v1.7.16.service'))
          : ADDON_FIXTURES[w.name]
            ? // An image upstream names by digest is named by the digest of the test registry's copy.
              Buffer.from(
                (await upstreamText(w.name, manifestText)).replace(/(image: )(\S+?)@sha256:[0-9a-f]{64}/g, (_, key: string, ref: string) => {
                  const pushed = images.get(imageName(parseImageRef(ref)))
                  return `${key}${ref}${pushed ? `@${pushed.top.digest}` : ''}`
                }),
              )
            : artifacts(w),
  })
  front.log.length = 0
  const args = [
    ...fake.mirrors.flatMap((m) => ['--mirror', m]),
    ...Object.entries(PREFIX).flatMap(([host, prefix]) => ['--registry-mirror', `${host}=${front.url}/${prefix}`]),
  ]
  return {
    fake,
    registry,
    front,
    images,
    args,
    manifestText,
    manifestPath,
    close: async () => {
      await front.close()
      await registry.close()
      await fake.close()
    },
  }
}

/**
 * The world's manifest one minor on: Kubernetes 1.30.11 with the images kubeadm wants for it
 * (manifests/kubeadm-images.yaml) and crictl 1.30.0, for the upgrade tests' next bundle.
 */
export const nextMinor = (t: string): string =>
  t
    .replace('kubernetes: 1.29.3', 'kubernetes: 1.30.11')
    .replaceAll(':v1.29.3', ':v1.30.11')
    .replace('coredns:v1.11.1', 'coredns:v1.11.3')
    .replace('etcd:3.5.12-0', 'etcd:3.5.15-0')
    .replace('  etcd: 3.5.12', '  etcd: 3.5.15')
    .replace('crictl: 1.29.0', 'crictl: 1.30.0')

/** `bundle lock` of the world's manifest (or a variant of it) through its mirrors. */
export async function lockWorld(w: World, out: string, cache: string, manifestText?: string): Promise<void> {
  let manifest = w.manifestPath
  if (manifestText) {
    manifest = `${out}.manifest.yaml`
    await writeFile(manifest, manifestText)
  }
  const r = await bundleCli(['lock', '--manifest', manifest, '--out', out, '--cache', cache, ...w.args])
  if (r.code !== 0) throw new Error(`bundle lock failed: ${r.stderr}`)
}

/** The world's manifest locked, built for linux/amd64 and unpacked under `dir` (the cache beside it): the lock's path and the bundle folder. */
export async function builtBundle(w: World, dir: string, cache = join(dir, 'cache')): Promise<{ lock: string; bundle: string }> {
  const lock = join(dir, 'bundle.lock.json')
  await lockWorld(w, lock, cache)
  const r = await bundleCli(['build', '--lock', lock, '--out', join(dir, 'out'), '--cache', cache, ...w.args])
  if (r.code !== 0) throw new Error(`bundle build failed: ${r.stderr}`)
  const name = `kube-airgap-v${/^kubernetes: (\S+)/m.exec(w.manifestText)![1]}-linux-amd64`
  execFileSync('tar', ['xf', `${name}.tar`], { cwd: join(dir, 'out') })
  return { lock, bundle: join(dir, 'out', name) }
}

/** Signing keys (and kube-airgap-verify) made with `bundle keygen` in `keys`, and a build of `lock` from this world signed with them. */
export async function signedBuilds(w: World, lock: string, cache: string, keys: string): Promise<(out: string, ...args: string[]) => Promise<string>> {
  const k = await bundleCli(['keygen', '--out', keys])
  if (k.code !== 0) throw new Error(k.stderr)
  return async (out, ...args) => {
    const b = await bundleCli(['build', '--lock', lock, '--out', out, '--cache', cache, '--sign', join(keys, 'kube-airgap.key'), ...args, ...w.args])
    if (b.code !== 0) throw new Error(b.stderr)
    return b.stderr
  }
}
