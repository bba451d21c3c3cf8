import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseLock } from '../../bundle/lock.js'
import { bundleCli } from '../support/cli.js'
import { image, index, layer } from '../support/images.js'
import { EXTRA_IMAGE, startWorld, type World } from '../support/world.js'

/**
 * kubeadm's image list from the pinned kubeadm: the lock downloads the kubeadm it pins for this
 * machine's platform and runs it offline. Here that kubeadm is the recording stand-in (the real
 * one cannot be fetched here), taught a version the committed table does not know, with images
 * of its own; a kubeadm that cannot run here (random bytes, as a binary of another architecture
 * would be) leaves the answer to the table, in one line.
 */
const V = '1.31.4'
const ROW = { coredns: 'v1.11.3', etcd: '3.5.15-0', pause: '3.10' }
const KUBEADM = [
  ...['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kube-proxy'].map((n) => `registry.k8s.io/${n}:v${V}`),
  `registry.k8s.io/coredns/coredns:${ROW.coredns}`,
  `registry.k8s.io/pause:${ROW.pause}`,
  `registry.k8s.io/etcd:${ROW.etcd}`,
]
let dir: string
let world: World

/** The manifest for 1.31.4 names no kubeadm image: only Calico's and the user's. */
const to1314 = (t: string) =>
  t
    .replace('kubernetes: 1.29.3', `kubernetes: ${V}`)
    .replace(/^ {2}- registry\.k8s\.io\/.*\n/gm, '')
    .replace('  etcd: 3.5.12', '  etcd: 3.5.15')
    .replace('crictl: 1.29.0', 'crictl: 1.31.0')
    .replace('containerd: 1.7.16', 'containerd: 1.7.24')
    .replace('containerd-service: 1.7.16', 'containerd-service: 1.7.24')
    .replace('calicoctl: 3.28.0', 'calicoctl: 3.29.0')
    .replace('calico-manifest: 3.28.0', 'calico-manifest: 3.29.0')

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-kubeadm-'))
  world = await startWorld(dir, { realistic: true, manifestEdit: to1314, kubeadmRows: { [V]: ROW } })
  // kubeadm's images, where registry.k8s.io is played: multi-platform, as upstream's are.
  for (const ref of KUBEADM) {
    const [repo, tag] = ref.replace('registry.k8s.io/', 'k8s/').split(':') as [string, string]
    const own = layer({ 'etc/image-name': { data: Buffer.from(`${ref}\n`) } })
    const platforms = [
      image({ os: 'linux', architecture: 'amd64' }, [own], ['/true']),
      image({ os: 'linux', architecture: 'arm64', variant: 'v8' }, [own], ['/true']),
    ]
    await world.registry.push(repo, tag, index(platforms).index, platforms)
  }
}, 120_000)
afterAll(async () => {
  await world.close()
  await rm(dir, { recursive: true, force: true })
})

const lock = (out: string, ...args: string[]) =>
  bundleCli(['lock', '--manifest', world.manifestPath, '--out', out, '--cache', join(dir, 'cache'), ...world.args, ...args])

describe('bundle lock asks the pinned kubeadm for its images', () => {
  it(`pins exactly what kubeadm v${V} lists, a version the table does not know, and records its row`, async () => {
    const out = join(dir, 'v1314.lock.json')
    const r = await lock(out)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain(
      `kubeadm v${V} lists coredns v1.11.3, etcd 3.5.15-0, pause 3.10; manifests/kubeadm-images.yaml has no row for it: the lock takes kubeadm's`,
    )
    const l = parseLock(await readFile(out, 'utf8'))
    expect(l.kubeadmImages).toEqual(ROW)
    const refs = l.images.map((i) => i.ref)
    expect(refs.filter((r) => r.startsWith('registry.k8s.io/')).sort()).toEqual([...KUBEADM].sort())
    expect(refs).toContain(EXTRA_IMAGE)
    for (const im of l.images) expect(im.digest, im.ref).toBeDefined()
    expect(l.files.filter((f) => f.name === 'etcd').map((f) => f.version)).toEqual(['3.5.15', '3.5.15'])
    // A manifest that names no etcd clients gets those of kubeadm's etcd.
    const unnamed = join(dir, 'no-etcd.yaml')
    await writeFile(unnamed, world.manifestText.replace('  etcd: 3.5.15\n', ''))
    const r2 = await bundleCli(['lock', '--manifest', unnamed, '--out', join(dir, 'no-etcd.lock.json'), '--cache', join(dir, 'cache'), ...world.args])
    expect(r2.code, r2.stderr).toBe(0)
    const l2 = parseLock(await readFile(join(dir, 'no-etcd.lock.json'), 'utf8'))
    expect(l2.files.filter((f) => f.name === 'etcd').map((f) => `${f.version} ${f.platform} ${f.integrity.hex}`)).toEqual(
      l.files.filter((f) => f.name === 'etcd').map((f) => `${f.version} ${f.platform} ${f.integrity.hex}`),
    )
  })

  it('--check-images fails naming the row the table lacks; with --no-kubeadm an unknown version is refused in one line', async () => {
    const check = await lock(join(dir, 'check.lock.json'), '--check-images')
    expect(check.code).toBe(2)
    expect(check.stderr.trim().split('\n').pop()).toMatch(
      new RegExp(
        `--check-images: kubeadm v${V.replaceAll('.', '\\.')} lists coredns v1\\.11\\.3, etcd 3\\.5\\.15-0, pause 3\\.10, but manifests/kubeadm-images\\.yaml has no row for it: write '1\\.31\\.4': \\{ coredns: v1\\.11\\.3, etcd: 3\\.5\\.15-0, pause: '3\\.10' \\} there$`,
      ),
    )
    const table = await lock(join(dir, 'table.lock.json'), '--no-kubeadm')
    expect(table.code).toBe(2)
    expect(table.stderr.trim().split('\n').pop()).toMatch(
      /Kubernetes 1\.31\.4: asked not to run kubeadm \(--no-kubeadm\), and manifests\/kubeadm-images\.yaml has no row for it/,
    )
  })

  it('a kubeadm that cannot run here leaves the list to the table, and says so in one line', async () => {
    // Random bytes for every file: what a kubeadm of another architecture is to this machine.
    const other = await startWorld(join(dir, 'other'), {})
    try {
      const out = join(dir, 'other.lock.json')
      const r = await bundleCli(['lock', '--manifest', other.manifestPath, '--out', out, '--cache', join(dir, 'other-cache'), ...other.args])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stderr.split('\n').filter((l) => l.includes('kubeadm-images.yaml'))).toEqual([
        expect.stringMatching(
          /^note +kubeadm's image list for v1\.29\.3 comes from manifests\/kubeadm-images\.yaml: the pinned kubeadm linux\/amd64 is not a program this machine runs \(not an ELF executable\)$/,
        ),
      ])
      expect(parseLock(await readFile(out, 'utf8')).kubeadmImages).toEqual({ coredns: 'v1.11.1', etcd: '3.5.12-0', pause: '3.9' })
    } finally {
      await other.close()
    }
  })
})
