import { execFileSync, execSync, spawn, spawnSync } from 'node:child_process'
import yaml from 'js-yaml'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { hostname, networkInterfaces, tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { testContext } from '../support/context.js'

/** A day before the test ran: expired by the real clock whenever the test runs. */
const YESTERDAY = new Date(Date.now() - 86_400_000).toISOString()
import { SUPPORTED } from '../../bundle/entry.js'
import { bundleCli, dryRunClaims } from '../support/cli.js'
import { startContainerd, type TestContainerd } from '../support/containerd.js'
import { changing, freshNodeRoot, type RecordedRun, recordedRun, treeHashes, writeStandins } from '../support/standins.js'
import { busyboxBinary, image, index, layer } from '../support/images.js'
import { EXTRA_IMAGE, lockWorld, signedBuilds, startWorld, type World } from '../support/world.js'

/**
 * The installer end to end: a bundle built by the real builder from real-shaped upstream
 * artifacts (Debian's containerd, ctr, shim, runc and CNI plugins; recording scripts for
 * kubeadm, kubelet, kubectl, crictl and calicoctl, which cannot run here), unpacked, and
 * the real `./install` run with --root. Only systemctl, modprobe, sysctl and swapoff are
 * stand-ins (test/support/standins.ts says why). The containerd the installer placed is
 * started with the config.toml it wrote, and the images phase imports into it.
 */
let dir: string
let world: World
let bundle: string
let standins: string
let ctd: TestContainerd | undefined
const NAME = 'kube-airgap-v1.29.3-linux-amd64'

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-install-'))
  world = await startWorld(dir, { realistic: true })
  const lock = join(dir, 'bundle.lock.json')
  await lockWorld(world, lock, join(dir, 'cache'))
  const r = await bundleCli(['build', '--lock', lock, '--out', join(dir, 'out'), '--cache', join(dir, 'cache'), ...world.args])
  expect(r.code, r.stderr).toBe(0)
  execFileSync('tar', ['xf', `${NAME}.tar`], { cwd: join(dir, 'out') })
  bundle = join(dir, 'out', NAME)
  standins = await writeStandins(join(dir, 'standins'))
}, 180_000)
afterAll(async () => {
  await ctd?.stop()
  await world.close()
  await rm(dir, { recursive: true, force: true })
})

function install(args: string[], root: string, opts: { bundleDir?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RecordedRun> {
  return recordedRun(
    join(opts.bundleDir ?? bundle, 'install'),
    [...args, '--root', root, '--host-commands', standins],
    { PATH: `${standins}:${process.env.PATH}`, KA_ROOT: root, ...opts.env },
    join(root, '..', `${relative(dir, root).replace(/\//g, '_')}.record`),
  )
}

async function newRoot(name: string): Promise<string> {
  const root = join(dir, 'roots', name)
  await mkdir(root, { recursive: true })
  await freshNodeRoot(root)
  return root
}

let root: string
describe('./install --role worker', () => {
  it('prepares the node, through containerd, CNI and Kubernetes', async () => {
    root = await newRoot('worker')
    const dry = await install(['--role', 'worker', '--skip-phases', 'images', '--dry-run'], root)
    expect(dry.code, dry.stderr + dry.stdout).toBe(0)
    const r = await install(['--role', 'worker', '--skip-phases', 'images'], root)
    expect(r.code, r.stderr + r.stdout).toBe(0)
    // Every result the dry run claimed, the real run bore out.
    expect(dryRunClaims(dry.stdout, r.stdout)).toEqual([])
    expect(r.stdout).toMatch(/^\[verify\] checked +bundle kube-airgap-v1\.29\.3-linux-amd64/m)
    for (const f of [
      'usr/local/bin/containerd',
      'usr/local/bin/ctr',
      'usr/local/bin/containerd-shim-runc-v2',
      'usr/local/bin/crictl',
      'usr/local/bin/kubeadm',
      'usr/local/bin/kubelet',
      'usr/local/bin/kubectl',
      'usr/local/sbin/runc',
      'opt/cni/bin/bridge',
      'opt/cni/bin/host-local',
      'opt/cni/bin/loopback',
    ]) {
      expect(((await stat(join(root, f))).mode & 0o777).toString(8), f).toBe('755')
    }
    expect((await readFile(join(root, 'usr/local/sbin/runc'))).equals(await readFile('/usr/sbin/runc'))).toBe(true)
    const config = await readFile(join(root, 'etc/containerd/config.toml'), 'utf8')
    expect(config).toContain('SystemdCgroup = true')
    expect(config).toContain('BinaryName = "/usr/local/sbin/runc"')
    expect(config).toContain('sandbox_image = "registry.k8s.io/pause:3.9"')
    expect(config).toContain('config_path = "/etc/containerd/certs.d"')
    expect(config).not.toMatch(/systemd_cgroup|default_runtime\b|runtime\.v1\.linux/)
    expect(await readFile(join(root, 'etc/systemd/system/containerd.service'), 'utf8')).toContain('ExecStart=/usr/local/bin/containerd')
    expect(await readFile(join(root, 'etc/systemd/system/kubelet.service.d/10-kubeadm.conf'), 'utf8')).toContain(
      'ExecStart=/usr/local/bin/kubelet $KUBELET_KUBECONFIG_ARGS',
    )
    expect(await readFile(join(root, 'etc/crictl.yaml'), 'utf8')).toContain('runtime-endpoint: unix:///run/containerd/containerd.sock')
    expect(await readFile(join(root, 'etc/modules-load.d/k8s.conf'), 'utf8')).toMatch(/^overlay\nbr_netfilter\n/m)
    const sysctl = await readFile(join(root, 'etc/sysctl.d/k8s.conf'), 'utf8')
    for (const k of ['net.bridge.bridge-nf-call-iptables = 1', 'net.bridge.bridge-nf-call-ip6tables = 1', 'net.ipv4.ip_forward = 1'])
      expect(sysctl).toContain(k)
    expect(await readFile(join(root, 'etc/fstab'), 'utf8')).toMatch(/^# swap disabled by kube-airgap .*: \/swap\.img\tnone\tswap/m)
    expect(await readFile(join(root, 'etc/fstab.kube-airgap.bak'), 'utf8')).toMatch(/^\/swap\.img\tnone\tswap/m)
    expect(changing(r.record)).toEqual([
      'modprobe overlay',
      'modprobe br_netfilter',
      'sysctl --system',
      'swapoff -a',
      'systemctl daemon-reload',
      'systemctl enable --now containerd',
      'systemctl daemon-reload',
      'systemctl enable kubelet',
    ])
  })

  it('the containerd it placed loads its config.toml with no deprecation warning and the CRI plugin ok; the images phase imports into it; a container runs', async () => {
    const config = await readFile(join(root, 'etc/containerd/config.toml'), 'utf8')
    ctd = await startContainerd(join(dir, 'ctd'), { bin: join(root, 'usr/local/bin/containerd'), ctrBin: join(root, 'usr/local/bin/ctr'), configText: config })
    const plugins = await ctd.ctr(['plugins', 'ls'])
    expect(plugins.stdout).toMatch(/io\.containerd\.grpc\.v1\s+cri\s+linux\/amd64\s+ok/)
    expect(ctd.log()).not.toMatch(/DEPRECATION|deprecated/i)

    const r = await install(['--role', 'worker', '--phases', 'images', '--containerd-address', ctd.socket], root)
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(r.stdout).toMatch(/\[images\] done +images in k8s\.io \(11: 11 to import\)/)
    const ls = await ctd.ctr(['-n', 'k8s.io', 'images', 'ls'])
    for (const im of world.images.values())
      expect(ls.stdout, im.name).toMatch(new RegExp(`^${im.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s+\\S+\\s+${im.amd64.manifest.digest}`, 'm'))
    // Every image pinned, so kubelet's image garbage collection never deletes one (the real
    // containerd keeps the label; its CRI plugin reports such images as pinned).
    const refs = ls.stdout
      .trim()
      .split('\n')
      .slice(1)
      .filter((l) => !l.startsWith('sha256:'))
    // Each under its tag and under the digest the lock pins (repository@sha256:..., the name CRI gives an image pulled by digest).
    expect(refs.length).toBe(2 * world.images.size)
    for (const l of refs) expect(l, l.split(' ')[0]).toMatch(/io\.cri-containerd\.pinned=pinned/)
    const run = await ctd.ctr(['-n', 'k8s.io', 'run', '--rm', EXTRA_IMAGE, `ka-install-${process.pid}`])
    expect(run.stdout).toBe(`${EXTRA_IMAGE}\n`)
  })

  it('a second run changes nothing and says so', async () => {
    const before = await treeHashes(root)
    const r = await install(['--role', 'worker', '--containerd-address', ctd!.socket], root)
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(await treeHashes(root)).toEqual(before)
    expect(changing(r.record)).toEqual([])
    const lines = r.stdout.trim().split('\n')
    const rerun = lines.filter((l) => /^\[(kernel|containerd|cni|kubernetes|images)\]/.test(l))
    expect(rerun.length).toBeGreaterThan(10)
    expect(rerun.filter((l) => !/ already done /.test(l))).toEqual([])
    expect(lines.pop()).toMatch(/^ok: 0 steps changed the node/)
  })

  it('finds an image imported into the wrong namespace and says where it is', async () => {
    const c = ctd!
    await c.ctr(['-n', 'k8s.io', 'images', 'rm', 'registry.k8s.io/pause:3.9'])
    const tar = spawn('tar', ['-C', join(bundle, 'images'), '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] })
    expect((await c.ctr(['-n', 'default', 'images', 'import', '--no-unpack', '-'], tar.stdout)).code).toBe(0)
    const r = await install(['--role', 'worker', '--phases', 'images', '--containerd-address', c.socket, '--dry-run'], root)
    expect(r.stdout).toMatch(/\[images\] would do +images in k8s\.io \(11: 1 to import\)/)
    // The real check: remove it again and run the check alone (import disabled by a dry run).
    const { checkImages } = await import('../../installer/phases/images.js')
    const ctx = await testContext({ root, bundle, containerdAddress: c.socket })
    await expect(checkImages(ctx)).rejects.toThrow(
      /not in containerd's k8s\.io namespace: registry\.k8s\.io\/pause:3\.9; registry\.k8s\.io\/pause:3\.9 is in namespace "default" \(imported without -n k8s\.io/,
    )
    const fixed = await install(['--role', 'worker', '--phases', 'images', '--containerd-address', c.socket], root)
    expect(fixed.code, fixed.stderr).toBe(0)
    await checkImages(ctx)
  })

  it("an image bundle of the operator's own images: small, signed, checked by kube-airgap-verify, imported and pinned on the running node, nothing else changed", async () => {
    const c = ctd!
    // A new release of the operator's application, pushed where docker.io is played.
    const app = image(
      { os: 'linux', architecture: 'amd64' },
      [layer({ 'bin/busybox': { data: await busyboxBinary(), mode: 0o755 } }), layer({ 'etc/image-name': { data: Buffer.from('shop-api 2.0\n') } })],
      ['/bin/busybox', 'cat', '/etc/image-name'],
    )
    const arm = image({ os: 'linux', architecture: 'arm64' }, [layer({ 'etc/image-name': { data: Buffer.from('shop-api 2.0 arm64\n') } })], ['/bin/true'])
    const idx = index([app, arm])
    await world.registry.push('hub/library/shop-api', '2.0', idx.index, [app, arm])
    const SHOP = 'docker.io/library/shop-api:2.0'
    // A manifest of images alone: one new, one the node has already.
    const lockPath = join(dir, 'apps.lock.json')
    await lockWorld(world, lockPath, join(dir, 'cache'), `images:\n  - ${SHOP}\n  - ${EXTRA_IMAGE}\n`)
    const build = await signedBuilds(world, lockPath, join(dir, 'cache'), join(dir, 'app-keys'))
    const said = await build(join(dir, 'apps'))
    const tar = (await readdir(join(dir, 'apps'))).find((f) => f.endsWith('.tar'))!
    expect(tar).toMatch(/^kube-airgap-images-[0-9a-f]{12}-linux-amd64\.tar$/)
    expect(said).toContain('sudo ./install images')
    expect((await stat(join(dir, 'apps', tar))).size).toBeLessThan((await stat(join(dir, 'out', `${NAME}.tar`))).size / 10)
    const verifier = join(dir, 'app-keys', 'kube-airgap-verify')
    execFileSync(verifier, [join(dir, 'apps', tar)], { stdio: 'ignore' })
    await mkdir(join(dir, 'apps', 'node'))
    execFileSync(verifier, ['--extract', join(dir, 'apps', 'node'), join(dir, 'apps', tar)], { stdio: 'ignore' })
    const folder = join(dir, 'apps', 'node', tar.replace(/\.tar$/, ''))
    expect((await readdir(folder)).sort()).toEqual(['SHA256SUMS', 'SIGNATURE', 'STATEMENT.json', 'bundle.lock.json', 'images', 'sbom.cdx.json'])

    const before = await treeHashes(root)
    // A folder changed after the verifier unpacked it: refused before anything is imported.
    const bad = `${folder}-changed`
    await cp(folder, bad, { recursive: true })
    const blobs = join(bad, 'images/blobs/sha256')
    const blob = join(blobs, (await readdir(blobs))[0]!)
    await writeFile(blob, Buffer.concat([await readFile(blob), Buffer.from('x')]))
    const refused = await install(['images', bad, '--containerd-address', c.socket], root)
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/images\/blobs\/sha256\/[0-9a-f]{64}: changed/)
    expect((await c.ctr(['-n', 'k8s.io', 'images', 'ls', '-q'])).stdout).not.toContain('shop-api')
    const dry = await install(['images', folder, '--dry-run', '--containerd-address', c.socket], root)
    expect(dry.code, dry.stderr + dry.stdout).toBe(0)
    expect(dry.stdout).toMatch(/\[images\] would do +images in k8s\.io \(2: 1 to import\)/)
    const r = await install(['images', folder, '--containerd-address', c.socket], root)
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(dryRunClaims(dry.stdout, r.stdout)).toEqual([])
    expect(await treeHashes(root)).toEqual(before)
    const ls = await c.ctr(['-n', 'k8s.io', 'images', 'ls'])
    expect(ls.stdout).toMatch(new RegExp(`^docker\\.io/library/shop-api:2\\.0\\s+\\S+\\s+${app.manifest.digest}\\s.*io\\.cri-containerd\\.pinned=pinned`, 'm'))
    const run = await c.ctr(['-n', 'k8s.io', 'run', '--rm', SHOP, `ka-apps-${process.pid}`])
    expect(run.stdout).toBe('shop-api 2.0\n')
    // The cluster's own bundle is refused as an image bundle; a tar is named with how to unpack it.
    const whole = await install(['images', bundle, '--containerd-address', c.socket], root)
    expect(whole.code).toBe(2)
    expect(whole.stderr).toMatch(/is a bundle that installs Kubernetes, not an image bundle/)
    const packed = await install(['images', join(dir, 'apps', tar)], root)
    expect(packed.code).toBe(2)
    expect(packed.stderr).toMatch(/is not a folder: unpack the image bundle first \(kube-airgap-verify --extract DIR /)
  })
})

describe('./install --role master, then a worker with the join file it wrote', () => {
  let master: string
  let ca: string
  const env = () => ({ KA_CA_CRT: ca })
  const recorded = async (root: string, suffix: string) => {
    const d = join(root, '..', `${relative(dir, root).replace(/\//g, '_')}.record.d`)
    const f = (await readdir(d))
      .filter((n) => n.endsWith(suffix))
      .sort()
      .pop()!
    return readFile(join(d, f), 'utf8')
  }

  it('initializes the cluster from cluster.yaml and flags, applies Calico, writes the join files', async () => {
    ca = join(dir, 'ca.crt')
    execSync(`openssl req -x509 -newkey rsa:2048 -nodes -keyout ${ca}.key -out ${ca} -days 1 -subj /CN=kubernetes 2>/dev/null`)
    master = await newRoot('master')
    await writeFile(
      join(dir, 'cluster.yaml'),
      `nodes:\n  ${hostname().toLowerCase()}: { nodeName: k8s01 }\npodSubnet: 10.250.0.0/16\ncalicoAutodetection: interface=eth0\nextraHosts:\n  - ip: 192.0.2.10\n    names: [k8s01]\n  - ip: 192.0.2.11\n    names: [k8s02]\n`,
    )
    const r = await install(
      [
        '--role',
        'master',
        '--skip-phases',
        'images',
        '--config',
        join(dir, 'cluster.yaml'),
        '--pod-subnet',
        '10.245.0.0/16',
        '--advertise-address',
        '192.0.2.10',
      ],
      master,
      { env: env() },
    )
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(changing(r.record).filter((l) => /^kube(adm|ctl)/.test(l))).toEqual([
      `kubeadm init --config ${join(master, 'etc/kube-airgap/kubeadm.yaml')} --upload-certs`,
      `kubectl --kubeconfig ${join(master, 'etc/kubernetes/admin.conf')} apply --server-side --force-conflicts -f ${join(master, 'etc/kube-airgap/calico.yaml')}`,
    ])
    // What kubeadm received parses and holds what the node needs.
    const [init, clusterCfg, kubelet] = yaml.loadAll(await recorded(master, 'kubeadm-init.yaml')) as Record<string, any>[]
    expect(init).toMatchObject({
      apiVersion: 'kubeadm.k8s.io/v1beta3',
      kind: 'InitConfiguration',
      nodeRegistration: {
        name: 'k8s01',
        criSocket: 'unix:///run/containerd/containerd.sock',
        imagePullPolicy: 'Never',
        kubeletExtraArgs: { 'node-ip': '192.0.2.10' },
      },
      localAPIEndpoint: { advertiseAddress: '192.0.2.10', bindPort: 6443 },
    })
    expect(init!.bootstrapTokens[0].token).toMatch(/^[a-z0-9]{6}\.[a-z0-9]{16}$/)
    expect(clusterCfg).toMatchObject({
      kind: 'ClusterConfiguration',
      kubernetesVersion: 'v1.29.3',
      imageRepository: 'registry.k8s.io',
      controlPlaneEndpoint: '192.0.2.10:6443',
      networking: { podSubnet: '10.245.0.0/16', serviceSubnet: '10.96.0.0/12', dnsDomain: 'cluster.local' },
    })
    expect(kubelet).toEqual({ apiVersion: 'kubelet.config.k8s.io/v1beta1', kind: 'KubeletConfiguration', cgroupDriver: 'systemd' })
    // What kubectl received: Calico with the pod subnet as its pool, never pulling.
    const calico = (yaml.loadAll(await recorded(master, 'kubectl-apply.yaml')) as any[]).filter(Boolean)
    expect(calico).toHaveLength(31)
    const env2 = calico.find((d) => d.kind === 'DaemonSet' && d.metadata.name === 'calico-node').spec.template.spec.containers[0].env
    expect(env2).toContainEqual({ name: 'CALICO_IPV4POOL_CIDR', value: '10.245.0.0/16' })
    expect(env2).toContainEqual({ name: 'IP_AUTODETECTION_METHOD', value: 'interface=eth0' })

    expect(await readFile(join(master, 'etc/hosts'), 'utf8')).toMatch(/^192\.0\.2\.11 k8s02 {2}# kube-airgap$/m)
    expect((await stat(join(master, 'root/.kube/config'))).mode & 0o777).toBe(0o600)
    expect(await readFile(join(master, 'usr/local/bin/kubectl-calico'), 'utf8')).toContain('stand-in for calicoctl')
    const worker = yaml.load(await readFile(join(bundle, 'join/worker.yaml'), 'utf8')) as Record<string, string>
    expect((await stat(join(bundle, 'join/worker.yaml'))).mode & 0o777).toBe(0o600)
    const hash = execSync(`openssl x509 -pubkey -in ${ca} | openssl rsa -pubin -outform der 2>/dev/null | openssl dgst -sha256 -hex | sed 's/^.* //'`, {
      encoding: 'utf8',
    }).trim()
    expect(worker).toMatchObject({
      kind: 'JoinFile',
      role: 'worker',
      endpoint: '192.0.2.10:6443',
      token: init!.bootstrapTokens[0].token,
      caCertHash: `sha256:${hash}`,
    })
    expect(Date.parse(worker.expires!) - Date.now()).toBeGreaterThan(23 * 3600_000)
    const cp = yaml.load(await readFile(join(bundle, 'join/control-plane.yaml'), 'utf8')) as Record<string, string>
    expect(cp).toMatchObject({ role: 'control-plane', certificateKey: init!.certificateKey })
    expect(r.stdout).toContain('sudo ./install --role worker --join-file join/worker.yaml')
    // The bundle still verifies with join/ in it.
    expect((await bundleCli(['verify', bundle])).code).toBe(0)
  })

  it('a second master run changes nothing', async () => {
    const before = await treeHashes(master)
    const r = await install(
      [
        '--role',
        'master',
        '--skip-phases',
        'images',
        '--config',
        join(dir, 'cluster.yaml'),
        '--pod-subnet',
        '10.245.0.0/16',
        '--advertise-address',
        '192.0.2.10',
      ],
      master,
      { env: env() },
    )
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(changing(r.record)).toEqual([])
    expect(await treeHashes(master)).toEqual(before)
  })

  it('a worker joins with join/worker.yaml', async () => {
    const w = await newRoot('joined-worker')
    const r = await install(['--role', 'worker', '--skip-phases', 'images', '--join-file', join(bundle, 'join/worker.yaml')], w, { env: env() })
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(changing(r.record).filter((l) => /^kube(adm|ctl)/.test(l))).toEqual([`kubeadm join --config ${join(w, 'etc/kube-airgap/kubeadm-join.yaml')}`])
    const joinCfg = yaml.load(await recorded(w, 'kubeadm-join.yaml')) as Record<string, any>
    const file = yaml.load(await readFile(join(bundle, 'join/worker.yaml'), 'utf8')) as Record<string, string>
    expect(joinCfg).toMatchObject({
      kind: 'JoinConfiguration',
      discovery: { bootstrapToken: { apiServerEndpoint: '192.0.2.10:6443', token: file.token, caCertHashes: [file.caCertHash] } },
      nodeRegistration: { imagePullPolicy: 'Never' },
    })
    expect(joinCfg.controlPlane).toBeUndefined()
    // A node that would take a name the cluster has (the master's k8s01, listed in the join file) is refused before kubeadm join.
    expect(file.nodes).toEqual(['k8s01'])
    const twin = await install(
      ['--role', 'worker', '--skip-phases', 'images', '--node-name', 'k8s01', '--join-file', join(bundle, 'join/worker.yaml')],
      await newRoot('twin'),
      { env: env() },
    )
    expect(twin.code).toBe(2)
    expect(twin.stderr.trim()).toMatch(
      /^install: EUSAGE: this node would join as "k8s01", the name of a Ready node the cluster has already .*give it its own with --node-name/,
    )
    expect(twin.record).toEqual([])
    // The wrong file for the role is refused.
    const wrong = await install(['--role', 'worker', '--join-file', join(bundle, 'join/control-plane.yaml')], await newRoot('wrong-role'), { env: env() })
    expect(wrong.code).toBe(2)
    expect(wrong.stderr).toMatch(/is for a control plane, not a worker; use join\/worker\.yaml/)
  })

  it('an expired join file is refused before kubeadm join, nothing written; join-command makes fresh ones', async () => {
    const expired = join(dir, 'expired-worker.yaml')
    await writeFile(expired, (await readFile(join(bundle, 'join/worker.yaml'), 'utf8')).replace(/^expires: .*$/m, `expires: '${YESTERDAY}'`))
    const w = await newRoot('expired')
    const before = await treeHashes(w)
    const r = await install(['--role', 'worker', '--join-file', expired], w, { env: env() })
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toMatch(/^install: EUSAGE: .*expired-worker\.yaml: its token expired at /)
    expect(r.stderr).toContain(`its token expired at ${YESTERDAY}; on the master run \`sudo ./install join-command\``)
    expect(r.record).toEqual([])
    expect(await treeHashes(w)).toEqual(before)

    // A node that joined already is not joined again: the same expired file on a rerun is harmless.
    const joined = join(dir, 'roots', 'joined-worker')
    const again = await install(['--role', 'worker', '--skip-phases', 'images', '--join-file', expired], joined, { env: env() })
    expect(again.code, again.stderr).toBe(0)
    expect(changing(again.record)).toEqual([])

    const fresh = await install(['join-command'], master, { env: env() })
    expect(fresh.code, fresh.stderr).toBe(0)
    expect(changing(fresh.record)).toEqual([
      `kubeadm token create --ttl 24h`,
      expect.stringMatching(/^kubeadm init phase upload-certs --upload-certs --certificate-key [0-9a-f]{64}$/),
    ])
    expect((yaml.load(await readFile(join(bundle, 'join/worker.yaml'), 'utf8')) as Record<string, string>).token).toBe('fresh1.0123456789abcdef')
  })

  it("stops before kubeadm init when the bundle's kubeadm wants an image the bundle lacks (a patch release's etcd)", async () => {
    const root = await newRoot('patch')
    const wants = 'registry.k8s.io/kube-apiserver:v1.29.3 registry.k8s.io/pause:3.9 registry.k8s.io/etcd:3.5.16-0'
    const r = await install(['--role', 'master', '--skip-phases', 'images', '--advertise-address', '192.0.2.10'], root, {
      env: { ...env(), KA_KUBEADM_IMAGES: wants },
    })
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n').pop()).toMatch(
      /^install: ESTEP: cluster: kubeadm v1\.29\.3 wants only the bundle's images.*: kubeadm v1\.29\.3 wants registry\.k8s\.io\/etcd:3\.5\.16-0, which the bundle does not carry .*nothing was started/,
    )
    expect(r.record).toContain('kubeadm config images list --kubernetes-version v1.29.3 --image-repository registry.k8s.io')
    expect(r.record.filter((l) => l.startsWith('kubeadm init'))).toEqual([])
  })

  it('a first master with no nameserver gets CoreDNS without upstream forwarding, once', async () => {
    const root = await newRoot('no-resolver')
    await rm(join(root, 'etc/resolv.conf'))
    const args = ['--role', 'master', '--phases', 'kubernetes,cluster,network', '--advertise-address', '192.0.2.10']
    const r = await install(args, root, { env: env() })
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(r.stderr).toMatch(
      /note {2}\/etc\/resolv\.conf \(what the kubelet hands CoreDNS\) names no nameserver: CoreDNS is set up without upstream forwarding/,
    )
    const applied = yaml.load(await readFile(join(root, 'etc/kube-airgap/coredns.yaml'), 'utf8')) as { data: { Corefile: string } }
    expect(applied.data.Corefile).toBe('.:53 {\n    errors\n    cache 30\n}\n')
    expect(changing(r.record).filter((l) => l.includes('coredns') && !/ get configmap /.test(l))).toEqual([
      `kubectl --kubeconfig ${join(root, 'etc/kubernetes/admin.conf')} apply --server-side --force-conflicts -f ${join(root, 'etc/kube-airgap/coredns.yaml')}`,
      `kubectl --kubeconfig ${join(root, 'etc/kubernetes/admin.conf')} -n kube-system rollout restart deployment coredns`,
    ])
    const again = await install(args, root, { env: env() })
    expect(again.code, again.stderr).toBe(0)
    expect(changing(again.record).filter((l) => l.includes('coredns') && !/ get configmap /.test(l))).toEqual([])
  })

  // kubeadm writes admin.conf in its kubeconfig phase, before wait-control-plane (where the
  // field notes' image and cgroup errors stop it), and makes the cluster's objects after; the
  // stand-in kubeadm stops where $KA_KUBEADM_FAIL_AT says, as the real one does.
  it('a kubeadm init that stopped at wait-control-plane is undone (kubeadm reset -f) and run again; one that stopped at bootstrap-token is finished with the phases it did not reach', async () => {
    const args = ['--role', 'master', '--phases', 'kubernetes,cluster', '--advertise-address', '192.0.2.10']
    const kubeadmLines = (r: RecordedRun) => changing(r.record).filter((l) => l.startsWith('kubeadm ') && !/^kubeadm (config|version)/.test(l))
    const config = (root: string) => join(root, 'etc/kube-airgap/kubeadm.yaml')

    const early = await newRoot('init-stopped-early')
    const failed = await install(args, early, { env: { ...env(), KA_KUBEADM_FAIL_AT: 'wait-control-plane' } })
    expect(failed.code).toBe(1)
    expect(await readFile(join(early, 'etc/kubernetes/admin.conf'), 'utf8')).toContain('admin kubeconfig')
    const again = await install(args, early, { env: env() })
    expect(again.code, again.stderr).toBe(0)
    expect(again.stderr).toMatch(/note {2}kubeadm init stopped before the control plane answered .*undone with kubeadm reset -f and run again/)
    expect(kubeadmLines(again)).toEqual(['kubeadm reset -f', `kubeadm init --config ${config(early)} --upload-certs`])

    const late = await newRoot('init-stopped-late')
    expect((await install(args, late, { env: { ...env(), KA_KUBEADM_FAIL_AT: 'bootstrap-token' } })).code).toBe(1)
    const finished = await install(args, late, { env: env() })
    expect(finished.code, finished.stderr).toBe(0)
    expect(kubeadmLines(finished)).toEqual(
      ['bootstrap-token', 'kubelet-finalize all', 'addon all'].map((p) => `kubeadm init phase ${p} --config ${config(late)}`),
    )
    const rerun = await install(args, late, { env: env() })
    expect(rerun.code, rerun.stderr).toBe(0)
    expect(kubeadmLines(rerun)).toEqual([])
    expect(rerun.stdout).toMatch(/\[cluster\] already done +cluster initialized \(kubeadm init\)/)
  })

  it('a control-plane join that stopped after kubelet.conf, before control-plane-join, is finished by that phase alone', async () => {
    const cp = await newRoot('cp-join-stopped')
    const args = [
      '--role',
      'master',
      '--phases',
      'kubernetes,cluster',
      '--advertise-address',
      '192.0.2.12',
      '--node-name',
      'k8s03',
      '--join-file',
      join(bundle, 'join/control-plane.yaml'),
    ]
    const stopped = await install(args, cp, { env: { ...env(), KA_KUBEADM_FAIL_AT: 'control-plane-join' } })
    expect(stopped.code).toBe(1)
    expect(await readFile(join(cp, 'etc/kubernetes/kubelet.conf'), 'utf8')).toContain('kubelet kubeconfig')
    const again = await install(args, cp, { env: env() })
    expect(again.code, again.stderr).toBe(0)
    expect(changing(again.record).filter((l) => l.startsWith('kubeadm ') && !/^kubeadm (config|version)/.test(l))).toEqual([
      `kubeadm join phase control-plane-join all --config ${join(cp, 'etc/kube-airgap/kubeadm-join.yaml')}`,
    ])
    const rerun = await install(args, cp, { env: env() })
    expect(changing(rerun.record).filter((l) => l.startsWith('kubeadm join'))).toEqual([])
  })

  it('every validation error: exit 2 and nothing written', async () => {
    const root = await newRoot('invalid')
    const before = await treeHashes(root)
    await writeFile(join(dir, 'typo.yaml'), 'podSubnt: 10.244.0.0/16\n')
    const cases: [string[], RegExp][] = [
      [['--pod-subnet', '10.244.0.0/33'], /pod subnet "10\.244\.0\.0\/33" is not an IPv4 network/],
      [['--pod-subnet', '10.96.0.0/16'], /and the service subnet 10\.96\.0\.0\/12 overlap/],
      [['--pod-subnet', '10.244.0.0/26'], /smaller than the \/24 each node takes/],
      [['--control-plane-endpoint', 'k8s-api'], /control-plane endpoint "k8s-api" is not host:port/],
      [['--config', join(dir, 'typo.yaml')], /unknown key "podSubnt" \(did you mean "podSubnet"\?\)/],
    ]
    for (const [args, line] of cases) {
      const r = await install(['--role', 'master', '--advertise-address', '192.0.2.10', ...args], root, { env: env() })
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr).toMatch(line)
      expect(r.stdout).toBe('')
    }
    expect(await treeHashes(root)).toEqual(before)
  })
})

describe('the images phase stream', () => {
  it('carries every blob intact to a slow reader (buffers are reused while the reader lags)', async () => {
    const { openBundle } = await import('../../bundle/open.js')
    const { layoutStream } = await import('../../installer/phases/images.js')
    const { Parser } = await import('tar')
    const b = await openBundle(bundle)
    const seen: string[] = []
    const bad: string[] = []
    const parser = new Parser({
      onReadEntry: (e) => {
        const hash = createHash('sha256')
        e.on('data', (c: Buffer) => hash.update(c))
        e.on('end', () => {
          const m = /blobs\/sha256\/([0-9a-f]{64})$/.exec(e.path)
          if (!m) return
          seen.push(m[1]!)
          if (hash.digest('hex') !== m[1]) bad.push(e.path)
        })
      },
    })
    for await (const chunk of layoutStream(b, b.images)) {
      await new Promise((r) => setTimeout(r, 1))
      parser.write(chunk as Buffer)
    }
    parser.end()
    expect(seen.length).toBeGreaterThan(20)
    expect(bad).toEqual([])
  })

  it('plans concurrent imports that never carry the same blob twice', async () => {
    const { openBundle } = await import('../../bundle/open.js')
    const { imageBlobs, planImport } = await import('../../installer/phases/images.js')
    const b = await openBundle(bundle)
    const plan = await planImport(b, b.images)
    expect(plan.first).toHaveLength(1)
    expect([...plan.first, ...plan.groups.flat()].map((i) => i.name).sort()).toEqual(b.images.map((i) => i.name).sort())
    expect(plan.groups.length).toBeGreaterThan(1)
    const owner = new Map<string, number>()
    for (const [g, images] of plan.groups.entries()) {
      for (const im of images) {
        for (const blob of await imageBlobs(b, im)) {
          if (plan.firstBlobs.has(blob)) continue
          expect(owner.get(blob) ?? g, `${blob} in two groups`).toBe(g)
          owner.set(blob, g)
        }
      }
    }
  })
})

describe('./install refuses before changing anything', () => {
  it('--dry-run on a fresh root prints files with hashes and commands, and writes nothing', async () => {
    const root = await newRoot('dry')
    const before = await treeHashes(root)
    const r = await install(['--role', 'master', '--dry-run', '--skip-phases', 'images', '--advertise-address', '192.0.2.10'], root)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^ {6}write \/etc\/containerd\/config\.toml {2}sha256:[0-9a-f]{64} {2}0644$/m)
    expect(r.stdout).toMatch(/^ {6}run {3}systemctl enable --now containerd$/m)
    expect(r.stdout).toMatch(/^dry run: \d+ steps would change the node; nothing was changed$/m)
    expect(await treeHashes(root)).toEqual(before)
    expect(changing(r.record)).toEqual([])
  })

  it('one flipped byte anywhere in the bundle stops the run in verify, and nothing under the root is written', async () => {
    const copy = join(dir, 'tampered', NAME)
    await cp(bundle, copy, { recursive: true })
    const calico = join(copy, 'files', 'calico.yaml')
    const bytes = await readFile(calico)
    bytes[5000] = bytes[5000]! ^ 1
    await writeFile(calico, bytes)
    const root = await newRoot('tampered')
    const before = await treeHashes(root)
    const r = await install(['--role', 'worker'], root, { bundleDir: copy })
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n').pop()).toMatch(/^install: EVERIFY: .* failed verification: files\/calico\.yaml: changed/)
    expect(r.stdout).toBe('')
    expect(await treeHashes(root)).toEqual(before)
    expect(r.record).toEqual([])

    // The runtime itself changed: the sh entry point refuses before running it.
    const node = join(copy, 'runtime', 'bin', 'node')
    await writeFile(node, Buffer.concat([await readFile(node), Buffer.from('x')]))
    const r2 = await install(['--role', 'worker'], root, { bundleDir: copy })
    expect(r2.code).toBe(1)
    expect(r2.stderr.trim()).toMatch(/^install: runtime\/bin\/node or installer\/install\.mjs does not match SHA256SUMS/)
  })

  it('an arm64 bundle on this amd64 machine: the install script refuses before running anything', async () => {
    const armLock = join(dir, 'arm.lock.json')
    await lockWorld(world, armLock, join(dir, 'cache'), world.manifestText.replace(`  - ${EXTRA_IMAGE}\n`, ''))
    const out = join(dir, 'arm-out')
    const b = await bundleCli(['build', '--lock', armLock, '--platform', 'linux/arm64', '--out', out, '--cache', join(dir, 'cache'), ...world.args])
    expect(b.code, b.stderr).toBe(0)
    execFileSync('tar', ['xf', 'kube-airgap-v1.29.3-linux-arm64.tar'], { cwd: out })
    const root = await newRoot('arm')
    const r = await install(['--role', 'worker'], root, { bundleDir: join(out, 'kube-airgap-v1.29.3-linux-arm64') })
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toBe(
      'install: this bundle is for linux/arm64 but this machine is x86_64 (amd64): use the linux/amd64 bundle (bundle build --platform linux/amd64)',
    )
    expect(r.record).toEqual([])
  })

  it('a glibc too old (CentOS 7) or none (Alpine): the install script names the system, its glibc and the supported releases, and runs nothing', async () => {
    const root = await newRoot('old-glibc')
    const system = (await readFile('/etc/os-release', 'utf8')).match(/^PRETTY_NAME="?([^"\n]*)"?$/m)![1]!
    for (const [answer, said] of [
      ['glibc 2.17', `${system} has glibc 2.17, too old: the bundled Node.js 24 needs glibc 2.28 or newer`],
      ['', `${system} has no glibc (musl systems such as Alpine are not supported): the bundled Node.js 24 needs glibc 2.28 or newer`],
    ]) {
      const fake = join(dir, `getconf-${answer.length}`)
      await mkdir(fake, { recursive: true })
      await writeFile(join(fake, 'getconf'), `#!/bin/sh\n${answer ? `echo "${answer}"` : 'exit 1'}\n`)
      await chmod(join(fake, 'getconf'), 0o755)
      const r = await install(['--role', 'worker'], root, { env: { PATH: `${fake}:${standins}:${process.env.PATH}` } })
      expect(r.code).toBe(2)
      expect(r.stderr).toBe(`install: ${said}; supported: ${SUPPORTED}\n`)
      expect(r.record).toEqual([])
    }
  })

  it('bad input: one clear line, exit 2', async () => {
    const root = await newRoot('bad')
    const cases: [string[], RegExp][] = [
      [['--role', 'boss'], /^install: EUSAGE: --role "boss": use master or worker$/],
      [['--role', 'worker', '--phases', 'kernel,networking'], /^install: EUSAGE: --phases: unknown phase "networking"/],
      [['--role', 'worker', '--no-such-flag'], /unknown option '--no-such-flag'/],
    ]
    for (const [args, line] of cases) {
      const r = await install(args, root)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr.trim().split('\n')[0]).toMatch(line)
    }
    const missing = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const c = spawn(join(bundle, 'install'), ['--role', 'worker', '--root', join(dir, 'no-such-root')], { stdio: ['ignore', 'ignore', 'pipe'] })
      let stderr = ''
      c.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
      c.on('close', (code) => resolve({ code, stderr }))
    })
    expect(missing.code).toBe(2)
    expect(missing.stderr.trim()).toMatch(/^install: EUSAGE: --root .*no-such-root: no such folder/)
    expect(existsSync(join(dir, 'no-such-root'))).toBe(false)
  })
})

describe('./install doctor and ./install reset', () => {
  const ctxFor = (nodeRoot: string, bundleDir = bundle, now?: number) =>
    testContext({ root: nodeRoot, bundle: bundleDir, containerdAddress: ctd!.socket, ...(now ? { facts: { now: () => now } } : {}) })
  const levels = async (ctx: Awaited<ReturnType<typeof ctxFor>>) => {
    const { doctor } = await import('../../installer/doctor.js')
    return Object.fromEntries((await doctor(ctx)).map((f) => [f.check, `${f.level}: ${f.found}${f.fix ? ` | fix: ${f.fix}` : ''}`]))
  }

  it('a healthy node says ok to every check (the CLI exits 0 with a table)', async () => {
    const r = await install(['doctor', '--containerd-address', ctd!.socket], root)
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^OK +images +all 10 images the node needs are in k8s\.io$/m)
    expect(r.stdout).toMatch(/^OK +images pinned +all pinned \(io\.cri-containerd\.pinned=pinned\)$/m)
    expect(r.stdout.trim().split('\n').pop()).toBe('no problems found')
    const found = await levels(await ctxFor(root))
    expect(Object.values(found).filter((v) => !v.startsWith('ok'))).toEqual([])
    expect(found['kubelet config']).toMatch(/^ok: .*not there yet: expected until kubeadm init or join writes it/)
  })

  it('a broken node fails each check with the right fix', async () => {
    const broken = join(dir, 'roots', 'broken')
    await cp(root, broken, { recursive: true })
    const w = (p: string, text: string) => mkdir(join(broken, p, '..'), { recursive: true }).then(() => writeFile(join(broken, p), text))
    const cfg = await readFile(join(broken, 'etc/containerd/config.toml'), 'utf8')
    await w(
      'etc/containerd/config.toml',
      `${cfg.replace('registry.k8s.io/pause:3.9', 'registry.k8s.io/pause:3.8')}\n[plugins."io.containerd.grpc.v1.cri".containerd.default_runtime]\n  runtime_type = "io.containerd.runtime.v1.linux"\n`,
    )
    await w('var/lib/kubelet/config.yaml', 'kind: KubeletConfiguration\ncgroupDriver: cgroupfs\n')
    await w('usr/sbin/runc', 'a second runc')
    await w('proc/modules', 'overlay 1 0 - Live 0x0\n')
    await w('etc/modules-load.d/k8s.conf', 'br_netfilter\n')
    await w('proc/sys/net/ipv4/ip_forward', '0\n')
    await w('proc/swaps', 'Filename Type Size Used Priority\n/swap.img file 4194300 0 -2\n')
    await w('etc/kube-airgap/kubeadm.yaml', 'kind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.244.0.0/16\n')
    await w('etc/kube-airgap/calico.yaml', '- name: CALICO_IPV4POOL_CIDR\n  value: 10.99.0.0/16\n')
    await mkdir(join(broken, 'etc/kubernetes/pki'), { recursive: true })
    execSync(
      `openssl req -x509 -newkey rsa:2048 -nodes -keyout ${join(dir, 'clock.key')} -out ${join(broken, 'etc/kubernetes/pki/ca.crt')} -days 1 -subj /CN=kubernetes 2>/dev/null`,
    )
    const bundleCopy = join(dir, 'doctor-bundle', NAME)
    await cp(bundle, bundleCopy, { recursive: true })
    await writeFile(
      join(bundleCopy, 'join/worker.yaml'),
      (await readFile(join(bundle, 'join/worker.yaml'), 'utf8')).replace(/^expires: .*$/m, `expires: '${YESTERDAY}'`),
    )
    // An image imported without -n k8s.io: in "default", not where kubelet looks.
    await ctd!.ctr(['-n', 'k8s.io', 'images', 'rm', 'docker.io/calico/node:v3.28.0'])
    const tar = spawn('tar', ['-C', join(bundle, 'images'), '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] })
    await ctd!.ctr(['-n', 'default', 'images', 'import', '--no-unpack', '-'], tar.stdout)
    // Port 10250 held by someone else, before the node joined (field notes error 5).
    const { createServer } = await import('node:net')
    const squatter = createServer().listen(10250, '0.0.0.0')
    await new Promise((r) => squatter.once('listening', r))
    try {
      const ctx = await ctxFor(broken, bundleCopy, Date.parse('2001-01-01T00:00:00Z'))
      const f = await levels(ctx)
      expect(f['sandbox image']).toMatch(
        /^fail: containerd's sandbox_image is registry\.k8s\.io\/pause:3\.8, the bundle's pause image is registry\.k8s\.io\/pause:3\.9 \| fix: set sandbox_image = "registry\.k8s\.io\/pause:3\.9"/,
      )
      expect(f['containerd deprecated keys']).toMatch(/^fail: .*io\.containerd\.runtime\.v1\.linux.*default_runtime.* \| fix: \.\/install --phases containerd/)
      expect(f['cgroup drivers']).toMatch(/^fail: kubelet uses cgroupfs, containerd uses systemd \| fix: both must be systemd/)
      expect(f['runc binaries']).toMatch(/^warn: \/usr\/sbin\/runc and \/usr\/local\/sbin\/runc; the one in use: \/usr\/local\/sbin\/runc/)
      expect(f['module br_netfilter']).toMatch(/^fail: not loaded \| fix: modprobe br_netfilter/)
      expect(f['module overlay']).toMatch(/^warn: loaded, but not in \/etc\/modules-load\.d\/k8s\.conf/)
      expect(f['net.ipv4.ip_forward']).toMatch(/^fail: is 0, needs 1/)
      expect(f.swap).toMatch(/^fail: on: \/swap\.img \| fix: swapoff -a/)
      expect(f['port 10250']).toMatch(
        /^fail: in use by node.* \(pid \d+.*\) before this node joined a cluster \| fix: a kubelet from an earlier attempt: \.\/install reset/,
      )
      expect(f.clock).toMatch(/^fail: the node's time \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d is before the cluster CA's start .* \| fix: set the clock/)
      expect(f.images).toMatch(
        /^fail: not in k8s\.io: docker\.io\/calico\/node:v3\.28\.0 \(docker\.io\/calico\/node:v3\.28\.0 is in namespace "default": imported without -n k8s\.io\) \| fix: \.\/install --phases images/,
      )
      expect(f['Calico pool']).toMatch(/^fail: Calico's pool is 10\.99\.0\.0\/16, kubeadm's pod subnet is 10\.244\.0\.0\/16/)
      expect(f['join/worker.yaml']).toMatch(/^warn: join\/worker\.yaml: its token expired .* \| fix: on the first master: sudo \.\/install join-command/)
      const cli = await install(['doctor', '--containerd-address', ctd!.socket, '--json'], broken)
      expect(cli.code).toBe(1)
      expect(JSON.parse(cli.stdout).ok).toBe(false)
      // Missing host commands (field notes error 1): a PATH without conntrack and socat.
      const { doctor } = await import('../../installer/doctor.js')
      const path = process.env.PATH
      process.env.PATH = standins
      try {
        const d = await doctor(await ctxFor(root))
        expect(d.find((x) => x.check === 'host commands')).toMatchObject({
          level: 'fail',
          found: expect.stringMatching(/conntrack.*\[ERROR FileExisting-conntrack\]/),
        })
        expect(d.find((x) => x.check === 'host commands (optional)')?.found).toMatch(/socat/)
      } finally {
        process.env.PATH = path
      }
    } finally {
      squatter.close()
      await ctd!.ctr(['-n', 'default', 'images', 'rm', 'docker.io/calico/node:v3.28.0'])
      await install(['--role', 'worker', '--phases', 'images', '--containerd-address', ctd!.socket], root)
    }
  })

  it('reset removes a container containerd was left running, and CRI and CNI leftovers; the images stay; a second reset changes nothing', async () => {
    const c = ctd!
    const run = await c.ctr(['-n', 'k8s.io', 'run', '-d', EXTRA_IMAGE, 'ka-left-running', '/bin/busybox', 'sleep', '300'])
    expect(run.code, run.stderr).toBe(0)
    expect((await c.ctr(['-n', 'k8s.io', 'tasks', 'ls'])).stdout).toMatch(/ka-left-running\s+\d+\s+RUNNING/)
    const stale = 'var/lib/containerd/io.containerd.grpc.v1.cri/containers/318dd6f158226c24a8c7d9c026cb313100b9049c982ea8594255fbbc3a134161'
    await mkdir(join(root, stale), { recursive: true })
    await writeFile(join(root, stale, 'status'), '{}')
    await mkdir(join(root, 'etc/cni/net.d'), { recursive: true })
    await writeFile(join(root, 'etc/cni/net.d/10-calico.conflist'), '{}')
    await mkdir(join(root, 'var/lib/cni/results'), { recursive: true })
    await mkdir(join(root, 'etc/kubernetes'), { recursive: true })
    await writeFile(join(root, 'etc/kubernetes/kubelet.conf'), '# joined')
    const imagesBefore = (await c.ctr(['-n', 'k8s.io', 'images', 'ls', '-q'])).stdout

    const r = await install(['reset', '--yes', '--containerd-address', c.socket], root)
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(changing(r.record)).toEqual(['kubeadm reset -f', 'systemctl restart containerd'])
    expect(r.stdout).toMatch(/\[reset\] done +containers removed from k8s\.io \(1; images kept\)/)
    expect((await c.ctr(['-n', 'k8s.io', 'containers', 'ls', '-q'])).stdout.trim()).toBe('')
    expect((await c.ctr(['-n', 'k8s.io', 'images', 'ls', '-q'])).stdout).toBe(imagesBefore)
    for (const p of [stale, 'etc/cni/net.d', 'var/lib/cni', 'etc/kubernetes']) expect(existsSync(join(root, p)), p).toBe(false)

    const again = await install(['reset', '--yes', '--containerd-address', c.socket], root)
    expect(again.code).toBe(0)
    expect(changing(again.record)).toEqual([])
    expect(again.stdout).not.toMatch(/\] done /)
    // Without a terminal and without --yes, it asks nobody and changes nothing.
    await mkdir(join(root, 'var/lib/cni'), { recursive: true })
    const asked = await install(['reset', '--containerd-address', c.socket], root)
    expect(asked.code).toBe(2)
    expect(asked.stderr).toMatch(/there is no terminal to ask on: run it with --yes/)
    expect(existsSync(join(root, 'var/lib/cni'))).toBe(true)
  })

  it("reset in the field notes' stuck-pod case, against the real containerd: crictl stopp fails, a sandbox shm is a real tmpfs mount; every step still runs, a second reset finishes", async () => {
    const c = ctd!
    const run = await c.ctr(['-n', 'k8s.io', 'run', '-d', EXTRA_IMAGE, 'ka-stuck', '/bin/busybox', 'sleep', '300'])
    expect(run.code, run.stderr).toBe(0)
    const crictl = join(root, 'usr/local/bin/crictl')
    const original = await readFile(crictl)
    const pods = join(root, '..', 'stuck-pods')
    await writeFile(pods, 'pod-stuck\n')
    await writeFile(
      crictl,
      `#!/bin/sh\necho "crictl $*" >> "$KA_RECORD"\ncase "$3" in\n  pods) cat "${pods}" 2>/dev/null ;;\n  stopp) echo 'plugin type="calico" failed (delete): connection is unauthorized: Unauthorized' >&2; exit 1 ;;\n  rmp) rm -f "${pods}" ;;\nesac\nexit 0\n`,
    )
    const sandbox = join(root, 'run/containerd/io.containerd.grpc.v1.cri/sandboxes/pod-stuck')
    await mkdir(join(sandbox, 'shm'), { recursive: true })
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'shm', join(sandbox, 'shm')])
    try {
      const r = await install(['reset', '--yes', '--containerd-address', c.socket], root)
      expect(r.code).toBe(1)
      expect(r.stderr.trim().split('\n').pop()).toMatch(
        /^install: ESTEP: reset: every step ran, 1 failed: pods stopped and removed \(1\): .*stopp pod-stuck.*Unauthorized; run it again to finish/,
      )
      expect(r.record).toContain(`crictl --runtime-endpoint unix://${c.socket} rmp -f pod-stuck`)
      expect(r.stdout).toMatch(/\[reset\] done +containers removed from k8s\.io \(1; images kept\)/)
      expect(r.stdout).toMatch(/\[reset\] done +mounts under the pod and sandbox folders unmounted \(1\)/)
      expect((await c.ctr(['-n', 'k8s.io', 'containers', 'ls', '-q'])).stdout.trim()).toBe('')
      expect(existsSync(sandbox)).toBe(false)
      expect(await readFile('/proc/self/mountinfo', 'utf8')).not.toContain(sandbox)
      const again = await install(['reset', '--yes', '--containerd-address', c.socket], root)
      expect(again.code, again.stderr).toBe(0)
    } finally {
      spawnSync('umount', [join(sandbox, 'shm')])
      await writeFile(crictl, original)
    }
  })

  it('reset --purge leaves no file the installer wrote, and restores /etc/fstab', async () => {
    const r0 = await newRoot('purge')
    const fresh = await treeHashes(r0)
    expect((await install(['--role', 'worker', '--skip-phases', 'images'], r0)).code).toBe(0)
    const r = await install(['reset', '--purge', '--yes'], r0)
    expect(r.code, r.stderr + r.stdout).toBe(0)
    const after = await treeHashes(r0)
    // What stays: the node as it was, and the stand-ins' own state (emulated kernel and systemd).
    const ours = Object.keys(after).filter((p) => !(p in fresh) && !p.startsWith('.systemctl/') && !p.startsWith('proc/'))
    expect(ours).toEqual([])
    expect(after['etc/fstab']).toBe(fresh['etc/fstab'])
    expect(changing(r.record)).toContain('systemctl disable --now kubelet containerd')
    expect(changing((await install(['reset', '--purge', '--yes'], r0)).record)).toEqual([])
  })
})

describe('an RPM-family node: SELinux and firewalld (stand-ins for getenforce, setenforce, firewall-cmd)', () => {
  const SELINUX = 'SELINUX=enforcing\nSELINUXTYPE=targeted\n'
  const OPEN = [
    'port 6443/tcp',
    'port 2379-2380/tcp',
    'port 10250/tcp',
    'port 10257/tcp',
    'port 10259/tcp',
    'port 30000-32767/tcp',
    'port 30000-32767/udp',
    'port 179/tcp',
    'protocol 4',
  ]
  const TRUSTED = [
    'trusted:source 10.244.0.0/16',
    'trusted:source 10.96.0.0/12',
    'trusted:interface cali+',
    'trusted:interface tunl0',
    'trusted:interface vxlan.calico',
  ]
  /** A fresh node as Rocky 9 ships it: SELinux enforcing, firewalld and NetworkManager running (or as asked). */
  async function rpmRoot(name: string, o: { mode?: string; firewalld?: boolean } = {}): Promise<string> {
    const r = await newRoot(name)
    await mkdir(join(r, 'etc/selinux'), { recursive: true })
    await writeFile(join(r, 'etc/selinux/config'), o.mode === 'Permissive' ? SELINUX.replace('enforcing', 'permissive') : SELINUX)
    await mkdir(join(r, '.selinux'))
    await writeFile(join(r, '.selinux/mode'), `${o.mode ?? 'Enforcing'}\n`)
    await mkdir(join(r, '.systemctl'), { recursive: true })
    if (o.firewalld ?? true) await writeFile(join(r, '.systemctl/active.firewalld'), '')
    await writeFile(join(r, '.systemctl/active.NetworkManager'), '')
    return r
  }
  const master = ['--role', 'master', '--phases', 'preflight,kernel', '--advertise-address', '192.0.2.10']
  const lines = async (r: string, f: string) => (await readFile(join(r, '.firewalld', f), 'utf8')).trim().split('\n').filter(Boolean).sort()

  it('sets SELinux permissive now and after reboot; opens the role ports and NodePorts and trusts the pod and service subnets and Calico interfaces in firewalld; keeps NetworkManager off them; a rerun changes nothing; doctor agrees; reset --purge undoes exactly that', async () => {
    const r = await rpmRoot('rocky')
    // The site's own opening, and a zone source of its own: reset --purge leaves both.
    await mkdir(join(r, '.firewalld'))
    await writeFile(join(r, '.firewalld/permanent'), 'port 10250/tcp\ntrusted:source 192.0.2.0/24\n')
    const first = await install(master, r)
    expect(first.code, first.stdout + first.stderr).toBe(0)
    expect(first.stderr).toMatch(/^WARN {2}selinux: SELinux is enforcing; the kernel phase sets it permissive now and after reboot/m)
    expect(first.stderr).toMatch(
      /^WARN {2}firewalld: firewalld is running and does not let through 6443\/tcp, 2379-2380\/tcp, 10257\/tcp, 10259\/tcp, 30000-32767\/tcp, 30000-32767\/udp, 179\/tcp, IP-in-IP \(protocol 4\); the kernel phase does it/m,
    )
    expect(first.stderr).toMatch(
      /^WARN {2}firewalld forwarding: firewalld rejects pod traffic forwarded between nodes: its trusted zone lacks source 10\.244\.0\.0\/16, source 10\.96\.0\.0\/12, interface cali\+, interface tunl0, interface vxlan\.calico; the kernel phase does it/m,
    )
    const security = (record: string[]) => changing(record).filter((l) => /^(setenforce|firewall-cmd|systemctl reload)/.test(l))
    expect(security(first.record)).toEqual([
      'setenforce 0',
      'firewall-cmd --permanent --add-port=6443/tcp --add-port=2379-2380/tcp --add-port=10257/tcp --add-port=10259/tcp --add-port=30000-32767/tcp --add-port=30000-32767/udp --add-port=179/tcp --add-protocol=4',
      'firewall-cmd --permanent --zone=trusted --add-source=10.244.0.0/16 --add-source=10.96.0.0/12 --add-interface=cali+ --add-interface=tunl0 --add-interface=vxlan.calico',
      'firewall-cmd --reload',
      'systemctl reload NetworkManager',
    ])
    expect(await readFile(join(r, '.selinux/mode'), 'utf8')).toBe('Permissive\n')
    expect(await readFile(join(r, 'etc/selinux/config'), 'utf8')).toBe('SELINUX=permissive\nSELINUXTYPE=targeted\n')
    expect(await readFile(join(r, 'etc/selinux/config.kube-airgap.bak'), 'utf8')).toBe(SELINUX)
    expect(await lines(r, 'runtime')).toEqual([...OPEN, ...TRUSTED, 'trusted:source 192.0.2.0/24'].sort())
    // Calico's documented unmanaged-devices file.
    expect(await readFile(join(r, 'etc/NetworkManager/conf.d/calico.conf'), 'utf8')).toMatch(
      /^\[keyfile\]\nunmanaged-devices=interface-name:cali\*;interface-name:tunl\*;interface-name:vxlan\.calico;/m,
    )

    const before = await treeHashes(r)
    const again = await install(master, r)
    expect(again.code, again.stdout + again.stderr).toBe(0)
    expect(security(again.record)).toEqual([])
    expect(await treeHashes(r)).toEqual(before)

    // Doctor checks what the node was set up to need (a master's ports, these subnets), forwarding included.
    const doctor = await install(['doctor'], r)
    expect(doctor.stdout).toMatch(/^OK +selinux +SELinux is permissive$/m)
    expect(doctor.stdout).toMatch(/^OK +firewalld +running; lets through 6443\/tcp, 2379-2380\/tcp, 10250\/tcp, .*, IP-in-IP \(protocol 4\)$/m)
    expect(doctor.stdout).toMatch(
      /^OK +firewalld forwarding +pod traffic is forwarded: the trusted zone holds source 10\.244\.0\.0\/16, source 10\.96\.0\.0\/12, interface cali\+/m,
    )
    expect(doctor.stdout).toMatch(/^OK +NetworkManager +running; \/etc\/NetworkManager\/conf\.d\/calico\.conf keeps it off Calico's interfaces$/m)
    // Someone takes the pod subnet out of the trusted zone: doctor fails on forwarding, with the command.
    const permanent = join(r, '.firewalld/permanent')
    const open = await readFile(permanent, 'utf8')
    await writeFile(permanent, open.replace('trusted:source 10.244.0.0/16\n', ''))
    const broken = await install(['doctor'], r)
    expect(broken.code).toBe(1)
    expect(broken.stdout).toMatch(
      /^FAIL +firewalld forwarding +firewalld rejects pod traffic forwarded between nodes: its trusted zone lacks source 10\.244\.0\.0\/16\n +fix: on every node: firewall-cmd --permanent --zone=trusted --add-source=10\.244\.0\.0\/16 && firewall-cmd --reload$/m,
    )
    await writeFile(permanent, open)

    const reset = await install(['reset', '--purge', '--yes'], r)
    expect(reset.code, reset.stdout + reset.stderr).toBe(0)
    expect(security(reset.record)).toEqual([
      'setenforce 1',
      'firewall-cmd --permanent --remove-port=6443/tcp --remove-port=2379-2380/tcp --remove-port=10257/tcp --remove-port=10259/tcp --remove-port=30000-32767/tcp --remove-port=30000-32767/udp --remove-port=179/tcp --remove-protocol=4',
      'firewall-cmd --permanent --zone=trusted --remove-source=10.244.0.0/16 --remove-source=10.96.0.0/12 --remove-interface=cali+ --remove-interface=tunl0 --remove-interface=vxlan.calico',
      'firewall-cmd --reload',
      'systemctl reload NetworkManager',
    ])
    expect(await readFile(join(r, 'etc/selinux/config'), 'utf8')).toBe(SELINUX)
    expect(existsSync(join(r, 'etc/selinux/config.kube-airgap.bak'))).toBe(false)
    expect(await readFile(join(r, '.selinux/mode'), 'utf8')).toBe('Enforcing\n')
    expect(await lines(r, 'runtime')).toEqual(['port 10250/tcp', 'trusted:source 192.0.2.0/24'])
    expect(existsSync(join(r, 'etc/NetworkManager/conf.d/calico.conf'))).toBe(false)
  })

  it('with selinux: keep and firewalld: keep, stops before changing anything, naming what is missing; passes, changing neither, once they are in place', async () => {
    const r = await rpmRoot('kylin')
    const config = join(dir, 'keep.yaml')
    await writeFile(config, 'selinux: keep\nfirewalld: keep\n')
    const before = await treeHashes(r)
    const refused = await install([...master, '--config', config], r)
    expect(refused.code).toBe(1)
    expect(refused.stderr.trim().split('\n').pop()).toMatch(
      /^install: ESTEP: preflight: .*SELinux is enforcing and cluster\.yaml says selinux: keep, but container-selinux's policy \(\/usr\/share\/selinux\/packages\/container\.pp\.bz2\) is not installed.*; firewalld is running and does not let through 6443\/tcp, .*\(cluster\.yaml says firewalld: keep\); fix them and run \.\/install again \(nothing was changed\); the full log: .*$/,
    )
    expect(refused.stderr).toMatch(/firewall-cmd --permanent --add-port=6443\/tcp .* --add-protocol=4 && firewall-cmd --reload/)
    expect(changing(refused.record)).toEqual([])
    expect(await treeHashes(r)).toEqual(before)

    await mkdir(join(r, 'usr/share/selinux/packages'), { recursive: true })
    await writeFile(join(r, 'usr/share/selinux/packages/container.pp.bz2'), 'policy')
    await mkdir(join(r, '.firewalld'), { recursive: true })
    await writeFile(join(r, '.firewalld/permanent'), `${[...OPEN, ...TRUSTED].join('\n')}\n`)
    const passed = await install([...master, '--config', config], r)
    expect(passed.code, passed.stdout + passed.stderr).toBe(0)
    expect(changing(passed.record).filter((l) => /^(setenforce|firewall-cmd)/.test(l))).toEqual([])
    expect(await readFile(join(r, 'etc/selinux/config'), 'utf8')).toBe(SELINUX)

    // Kept enforcing: containerd labels the containers itself, and starts from binaries relabelled as the policy says.
    const ctd = await install(['--role', 'master', '--phases', 'containerd', '--advertise-address', '192.0.2.10', '--config', config], r)
    expect(ctd.code, ctd.stdout + ctd.stderr).toBe(0)
    expect(await readFile(join(r, 'etc/containerd/config.toml'), 'utf8')).toMatch(
      /^\[plugins\."io\.containerd\.grpc\.v1\.cri"\]\n {2}sandbox_image = .*\n.*\n {2}enable_selinux = true$/m,
    )
    const ran = changing(ctd.record)
    expect(ran.filter((l) => l.startsWith('restorecon'))).toEqual([`restorecon -R ${r}/usr/local/bin ${r}/usr/local/sbin/runc`])
    expect(ran.indexOf(`restorecon -R ${r}/usr/local/bin ${r}/usr/local/sbin/runc`)).toBeLessThan(ran.indexOf('systemctl enable --now containerd'))
    const again = await install(['--role', 'master', '--phases', 'containerd', '--advertise-address', '192.0.2.10', '--config', config], r)
    expect(changing(again.record)).toEqual([])
  })

  it('SELinux permissive and firewalld stopped: nothing to do for either', async () => {
    const r = await rpmRoot('alma', { mode: 'Permissive', firewalld: false })
    const run = await install(master, r)
    expect(run.code, run.stdout + run.stderr).toBe(0)
    expect(run.record.filter((l) => /^(setenforce|firewall-cmd)/.test(l))).toEqual([])
    expect(run.stderr).not.toMatch(/selinux|firewalld/)
    expect(existsSync(join(r, 'etc/selinux/config.kube-airgap.bak'))).toBe(false)
  })
})

/**
 * The nodes of one test cluster sharing one cluster.yaml (the masters marked, every address
 * given, and `extra`), each with `program` in place as the packages phase installs it from the
 * bundle's set (haproxy and keepalived are in the default manifest's names).
 */
async function clusterOf(prefix: string, nodes: Record<string, string>, extra: string, program: string, env: NodeJS.ProcessEnv) {
  const config = join(dir, `${prefix}-cluster.yaml`)
  await writeFile(
    config,
    `nodes:\n${Object.entries(nodes)
      .map(([n, ip]) => `  ${n}: { advertiseAddress: ${ip}${n.startsWith('m') ? ', role: master' : ''} }\n`)
      .join('')}${extra}`,
  )
  const roots: Record<string, string> = {}
  for (const n of Object.keys(nodes)) {
    roots[n] = await newRoot(`${prefix}-${n}`)
    await mkdir(join(roots[n]!, 'usr/sbin'), { recursive: true })
    await writeFile(join(roots[n]!, 'usr/sbin', program), '#!/bin/sh\nexit 0\n', { mode: 0o755 })
  }
  const node = (n: string, role: string, more: string[] = []) =>
    install(['--role', role, '--skip-phases', 'images', '--config', config, '--advertise-address', nodes[n]!, '--node-name', n, ...more], roots[n]!, { env })
  return { config, roots, node }
}

/** Whether one run enabled the endpoint's unit before it ran kubeadm `verb`. */
const startedBefore = (record: string[], unit: string, verb: 'init' | 'join'): boolean => {
  const ran = changing(record)
  const at = ran.indexOf(`systemctl enable --now ${unit}`)
  return at >= 0 && at < ran.findIndex((l) => l.startsWith(`kubeadm ${verb}`))
}

describe('three masters and two workers behind the local endpoint (endpoint: local)', () => {
  const NODES = { m01: '192.0.2.21', m02: '192.0.2.22', m03: '192.0.2.23', w01: '192.0.2.31', w02: '192.0.2.32' }
  const SERVER = /^server: https:\/\/127\.0\.0\.1:7443$/m

  it("runs the proxy to every master on every node before kubeadm; the first master's kubeadm config, the join files and every kubeconfig use 127.0.0.1:7443, the certificate names every master", async () => {
    const ca = join(dir, 'ha-ca.crt')
    execSync(`openssl req -x509 -newkey rsa:2048 -nodes -keyout ${ca}.key -out ${ca} -days 1 -subj /CN=kubernetes 2>/dev/null`)
    const env = { KA_CA_CRT: ca }
    // The same file on every node, as README says.
    const { config, roots, node } = await clusterOf('ha', NODES, '', 'haproxy', env)

    const first = await node('m01', 'master')
    expect(first.code, first.stderr + first.stdout).toBe(0)
    expect(startedBefore(first.record, 'kube-airgap-apiserver-proxy', 'init')).toBe(true)
    const init = yaml.loadAll(await readFile(join(roots.m01!, 'etc/kube-airgap/kubeadm.yaml'), 'utf8')) as Record<string, any>[]
    expect(init[1]).toMatchObject({ kind: 'ClusterConfiguration', controlPlaneEndpoint: '127.0.0.1:7443' })
    expect(init[1]!.apiServer.certSANs).toEqual(['127.0.0.1', 'localhost', '192.0.2.21', '192.0.2.22', '192.0.2.23', 'm01', 'm02', 'm03'])
    for (const f of ['worker.yaml', 'control-plane.yaml'])
      expect((yaml.load(await readFile(join(bundle, 'join', f), 'utf8')) as Record<string, string>).endpoint, f).toBe('127.0.0.1:7443')

    for (const [n, role, file] of [
      ['m02', 'master', 'control-plane.yaml'],
      ['m03', 'master', 'control-plane.yaml'],
      ['w01', 'worker', 'worker.yaml'],
      ['w02', 'worker', 'worker.yaml'],
    ] as const) {
      const r = await node(n, role, ['--join-file', join(bundle, 'join', file)])
      expect(r.code, `${n}: ${r.stderr}${r.stdout}`).toBe(0)
      expect(startedBefore(r.record, 'kube-airgap-apiserver-proxy', 'join'), n).toBe(true)
    }
    for (const [n, r] of Object.entries(roots)) {
      const proxy = await readFile(join(r, 'etc/kube-airgap/apiserver-proxy.cfg'), 'utf8')
      expect(proxy, n).toMatch(/^ {4}bind 127\.0\.0\.1:7443$/m)
      expect(proxy.match(/^ {4}server .*$/gm), n).toEqual([
        '    server m01 192.0.2.21:6443',
        '    server m02 192.0.2.22:6443',
        '    server m03 192.0.2.23:6443',
      ])
      expect(await readFile(join(r, 'etc/systemd/system/kube-airgap-apiserver-proxy.service'), 'utf8'), n).toContain(
        'ExecStart=/usr/sbin/haproxy -Ws -f /etc/kube-airgap/apiserver-proxy.cfg',
      )
      expect(await readFile(join(r, 'etc/kubernetes/kubelet.conf'), 'utf8'), `${n} kubelet.conf`).toMatch(SERVER)
      if (n.startsWith('m')) expect(await readFile(join(r, 'etc/kubernetes/admin.conf'), 'utf8'), `${n} admin.conf`).toMatch(SERVER)
    }
    if (existsSync('/usr/sbin/haproxy'))
      expect(execFileSync('/usr/sbin/haproxy', ['-c', '-f', join(roots.w01!, 'etc/kube-airgap/apiserver-proxy.cfg')], { encoding: 'utf8' })).toMatch(/valid/)

    // A worker given the join file without the cluster.yaml that lists the masters has no proxy to join through.
    const lost = await newRoot('ha-lost')
    const r = await install(['--role', 'worker', '--skip-phases', 'images', '--join-file', join(bundle, 'join/worker.yaml')], lost, { env })
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toMatch(
      /^install: EUSAGE: --join-file .*worker\.yaml points at the local endpoint 127\.0\.0\.1:7443 \(endpoint: local\), which this node has not set up: give it the same cluster\.yaml/,
    )
    // A rerun on a master changes nothing, the proxy included.
    const again = await node('m02', 'master', ['--join-file', join(bundle, 'join/control-plane.yaml')])
    expect(changing(again.record)).toEqual([])

    // A fourth master later: a rerun with the new cluster.yaml rewrites each node's list and
    // reloads HAProxy (keeping its connections); nothing else changes, on the first master neither.
    await writeFile(config, `${await readFile(config, 'utf8')}  m04: { advertiseAddress: 192.0.2.24, role: master }\n`)
    for (const [n, role, more] of [
      ['w01', 'worker', ['--join-file', join(bundle, 'join/worker.yaml')]],
      ['m01', 'master', []],
    ] as const) {
      const r = await node(n, role, [...more])
      expect(r.code, r.stderr + r.stdout).toBe(0)
      expect(changing(r.record), n).toEqual(['systemctl reload-or-restart kube-airgap-apiserver-proxy'])
      expect(await readFile(join(roots[n]!, 'etc/kube-airgap/apiserver-proxy.cfg'), 'utf8')).toContain('    server m04 192.0.2.24:6443\n')
    }
    // reset --purge takes it away with the rest of what the installer put there.
    const purge = await install(['reset', '--purge', '--yes'], roots.w02!, { env })
    expect(purge.code, purge.stderr + purge.stdout).toBe(0)
    expect(changing(purge.record)).toContain('systemctl disable --now kube-airgap-apiserver-proxy')
    for (const f of ['etc/systemd/system/kube-airgap-apiserver-proxy.service', 'etc/kube-airgap/apiserver-proxy.cfg'])
      expect(existsSync(join(roots.w02!, f)), f).toBe(false)
  })
})

describe('three masters and a worker behind a virtual IP (endpoint: { vip })', () => {
  // The first master checks that the address is on its network: take this machine's own (a /24 or wider).
  const lan = Object.values(networkInterfaces())
    .flat()
    .find((a) => a?.family === 'IPv4' && !a.internal && Number(a.cidr?.split('/')[1]) <= 24)
  const base = lan?.address.split('.').slice(0, 3).join('.')
  if (!base) console.log('install.test.ts: this machine has no IPv4 network of a /24 or wider to place a virtual IP in: the virtual IP install test is skipped')
  const at = (n: number) => `${base}.${n}`

  it.skipIf(!base)(
    "keepalived on every master before kubeadm, none on the worker; kubeadm's endpoint, the join files and the kubeconfigs are vip:6443, the certificate names it",
    async () => {
      const ca = join(dir, 'vip-ca.crt')
      execSync(`openssl req -x509 -newkey rsa:2048 -nodes -keyout ${ca}.key -out ${ca} -days 1 -subj /CN=kubernetes 2>/dev/null`)
      const env = { KA_CA_CRT: ca }
      const VIP = at(250)
      const NODES = { m01: at(241), m02: at(242), m03: at(243), w01: at(244) }
      const { roots, node } = await clusterOf('vip', NODES, `endpoint: { vip: ${VIP}, interface: eth0 }\n`, 'keepalived', env)
      const first = await node('m01', 'master')
      expect(first.code, first.stderr + first.stdout).toBe(0)
      expect(startedBefore(first.record, 'kube-airgap-vip', 'init')).toBe(true)
      const init = yaml.loadAll(await readFile(join(roots.m01!, 'etc/kube-airgap/kubeadm.yaml'), 'utf8')) as Record<string, any>[]
      expect(init[1]).toMatchObject({ controlPlaneEndpoint: `${VIP}:6443` })
      expect(init[1]!.apiServer.certSANs).toEqual([VIP, NODES.m01, NODES.m02, NODES.m03, 'm01', 'm02', 'm03'])
      for (const f of ['worker.yaml', 'control-plane.yaml'])
        expect((yaml.load(await readFile(join(bundle, 'join', f), 'utf8')) as Record<string, string>).endpoint, f).toBe(`${VIP}:6443`)
      for (const [n, role, file] of [
        ['m02', 'master', 'control-plane.yaml'],
        ['m03', 'master', 'control-plane.yaml'],
        ['w01', 'worker', 'worker.yaml'],
      ] as const) {
        const r = await node(n, role, ['--join-file', join(bundle, 'join', file)])
        expect(r.code, `${n}: ${r.stderr}${r.stdout}`).toBe(0)
      }
      for (const [i, n] of ['m01', 'm02', 'm03'].entries()) {
        const conf = await readFile(join(roots[n]!, 'etc/kube-airgap/keepalived.conf'), 'utf8')
        expect(conf, n).toContain(`    priority ${150 - 10 * i}\n`)
        expect(conf, n).toContain(`    unicast_src_ip ${NODES[n as 'm01']}\n`)
        expect(conf, n).toContain(`        ${VIP}/32 dev eth0\n`)
        expect(((await stat(join(roots[n]!, 'etc/kube-airgap/apiserver-check.sh'))).mode & 0o777).toString(8)).toBe('755')
        expect(await readFile(join(roots[n]!, 'etc/kubernetes/admin.conf'), 'utf8'), n).toContain(`server: https://${VIP}:6443`)
      }
      // The worker reaches the address; it runs nothing for it.
      expect(existsSync(join(roots.w01!, 'etc/kube-airgap/keepalived.conf'))).toBe(false)
      expect(await readFile(join(roots.w01!, 'etc/kubernetes/kubelet.conf'), 'utf8')).toContain(`server: https://${VIP}:6443`)
      const again = await node('m01', 'master')
      expect(changing(again.record)).toEqual([])
    },
  )
})

describe('the second year: certificates', () => {
  /** A kubeadm-shaped PKI made with openssl: the CAs for ten years, each leaf for the days given. */
  async function pki(root: string, days: Record<string, number>): Promise<void> {
    const d = join(root, 'etc/kubernetes/pki')
    await mkdir(join(d, 'etcd'), { recursive: true })
    const sh = (cmd: string) => execSync(cmd, { cwd: d, stdio: 'ignore', shell: '/bin/sh' })
    for (const ca of ['ca', 'front-proxy-ca', 'etcd/ca'])
      sh(`openssl req -x509 -newkey rsa:2048 -nodes -keyout ${ca}.key -out ${ca}.crt -days 3650 -subj /CN=${ca.replace('/', '-')}`)
    for (const [name, n] of Object.entries(days)) {
      const ca = name.startsWith('etcd/') ? 'etcd/ca' : name === 'front-proxy-client' ? 'front-proxy-ca' : 'ca'
      sh(
        `openssl req -newkey rsa:2048 -nodes -keyout ${name}.key -subj /CN=${name.replace('/', '-')} | openssl x509 -req -CA ${ca}.crt -CAkey ${ca}.key -CAcreateserial -days ${n} -out ${name}.crt`,
      )
    }
    // admin.conf with its client certificate embedded, as kubeadm writes it.
    sh(
      'openssl req -newkey rsa:2048 -nodes -keyout admin.key -subj /CN=kubernetes-admin | openssl x509 -req -CA ca.crt -CAkey ca.key -CAcreateserial -days 60 -out admin.crt',
    )
    const b64 = async (f: string) => (await readFile(join(d, f))).toString('base64')
    await writeFile(
      join(root, 'etc/kubernetes/admin.conf'),
      `apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://192.0.2.10:6443\n  name: kubernetes\nusers:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: ${await b64('admin.crt')}\n    client-key-data: ${await b64('admin.key')}\n`,
      { mode: 0o600 },
    )
    for (const f of ['admin.crt', 'admin.key']) await rm(join(d, f))
    for (const pod of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler'])
      await writeFile(join(root, 'etc/kubernetes/manifests', `${pod}.yaml`), `# ${pod}\nkind: Pod\n`, { mode: 0o600 })
  }
  const certLines = (out: string) => out.split('\n').filter((l) => /^(FAIL|WARN) +certificate/.test(l))

  it("doctor fails and warns naming certificates that expire in 10 and 60 days; certs renew renews them with kubeadm, restarts etcd, the API server, the controller manager and the scheduler one at a time, refreshes root's kubeconfig; then doctor has nothing to say", async () => {
    const ca = join(dir, 'certs-ca.crt')
    execSync(`openssl req -x509 -newkey rsa:2048 -nodes -keyout ${ca}.key -out ${ca} -days 1 -subj /CN=kubernetes 2>/dev/null`)
    const env = { KA_CA_CRT: ca }
    const r0 = await newRoot('certs')
    const made = await install(['--role', 'master', '--skip-phases', 'images', '--advertise-address', '192.0.2.10'], r0, { env })
    expect(made.code, made.stderr + made.stdout).toBe(0)
    await pki(r0, { apiserver: 10, 'front-proxy-client': 60, 'apiserver-kubelet-client': 400, 'etcd/server': 400 })

    const before = await install(['doctor'], r0, { env })
    expect(certLines(before.stdout)).toEqual([
      expect.stringMatching(/^FAIL +certificate apiserver +expires \d{4}-\d\d-\d\d \(in 9 days\): \/etc\/kubernetes\/pki\/apiserver\.crt$/),
      expect.stringMatching(/^WARN +certificate admin\.conf +expires .* \(in 59 days\): \/etc\/kubernetes\/admin\.conf$/),
      expect.stringMatching(/^WARN +certificate front-proxy-client +expires .* \(in 59 days\)/),
    ])
    expect(before.stdout).toMatch(/fix: on this master: sudo \.\/install certs renew/)
    expect(before.stdout).toMatch(/^OK +certificates +5 valid for 90 days or more; the soonest, apiserver-kubelet-client, in 399 days$/m)

    const tree = await treeHashes(r0)
    const dry = await install(['certs', 'renew', '--dry-run'], r0, { env })
    expect(dry.code, dry.stderr + dry.stdout).toBe(0)
    expect(await treeHashes(r0)).toEqual(tree)
    const r = await install(['certs', 'renew'], r0, { env })
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(dryRunClaims(dry.stdout, r.stdout)).toEqual([])
    expect(changing(r.record)).toEqual(['kubeadm certs renew all'])
    // One pod at a time: each gone (its manifest out) and back before the next.
    const order = r.stdout
      .split('\n')
      .filter((l) => /^\[certs\] done +\S+ (stopped|started)/.test(l))
      .map((l) => l.replace(/^\[certs\] done +(\S+ \S+).*$/, '$1'))
    expect(order).toEqual([
      'etcd stopped',
      'etcd started',
      'kube-apiserver stopped',
      'kube-apiserver started',
      'kube-controller-manager stopped',
      'kube-controller-manager started',
      'kube-scheduler stopped',
      'kube-scheduler started',
    ])
    const polls = r.record.filter((l) => l.includes(' ps --name ')).map((l) => /--name \^(\S+)\$/.exec(l)![1])
    expect([...new Set(polls)]).toEqual(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler'])
    for (const pod of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler'])
      expect(await readFile(join(r0, 'etc/kubernetes/manifests', `${pod}.yaml`), 'utf8')).toBe(`# ${pod}\nkind: Pod\n`)
    expect(await readFile(join(r0, 'root/.kube/config'))).toEqual(await readFile(join(r0, 'etc/kubernetes/admin.conf')))
    const after = await install(['doctor'], r0, { env })
    expect(certLines(after.stdout)).toEqual([])
    expect(after.stdout).toMatch(/^OK +certificates +8 valid for 90 days or more/m)
  })
})
