import { execFileSync } from 'node:child_process'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bundleCli } from '../support/cli.js'
import { startContainerd, type TestContainerd } from '../support/containerd.js'
import { changing, nodeRuns, treeHashes, writeStandins } from '../support/standins.js'
import { runStaticPod, type StaticPod } from '../support/static-pods.js'
import { builtBundle, EXTRA_IMAGE, lockWorld, startWorld, type World } from '../support/world.js'
import { freePort } from '../support/registry.js'

/**
 * The registry inside the air gap, with the real parts: Debian's docker-registry (distribution
 * 2.8, the program the bundle's registry image runs) started from the static pod the installer
 * writes, by a kubelet stand-in that runs it as the kubelet would (test/support/static-pods.ts),
 * with the CA, certificate and htpasswd the installer made with the real openssl and bcrypt;
 * an image bundle pushed into it with ./install registry push; and the real containerd of
 * another node, configured only by the hosts.toml the installer wrote there, pulling through
 * the registry's name and through the docker.io mirror rule, and running what it pulled.
 */
const REGISTRY_IMAGE = 'docker.io/library/registry:2.8.3'
let dir: string
let world: World
let bundle: string
let images: string
let standins: string
let port: number
let pod: StaticPod | undefined
let ctd: TestContainerd | undefined

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-air-registry-'))
  world = await startWorld(dir, { realistic: true, manifestEdit: (t) => t.replace(/\nimages:\n/, `\nimages:\n  - ${REGISTRY_IMAGE}\n`) })
  ;({ bundle } = await builtBundle(world, dir))
  // An image bundle of the operator's own image (a manifest of images alone).
  const imageLock = join(dir, 'images.lock.json')
  await lockWorld(world, imageLock, join(dir, 'cache'), `images:\n  - ${EXTRA_IMAGE}\n`)
  const b = await bundleCli(['build', '--lock', imageLock, '--out', join(dir, 'images'), '--cache', join(dir, 'cache'), ...world.args])
  expect(b.code, b.stderr).toBe(0)
  const tar = execFileSync('sh', ['-c', 'ls *.tar'], { cwd: join(dir, 'images'), encoding: 'utf8' }).trim()
  execFileSync('tar', ['xf', tar], { cwd: join(dir, 'images') })
  images = join(dir, 'images', tar.replace(/\.tar$/, ''))
  standins = await writeStandins(join(dir, 'standins'))
  port = await freePort()
}, 180_000)
afterAll(async () => {
  await pod?.stop()
  await ctd?.stop()
  await world?.close()
  await rm(dir, { recursive: true, force: true })
})

const { install, newRoot } = nodeRuns(() => ({ dir, bundle, standins }))

const config = async (file: string, nodeName: string) => {
  await writeFile(
    join(dir, file),
    `nodes:\n  ${hostname().toLowerCase()}: { nodeName: ${nodeName} }\nregistry:\n  node: k8s01\n  name: localhost:${port}\n  mirrors: [docker.io]\n  storage: /var/lib/registry-data\n  auth: true\n`,
  )
  return join(dir, file)
}

describe('./install registry', () => {
  let registryNode: string
  let credentials: string
  const name = () => `localhost:${port}`

  it('on the registry node: CA, certificate, htpasswd and static pod; the real registry answers over TLS and refuses a request without credentials; the CA and credentials go to the bundle folder', async () => {
    registryNode = await newRoot('registry-node')
    pod = await runStaticPod(registryNode, 'kube-airgap-registry', '/usr/bin/docker-registry', join(dir, 'registry.log'))
    const cfg = await config('cluster-k8s01.yaml', 'k8s01')
    const r = await install(['registry', '--config', cfg], registryNode)
    expect(r.code, r.stdout.split('\n').slice(-8).join('\n') + r.stderr).toBe(0)
    expect(r.stdout).toMatch(new RegExp(`\\[registry\\] checked +the registry answers at https://localhost:${port}`))
    expect(r.stderr).toMatch(/note {2}the registry's CA: [0-9A-F:]{95}/)
    // What the installer made, checked with the real openssl: the certificate chains to the CA and names the registry.
    const dirOf = (f: string) => join(registryNode, 'etc/kube-airgap/registry', f)
    execFileSync('openssl', ['verify', '-CAfile', dirOf('ca.crt'), dirOf('tls.crt')])
    expect(execFileSync('openssl', ['x509', '-in', dirOf('tls.crt'), '-noout', '-ext', 'subjectAltName'], { encoding: 'utf8' })).toContain('DNS:localhost')
    for (const f of ['ca.key', 'tls.key', 'htpasswd', 'credentials']) expect(((await stat(dirOf(f))).mode & 0o777).toString(8), f).toBe('600')
    // The bundle folder carries the CA and the credentials for the other nodes.
    expect(await readFile(join(bundle, 'join/registry-ca.crt'), 'utf8')).toBe(await readFile(dirOf('ca.crt'), 'utf8'))
    expect(((await stat(join(bundle, 'join/registry-credentials'))).mode & 0o777).toString(8)).toBe('600')
    credentials = (await readFile(join(bundle, 'join/registry-credentials'), 'utf8')).trim()
    expect(credentials).toMatch(/^kube-airgap:\S{20,}$/)
    // The real registry: over TLS from our CA, and it asks for credentials.
    const curl = (...a: string[]) =>
      execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', dirOf('ca.crt'), ...a, `https://${name()}/v2/`], { encoding: 'utf8' })
    expect(curl()).toBe('401')
    expect(curl('-u', credentials)).toBe('200')
    expect(curl('-u', 'kube-airgap:wrong')).toBe('401')
    // Its storage is where cluster.yaml says, on the node.
    expect(await readFile(join(registryNode, 'etc/kubernetes/manifests/kube-airgap-registry.yaml'), 'utf8')).toContain('/var/lib/registry-data')
  })

  it('a second run changes nothing', async () => {
    const before = await treeHashes(registryNode, ['var/lib/registry-data'])
    const r = await install(['registry', '--config', join(dir, 'cluster-k8s01.yaml')], registryNode)
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(changing(r.record)).toEqual([])
    expect(await treeHashes(registryNode, ['var/lib/registry-data'])).toEqual(before)
    const doctor = await install(['doctor', '--containerd-address', join(dir, 'none.sock')], registryNode)
    expect(doctor.stdout).toMatch(/^OK +registry certificate +\/etc\/kube-airgap\/registry\/tls\.crt valid until \d{4}-\d\d-\d\d \((729|730) days\)$/m)
  })

  it('registry push: the image bundle verified, then pushed by digest and tag; a changed blob is refused before anything is pushed', async () => {
    const r = await install(['registry', 'push', images, '--config', join(dir, 'cluster-k8s01.yaml')], registryNode)
    expect(r.code, r.stdout + r.stderr).toBe(0)
    const digest = world.images.get(EXTRA_IMAGE)!.amd64.manifest.digest
    expect(r.stdout, r.stdout).toContain(`pushed  ${EXTRA_IMAGE} as ${name()}/library/hello-frontend:1.0@${digest} (3 new blobs)`)
    const tags = execFileSync(
      'curl',
      ['-s', '--cacert', join(registryNode, 'etc/kube-airgap/registry/ca.crt'), '-u', credentials, `https://${name()}/v2/library/hello-frontend/tags/list`],
      {
        encoding: 'utf8',
      },
    )
    expect(JSON.parse(tags)).toEqual({ name: 'library/hello-frontend', tags: ['1.0'] })
    // Pushed again: nothing new.
    const again = await install(['registry', 'push', images, '--config', join(dir, 'cluster-k8s01.yaml')], registryNode)
    expect(again.stdout).toContain('(0 new blobs)')
    // A copy of the image bundle with one byte of a layer changed: refused in verification, nothing pushed.
    const bad = join(dir, 'images-bad')
    execFileSync('cp', ['-a', images, bad])
    const layers = execFileSync('sh', ['-c', 'ls -S blobs/sha256 | head -1'], { cwd: join(bad, 'images'), encoding: 'utf8' }).trim()
    const f = join(bad, 'images/blobs/sha256', layers)
    const bytes = await readFile(f)
    bytes[bytes.length - 1] ^= 1
    await writeFile(f, bytes)
    const catalog = () =>
      execFileSync('curl', ['-s', '--cacert', join(registryNode, 'etc/kube-airgap/registry/ca.crt'), '-u', credentials, `https://${name()}/v2/_catalog`], {
        encoding: 'utf8',
      })
    const before = catalog()
    const refused = await install(['registry', 'push', bad, '--config', join(dir, 'cluster-k8s01.yaml')], registryNode)
    expect(refused.code).toBe(1)
    expect(refused.stderr.trim().split('\n').pop()).toMatch(new RegExp(`^install: EVERIFY: ${bad} failed verification: images/blobs/sha256/${layers}: changed`))
    expect(catalog()).toBe(before)
  })

  it("another node trusts it through hosts.toml alone: its real containerd pulls by the registry's name and through the docker.io mirror rule, and runs the image; without credentials the pull fails", async () => {
    const other = await newRoot('other-node')
    const r = await install(['registry', '--config', await config('cluster-k8s02.yaml', 'k8s02')], other)
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stderr).toMatch(/note {2}trusting the registry CA [0-9A-F:]{95} from join\/registry-ca\.crt/)
    const hostsDir = join(other, 'etc/containerd/certs.d')
    expect(await readFile(join(hostsDir, name(), 'hosts.toml'), 'utf8')).toContain(`[host."https://${name()}"]`)
    expect(await readFile(join(hostsDir, 'docker.io', 'hosts.toml'), 'utf8')).toContain(`server = "https://${name()}"`)
    ctd = await startContainerd(join(dir, 'ctd-other'))
    const pull = (ref: string, ...auth: string[]) => ctd!.ctr(['-n', 'k8s.io', 'images', 'pull', '--hosts-dir', hostsDir, ...auth, ref])
    const denied = await pull(`${name()}/library/hello-frontend:1.0`)
    expect(denied.code).not.toBe(0)
    expect(denied.stderr).toMatch(/401|unauthorized|authorization/i)
    const own = await pull(`${name()}/library/hello-frontend:1.0`, '--user', credentials)
    expect(own.code, own.stderr).toBe(0)
    const run = await ctd.ctr(['-n', 'k8s.io', 'run', '--rm', `${name()}/library/hello-frontend:1.0`, `ka-registry-${process.pid}`])
    expect(run.stdout).toBe(`${EXTRA_IMAGE}\n`)
    const mirrored = await pull(EXTRA_IMAGE, '--user', credentials)
    expect(mirrored.code, mirrored.stderr).toBe(0)
    const ls = await ctd.ctr(['-n', 'k8s.io', 'images', 'ls', '-q'])
    expect(ls.stdout.split('\n')).toEqual(expect.arrayContaining([EXTRA_IMAGE, `${name()}/library/hello-frontend:1.0`]))
  })

  it('a node whose bundle folder lacks the CA is told where it comes from, and nothing is written', async () => {
    const lone = await newRoot('lone-node')
    const ca = join(bundle, 'join/registry-ca.crt')
    const kept = await readFile(ca)
    await rm(ca)
    try {
      const before = await treeHashes(lone)
      const r = await install(['registry', '--config', join(dir, 'cluster-k8s02.yaml')], lone)
      expect(r.code).toBe(2)
      expect(r.stderr.trim().split('\n').pop()).toMatch(
        /^install: EUSAGE: join\/registry-ca\.crt is not in the bundle folder: run \.\/install registry on k8s01 first/,
      )
      expect(await treeHashes(lone)).toEqual(before)
    } finally {
      await writeFile(ca, kept)
    }
  })
})
