import { execSync } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bundleCli } from '../support/cli.js'
import { startContainerd, type TestContainerd } from '../support/containerd.js'
import { changing, nodeRuns, recordedRun, treeHashes, writeStandins } from '../support/standins.js'
import { builtBundle, startWorld, withAddons, withFlannel, type World } from '../support/world.js'

/**
 * The add-ons end to end: `bundle lock` of a manifest with local-path-provisioner,
 * metrics-server and ingress-nginx (their real upstream manifests, served by the fake
 * upstream) pins each file and every image it names; the build carries them inside the closed
 * world; the real containerd takes every image under its tag and its pinned digest (the name
 * the patched manifests ask for); the first master applies them after Calico with the
 * bundle's kubectl (a recording stand-in that keeps what it is given), waits for them, and a
 * rerun changes nothing.
 */
let dir: string
let world: World
let lock: string
let bundle: string
let standins: string
let ctd: TestContainerd | undefined

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-addons-'))
  world = await startWorld(dir, { realistic: true, manifestEdit: withAddons })
  ;({ lock, bundle } = await builtBundle(world, dir))
  standins = await writeStandins(join(dir, 'standins'))
  execSync(`openssl req -x509 -newkey rsa:2048 -nodes -keyout ${dir}/ca.crt.key -out ${dir}/ca.crt -days 1 -subj /CN=kubernetes 2>/dev/null`)
}, 180_000)
afterAll(async () => {
  await ctd?.stop()
  await world.close()
  await rm(dir, { recursive: true, force: true })
})

const { install, newRoot } = nodeRuns(() => ({ dir, bundle, standins }))

type LockJson = { files: { name: string }[]; images: { ref: string; digest?: string }[] }

describe('add-ons in the bundle', () => {
  it('bundle lock pins each add-on manifest and every image it names, a digest the manifest gives kept', async () => {
    const l = JSON.parse(await readFile(lock, 'utf8')) as LockJson
    expect(l.files.map((f) => f.name)).toEqual(expect.arrayContaining(['local-path-provisioner', 'metrics-server', 'ingress-nginx']))
    const pinned = new Map(l.images.map((i) => [i.ref, i.digest]))
    for (const ref of [
      'docker.io/rancher/local-path-provisioner:v0.0.37',
      'docker.io/library/busybox:latest', // local-path's helper pod, named only in its ConfigMap
      'registry.k8s.io/metrics-server/metrics-server:v0.8.1',
      'registry.k8s.io/ingress-nginx/controller:v1.15.1',
      'registry.k8s.io/ingress-nginx/kube-webhook-certgen:v1.6.9',
    ])
      expect(pinned.get(ref), ref).toMatch(/^sha256:[0-9a-f]{64}$/)
    // ingress-nginx's deploy.yaml names its images by digest: the lock keeps that digest.
    const served = (await readFile(join(bundle, 'files', 'deploy.yaml'), 'utf8')).match(/controller:v1\.15\.1@(sha256:[0-9a-f]{64})/)?.[1]
    expect(pinned.get('registry.k8s.io/ingress-nginx/controller:v1.15.1')).toBe(served)
  })

  it("the closed world refuses a lock that lacks an add-on's image, naming it and the manifest that asks", async () => {
    const l = JSON.parse(await readFile(lock, 'utf8')) as LockJson
    const without = join(dir, 'without-busybox.lock.json')
    await writeFile(without, JSON.stringify({ ...l, images: l.images.filter((i) => i.ref !== 'docker.io/library/busybox:latest') }))
    const r = await bundleCli(['build', '--lock', without, '--out', join(dir, 'refused'), '--cache', join(dir, 'cache'), ...world.args])
    expect(r.code).not.toBe(0)
    expect(r.stderr.trim().split('\n').pop()).toMatch(
      /the lock lacks 1 image the nodes will ask for: docker\.io\/library\/busybox:latest \(local-path-storage\.yaml\); add them to the manifest's images and run `bundle lock`/,
    )
    expect(await readdir(join(dir, 'refused')).catch(() => [])).toEqual([])
  })

  it('the real containerd holds every image under its tag and under its pinned digest, all pinned', async () => {
    const root = await newRoot('worker')
    const prep = await install(['--role', 'worker', '--skip-phases', 'images'], root)
    expect(prep.code, prep.stderr + prep.stdout).toBe(0)
    const config = await readFile(join(root, 'etc/containerd/config.toml'), 'utf8')
    ctd = await startContainerd(join(dir, 'ctd'), { bin: join(root, 'usr/local/bin/containerd'), ctrBin: join(root, 'usr/local/bin/ctr'), configText: config })
    const r = await install(['--role', 'worker', '--phases', 'images', '--containerd-address', ctd.socket], root)
    expect(r.code, r.stderr + r.stdout).toBe(0)
    const ls = (await ctd.ctr(['-n', 'k8s.io', 'images', 'ls'])).stdout
    const l = JSON.parse(await readFile(lock, 'utf8')) as LockJson
    for (const im of l.images) {
      const amd64 = world.images.get(im.ref)!.amd64.manifest.digest
      const repo = im.ref.replace(/:[^/:]+$/, '')
      for (const name of [im.ref, `${repo}@${im.digest}`])
        expect(ls, name).toMatch(new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s+\\S+\\s+${amd64}.*io\\.cri-containerd\\.pinned=pinned`, 'm'))
    }
    // A second run finds them all.
    const again = await install(['--role', 'worker', '--phases', 'images', '--containerd-address', ctd.socket], root)
    expect(again.code).toBe(0)
    expect(changing(again.record)).toEqual([])
  })
})

describe('the first master applies the add-ons', () => {
  let master: string
  let ca: string
  const run = () =>
    install(['--role', 'master', '--skip-phases', 'images', '--config', join(dir, 'cluster.yaml'), '--advertise-address', '192.0.2.10'], master, {
      KA_CA_CRT: ca,
    })

  it('after Calico, in order, with the choices of cluster.yaml; waits for them; a rerun changes nothing; doctor reports them', async () => {
    ca = join(dir, 'ca.crt')
    master = await newRoot('master')
    await writeFile(
      join(dir, 'cluster.yaml'),
      `nodes:\n  ${hostname().toLowerCase()}: { nodeName: k8s01 }\ntaints: []\naddons:\n  localPathProvisioner: { path: /data/volumes }\n  ingressNginx: { expose: hostport }\n`,
    )
    const r = await run()
    expect(r.code, r.stderr + r.stdout).toBe(0)
    const applied = (f: string) => join(master, 'etc/kube-airgap', f)
    expect(changing(r.record).filter((l) => / apply /.test(l))).toEqual(
      ['calico.yaml', 'addons/local-path-provisioner.yaml', 'addons/metrics-server.yaml', 'addons/ingress-nginx.yaml'].map(
        (f) => `kubectl --kubeconfig ${join(master, 'etc/kubernetes/admin.conf')} apply --server-side --force-conflicts -f ${applied(f)}`,
      ),
    )
    expect(r.stdout).toMatch(/\[addons\] checked +add-ons running \(local-path-provisioner, metrics-server, ingress-nginx\)/)
    const lp = await readFile(applied('addons/local-path-provisioner.yaml'), 'utf8')
    expect(lp).toMatch(/"paths": \[\s+"\/data\/volumes"/)
    expect(lp).toMatch(/storageclass\.kubernetes\.io\/is-default-class: 'true'/)
    expect(await readFile(applied('addons/ingress-nginx.yaml'), 'utf8')).toMatch(/- containerPort: 443\n(\s+\w+: \S+\n)*?\s+hostPort: 443\n/)
    expect(JSON.parse(await readFile(applied('addons/choices.json'), 'utf8'))).toEqual({
      localPathProvisioner: { path: '/data/volumes' },
      metricsServer: { kubeletTLS: 'insecure' },
      ingressNginx: { expose: 'hostport' },
    })

    const before = await treeHashes(master)
    const again = await run()
    expect(again.code, again.stderr + again.stdout).toBe(0)
    expect(changing(again.record)).toEqual([])
    expect(await treeHashes(master)).toEqual(before)

    const doctor = await install(['doctor', '--containerd-address', ctd?.socket ?? join(dir, 'none.sock')], master, { KA_CA_CRT: ca })
    expect(doctor.stdout).toMatch(/^OK +local-path-provisioner +running \(1 ready in local-path-storage\)$/m)
    expect(doctor.stdout).toMatch(/^OK +metrics-server +running \(1 ready in kube-system\)$/m)
    expect(doctor.stdout).toMatch(/^OK +ingress-nginx +running \(1 ready in ingress-nginx\)$/m)
    expect(doctor.stdout).toMatch(/^WARN +metrics-server TLS +metrics-server does not verify the kubelets' serving certificates/m)
  })

  it('with addons turned off in cluster.yaml, none is applied; a tainted master alone says they wait for a worker', async () => {
    const off = await newRoot('master-off')
    await writeFile(
      join(dir, 'cluster-off.yaml'),
      `nodes:\n  ${hostname().toLowerCase()}: { nodeName: k8s01 }\naddons:\n  metricsServer: false\n  ingressNginx: false\n`,
    )
    const r = await install(
      ['--role', 'master', '--skip-phases', 'images', '--config', join(dir, 'cluster-off.yaml'), '--advertise-address', '192.0.2.10'],
      off,
      {
        KA_CA_CRT: ca,
      },
    )
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(
      changing(r.record)
        .filter((l) => / apply /.test(l))
        .map((l) => l.split('/').pop()),
    ).toEqual(['calico.yaml', 'local-path-provisioner.yaml'])
    expect(r.stdout + r.stderr).toMatch(
      /note {2}no node may run the add-ons yet \(every node is tainted NoSchedule or not Ready\): they start once a worker joins/,
    )
  })
})

describe('Flannel as the pod network (cni: flannel)', () => {
  let fw: World
  let fbundle: string
  let flock: string
  beforeAll(async () => {
    fw = await startWorld(join(dir, 'flannel'), { realistic: true, manifestEdit: withFlannel })
    ;({ lock: flock, bundle: fbundle } = await builtBundle(fw, join(dir, 'flannel'), join(dir, 'cache')))
  }, 180_000)
  afterAll(async () => {
    await fw?.close()
  })

  it('the lock carries kube-flannel.yml and its images, nothing of Calico; the first master gives kubeadm and Flannel the same pod subnet; firewalld opens VXLAN; reset removes its lease', async () => {
    const l = JSON.parse(await readFile(flock, 'utf8')) as LockJson
    expect(l.files.map((f) => f.name)).toContain('flannel-manifest')
    expect(l.files.filter((f) => f.name.startsWith('calico'))).toEqual([])
    expect(l.images.map((i) => i.ref)).toEqual(
      expect.arrayContaining(['ghcr.io/flannel-io/flannel:v0.28.9', 'ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3']),
    )
    expect(l.images.filter((i) => i.ref.includes('calico'))).toEqual([])

    const root = await newRoot('flannel-master')
    await writeFile(join(dir, 'flannel.yaml'), `nodes:\n  ${hostname().toLowerCase()}: { nodeName: k8s01 }\npodSubnet: 10.32.0.0/16\n`)
    const r = await recordedRun(
      join(fbundle, 'install'),
      [
        '--role',
        'master',
        '--skip-phases',
        'images',
        '--config',
        join(dir, 'flannel.yaml'),
        '--advertise-address',
        '192.0.2.10',
        '--root',
        root,
        '--host-commands',
        standins,
      ],
      { PATH: `${standins}:${process.env.PATH}`, KA_ROOT: root, KA_CA_CRT: join(dir, 'ca.crt') },
      join(dir, 'flannel-master.record'),
    )
    expect(r.code, r.stdout.split('\n').slice(-5).join('\n') + r.stderr).toBe(0)
    expect(
      changing(r.record)
        .filter((c) => / apply /.test(c))
        .map((c) => c.split('/').pop()),
    ).toEqual(['flannel.yaml'])
    const kubeadmCfg = (await readFile(join(root, 'etc/kube-airgap/kubeadm.yaml'), 'utf8')).match(/podSubnet: (\S+)/)?.[1]
    const applied = await readFile(join(root, 'etc/kube-airgap/flannel.yaml'), 'utf8')
    const { flannelNetwork } = await import('../../installer/flannel.js')
    expect(kubeadmCfg).toBe('10.32.0.0/16')
    expect(flannelNetwork(applied)).toBe('10.32.0.0/16')
    expect(await readFile(join(root, 'usr/local/bin/kubectl-calico')).catch(() => undefined)).toBeUndefined()

    const { testContext } = await import('../support/context.js')
    const { openings } = await import('../../installer/security.js')
    const ctx = await testContext({ root, bundle: fbundle, containerdAddress: join(dir, 'none.sock'), role: 'master' })
    const open = await openings(ctx)
    expect(open).toEqual(expect.arrayContaining(['8472/udp', 'trusted:interface=flannel.1', 'trusted:interface=cni0']))
    expect(open.filter((o) => /179|4789|cali|tunl|^4$/.test(o))).toEqual([])

    const doctor = await recordedRun(
      join(fbundle, 'install'),
      ['doctor', '--root', root, '--host-commands', standins],
      { PATH: `${standins}:${process.env.PATH}`, KA_ROOT: root },
      join(dir, 'flannel-doctor.record'),
    )
    expect(doctor.stdout).toMatch(/^OK +Flannel network +10\.32\.0\.0\/16 = kubeadm's pod subnet$/m)

    await mkdir(join(root, 'run/flannel'), { recursive: true })
    await writeFile(join(root, 'run/flannel/subnet.env'), 'FLANNEL_NETWORK=10.32.0.0/16\nFLANNEL_SUBNET=10.32.0.1/24\n')
    const reset = await recordedRun(
      join(fbundle, 'install'),
      ['reset', '--yes', '--root', root, '--host-commands', standins],
      { PATH: `${standins}:${process.env.PATH}`, KA_ROOT: root },
      join(dir, 'flannel-reset.record'),
    )
    expect(reset.code, reset.stderr + reset.stdout).toBe(0)
    expect(await readdir(join(root, 'run')).then((d) => d.includes('flannel'))).toBe(false)
  })
})
