import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { listenerOn } from '../../installer/node-state.js'
import { testContext } from '../support/context.js'
import { bundleCli } from '../support/cli.js'
import { REPO } from '../support/fake-upstream.js'
import { freshNodeRoot, writeStandins } from '../support/standins.js'
import { lockWorld, startWorld, type World } from '../support/world.js'

/**
 * What a real node breaks on: a rerun on a node that already runs its kubelet, a foreign
 * listener, and a reset in the field notes' stuck-pod case (a sandbox whose shm is a real
 * tmpfs mount, a crictl stopp that fails).
 */
const NAME = 'kube-airgap-v1.29.3-linux-amd64'
let dir: string
let world: World
let bundle: string
let standins: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-node-'))
  world = await startWorld(dir)
  const lock = join(dir, 'bundle.lock.json')
  await lockWorld(world, lock, join(dir, 'cache'))
  const b = await bundleCli(['build', '--lock', lock, '--out', join(dir, 'out'), '--cache', join(dir, 'cache'), ...world.args])
  expect(b.code, b.stderr).toBe(0)
  execFileSync('tar', ['xf', `${NAME}.tar`], { cwd: join(dir, 'out') })
  bundle = join(dir, 'out', NAME)
  standins = await writeStandins(join(dir, 'standins'))
}, 180_000)
afterAll(async () => {
  await world.close()
  await rm(dir, { recursive: true, force: true })
})

/** The bundle's installer with this machine's Node.js (the world's runtime is a stand-in). */
const installer = (root: string, args: string[]) => {
  const r = spawnSync(process.execPath, [join(bundle, 'installer', 'install.mjs'), '--bundle', bundle, ...args, '--root', root, '--host-commands', standins], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${standins}:${process.env.PATH}`, KA_RECORD: join(root, '..', 'record'), KA_ROOT: root },
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** A process listening on a port, under the command name `command` (what /proc/<pid>/comm says). */
async function listen(port: number, command: string): Promise<ChildProcess> {
  const exe = join(dir, command)
  await rm(exe, { force: true })
  await symlink(process.execPath, exe)
  const child = spawn(exe, ['-e', `require('net').createServer().listen(${port}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'ignore'] })
  await new Promise((r) => child.stdout!.once('data', r))
  return child
}

describe('a rerun on a live node', () => {
  it('knows a listener on 10250 that is this node kubelet (rerun passes), and names a foreign one', async () => {
    const root = await mkdtemp(join(dir, 'node-'))
    await freshNodeRoot(root)
    const kubelet = await listen(10250, 'kubelet')
    try {
      expect(await listenerOn(10250)).toMatchObject({ pid: kubelet.pid, command: 'kubelet' })
      // A node this installer joined: its join config and the kubelet's kubeconfig are there.
      await mkdir(join(root, 'etc/kube-airgap'), { recursive: true })
      await mkdir(join(root, 'etc/kubernetes'), { recursive: true })
      await writeFile(join(root, 'etc/kube-airgap/kubeadm-join.yaml'), 'kind: JoinConfiguration\n')
      await writeFile(join(root, 'etc/kubernetes/kubelet.conf'), 'kind: Config\n')
      const ours = installer(root, ['--role', 'worker', '--phases', 'preflight'])
      expect(ours.code, ours.stderr).toBe(0)
      expect(ours.stdout).toMatch(/\[preflight\] checked +node checked/)
      // The same listener on a node this installer did not set up: refused, naming it.
      await rm(join(root, 'etc/kube-airgap'), { recursive: true })
      const foreign = installer(root, ['--role', 'worker', '--phases', 'preflight'])
      expect(foreign.code).toBe(1)
      expect(foreign.stderr).toMatch(new RegExp(`FAIL {2}port 10250: port 10250 \\(kubelet\\) is in use by kubelet \\(pid ${kubelet.pid}`))
      expect(foreign.stderr).toMatch(/one choice is \.\/install reset, which removes that cluster from this node/)
      expect(foreign.stderr).toMatch(/existing cluster: .*not from kube-airgap/)
    } finally {
      kubelet.kill()
    }
    // Our state, but something else holds 10250: that is named, and reset is not offered.
    const other = await listen(10250, 'nginx')
    try {
      await mkdir(join(root, 'etc/kube-airgap'), { recursive: true })
      await writeFile(join(root, 'etc/kube-airgap/kubeadm-join.yaml'), 'kind: JoinConfiguration\n')
      const r = installer(root, ['--role', 'worker', '--phases', 'preflight'])
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(
        new RegExp(`port 10250 \\(kubelet\\) is in use by nginx \\(pid ${other.pid}.*set up by kube-airgap, but 10250 is held by something else`),
      )
    } finally {
      other.kill()
    }
  })
})

describe('doctor on a node before kubeadm', () => {
  it('finds containerd on cgroupfs before the kubelet exists, and a node with no nameserver', async () => {
    const root = await mkdtemp(join(dir, 'doc-'))
    await freshNodeRoot(root)
    await mkdir(join(root, 'etc/containerd'), { recursive: true })
    // What `containerd config default` writes, the most common hand edit's starting point.
    await writeFile(
      join(root, 'etc/containerd/config.toml'),
      'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.9"\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n  SystemdCgroup = false\n',
    )
    await rm(join(root, 'etc/resolv.conf'))
    const r = installer(root, ['doctor', '--json'])
    expect(r.code).toBe(1)
    const findings = JSON.parse(r.stdout).findings as { level: string; check: string; found: string; fix?: string }[]
    expect(findings.find((f) => f.check === 'cgroup drivers')).toMatchObject({
      level: 'fail',
      found: expect.stringMatching(/cgroupfs .*kubeadm will set up the kubelet for systemd/),
      fix: expect.stringMatching(/SystemdCgroup = true/),
    })
    expect(findings.find((f) => f.check === 'nameserver')).toMatchObject({
      level: 'fail',
      found: expect.stringMatching(/no nameserver: CoreDNS will crash-loop/),
    })
    await writeFile(join(root, 'etc/resolv.conf'), 'nameserver 10.0.0.53\n')
    await writeFile(
      join(root, 'etc/containerd/config.toml'),
      (await import('node:fs')).readFileSync(join(root, 'etc/containerd/config.toml'), 'utf8').replace('false', 'true'),
    )
    const ok = JSON.parse(installer(root, ['doctor', '--json']).stdout).findings as { level: string; check: string }[]
    expect(ok.find((f) => f.check === 'nameserver')?.level).toBe('ok')
    expect(ok.find((f) => f.check === 'cgroup drivers')).toBeUndefined()
  })
})

describe('the resolver the kubelet hands CoreDNS', () => {
  // Ubuntu 22.04 and 24.04: systemd-resolved runs, /etc/resolv.conf names only its stub, and
  // kubeadm gives the kubelet resolved's own list (cmd/kubeadm/app/componentconfigs/kubelet.go,
  // kubeletSystemdResolverConfig while isServiceActive("systemd-resolved")). On an air-gapped
  // host with no DNS server that list is empty.
  it('with systemd-resolved running, the stub in /etc/resolv.conf does not count: its empty list fails doctor and warns in preflight', async () => {
    const root = await mkdtemp(join(dir, 'resolved-'))
    await freshNodeRoot(root)
    await writeFile(
      join(root, 'etc/resolv.conf'),
      '# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n',
    )
    await mkdir(join(root, 'run/systemd/resolve'), { recursive: true })
    await writeFile(
      join(root, 'run/systemd/resolve/resolv.conf'),
      '# This is /run/systemd/resolve/resolv.conf managed by man:systemd-resolved(8).\n# No DNS servers known.\nsearch .\n',
    )
    await mkdir(join(root, '.systemctl'), { recursive: true })
    await writeFile(join(root, '.systemctl/active.systemd-resolved'), '')
    const finding = () =>
      (JSON.parse(installer(root, ['doctor', '--json']).stdout).findings as { level: string; check: string; found: string; fix?: string }[]).find(
        (f) => f.check === 'nameserver',
      )
    expect(finding()).toMatchObject({
      level: 'fail',
      found: expect.stringMatching(/^\/run\/systemd\/resolve\/resolv\.conf \(what the kubelet hands CoreDNS\) names no nameserver/),
      fix: expect.stringMatching(/DNS=<IP> in \/etc\/systemd\/resolved\.conf/),
    })
    const pre = installer(root, ['--role', 'worker', '--phases', 'preflight', '--json'])
    expect(JSON.parse(pre.stdout).warnings).toContainEqual(
      expect.stringMatching(/^WARN {2}nameserver: \/run\/systemd\/resolve\/resolv\.conf \(what the kubelet hands CoreDNS\) names no nameserver/),
    )
    // resolved learns a server: OK. Without resolved, the stub alone is a loop, not a server.
    await writeFile(join(root, 'run/systemd/resolve/resolv.conf'), 'nameserver 10.0.0.53\n')
    expect(finding()).toMatchObject({ level: 'ok', found: '10.0.0.53 (/run/systemd/resolve/resolv.conf, what the kubelet hands CoreDNS)' })
    await rm(join(root, '.systemctl/active.systemd-resolved'))
    expect(finding()).toMatchObject({
      level: 'fail',
      found: expect.stringMatching(/^\/etc\/resolv\.conf \(what the kubelet hands CoreDNS\) names no nameserver/),
    })
  })
})

describe('what a hardware node needs', () => {
  /** A context for in-process checks, as the CLI builds it. */
  const ctxFor = (root: string, role: 'master' | 'worker' = 'worker', now?: number) =>
    testContext({
      root,
      bundle,
      role,
      hostCommands: standins,
      flags: { nodeName: 'k8s02' },
      advertise: '192.0.2.10',
      containerdAddress: join(root, 'no.sock'),
      ...(now ? { facts: { now: () => now } } : {}),
    })
  const jwt = (exp: number) => `e30.${Buffer.from(JSON.stringify({ exp: Math.floor(exp / 1000) })).toString('base64url')}.c2ln`

  it("doctor finds an expired Calico CNI token, a clock behind the master's, and a firewall; join refuses the clock", async () => {
    const { doctor } = await import('../../installer/doctor.js')
    const { parseJoinFile, formatJoinFile } = await import('../../installer/kubeadm.js')
    const root = await mkdtemp(join(dir, 'hw-'))
    await freshNodeRoot(root)
    await mkdir(join(root, 'etc/cni/net.d'), { recursive: true })
    await writeFile(
      join(root, 'etc/cni/net.d/calico-kubeconfig'),
      `apiVersion: v1\nusers:\n- name: calico\n  user:\n    token: ${jwt(Date.now() - 3600_000)}\n`,
    )
    await mkdir(join(root, 'etc/ufw'), { recursive: true })
    await writeFile(join(root, 'etc/ufw/ufw.conf'), 'ENABLED=yes\n')
    await mkdir(join(root, '.systemctl'), { recursive: true })
    await writeFile(join(root, '.systemctl/active.firewalld'), '')
    process.env.KA_ROOT = root
    process.env.KA_RECORD = join(root, '..', 'hw.record')
    const f = await doctor(await ctxFor(root))
    const by = (check: string) => f.filter((x) => x.check === check)
    expect(by('Calico CNI token')[0]).toMatchObject({
      level: 'fail',
      found: expect.stringMatching(/expired at .*"Unauthorized"/),
      fix: expect.stringMatching(/delete pod -l k8s-app=calico-node --field-selector spec\.nodeName=k8s02/),
    })
    expect(by('firewall').map((x) => x.found)).toEqual([
      expect.stringMatching(
        /^ufw is enabled .*TCP 10250, NodePorts \(TCP and UDP 30000-32767\), BGP \(TCP 179\) and IP-in-IP .*, and pod traffic forwarded between nodes$/,
      ),
    ])
    // firewalld is one the installer opens itself: on a live node, what it does not let through is a failure with the command.
    expect(by('firewalld')).toEqual([
      {
        level: 'fail',
        check: 'firewalld',
        found: 'firewalld is running and does not let through 10250/tcp, 30000-32767/tcp, 30000-32767/udp, 179/tcp, IP-in-IP (protocol 4)',
        fix: 'on every node: firewall-cmd --permanent --add-port=10250/tcp --add-port=30000-32767/tcp --add-port=30000-32767/udp --add-port=179/tcp --add-protocol=4 && firewall-cmd --reload',
      },
    ])
    // Open ports are not enough: forwarded pod traffic must reach a zone that accepts it (projectcalico/calico#5232).
    expect(by('firewalld forwarding')).toEqual([
      expect.objectContaining({
        level: 'fail',
        found: expect.stringMatching(
          /^firewalld rejects pod traffic forwarded between nodes: its trusted zone lacks source 10\.244\.0\.0\/16, source 10\.96\.0\.0\/12, interface cali\+, interface tunl0, interface vxlan\.calico$/,
        ),
      }),
    ])
    await writeFile(join(root, 'etc/cni/net.d/calico-kubeconfig'), `token: ${jwt(Date.now() + 3600_000)}\n`)
    expect((await doctor(await ctxFor(root))).find((x) => x.check === 'Calico CNI token')?.level).toBe('ok')

    // A join file the master wrote an hour "after" this node's clock: the clock is behind.
    const issued = new Date(Date.now() + 3600_000).toISOString()
    const text = formatJoinFile({
      role: 'worker',
      endpoint: '192.0.2.10:6443',
      token: 'abcdef.0123456789abcdef',
      issued,
      expires: new Date(Date.now() + 86_400_000).toISOString(),
      caCertHash: `sha256:${'a'.repeat(64)}`,
    })
    expect(() => parseJoinFile(text, 'join/worker.yaml')).toThrow(
      /its clock is behind by (59|60) minutes or more, and kubeadm join would fail with x509 "certificate is not yet valid"; set the time/,
    )
    expect(parseJoinFile(text, 'join/worker.yaml', Date.now() + 3600_000).issued).toBe(issued)
  })

  it("doctor on a cluster's node compares its clock with the API server's Date header, naming the time service it found", async () => {
    const { doctor } = await import('../../installer/doctor.js')
    // A real HTTPS server on loopback, as an API server answers an anonymous /livez: 401, with a Date header.
    const pki = await mkdtemp(join(dir, 'api-'))
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(pki, 'key'), '-out', join(pki, 'crt'), '-days', '1', '-subj', '/CN=kube-apiserver'],
      { stdio: 'ignore' },
    )
    const { createServer } = await import('node:https')
    const { readFile } = await import('node:fs/promises')
    const server = createServer({ key: await readFile(join(pki, 'key')), cert: await readFile(join(pki, 'crt')) }, (_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' })
      res.end('{"kind":"Status","code":401}')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as { port: number }).port
    try {
      const root = await mkdtemp(join(dir, 'clock-'))
      await freshNodeRoot(root)
      await mkdir(join(root, 'etc/kubernetes'), { recursive: true })
      await mkdir(join(root, 'etc/kube-airgap'), { recursive: true })
      await writeFile(
        join(root, 'etc/kubernetes/kubelet.conf'),
        `apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n    server: https://127.0.0.1:${port}\ncontexts:\n- name: kubelet\n  context:\n    cluster: kubernetes\ncurrent-context: kubelet\n`,
      )
      await writeFile(
        join(root, 'etc/kube-airgap/kubeadm-join.yaml'),
        'apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\nnodeRegistration:\n  name: k8s02\n',
      )
      process.env.KA_ROOT = root
      process.env.KA_RECORD = join(root, '..', 'clock.record')
      const clock = async (now?: number) => (await doctor(await ctxFor(root, 'worker', now))).filter((f) => f.check === 'clock vs API server')
      expect(await clock()).toEqual([
        {
          level: 'ok',
          check: 'clock vs API server',
          found: `within 30 s of https://127.0.0.1:${port}; no time service running (looked for chronyd, chrony, systemd-timesyncd, ntpd, ntp)`,
        },
      ])
      await mkdir(join(root, '.systemctl'), { recursive: true })
      await writeFile(join(root, '.systemctl/active.chronyd'), '')
      const [behind] = await clock(Date.now() - 95_000)
      expect(behind).toMatchObject({
        level: 'fail',
        found: expect.stringMatching(
          new RegExp(`^this node's clock is 9[4-6] s behind the API server's \\(https://127\\.0\\.0\\.1:${port}, its Date header\\); chronyd running$`),
        ),
        fix: expect.stringMatching(/^point chronyd at the same time source as the masters/),
      })
    } finally {
      server.close()
    }
  })

  it('Calico finds the interface that reaches the first master by default; route_localnet is left to kube-proxy', async () => {
    const { network } = await import('../../installer/phases/network.js')
    const { sysctlConf } = await import('../../installer/templates.js')
    const root = await mkdtemp(join(dir, 'nic-'))
    const steps = await network.plan(await ctxFor(root, 'master'))
    const write = steps.flatMap((st) => st.actions).find((a) => a.kind === 'write' && a.path === '/etc/kube-airgap/calico.yaml')
    const text = (await (write as { data: () => Promise<Buffer> | Buffer }).data()).toString()
    expect(text).toMatch(/name: IP_AUTODETECTION_METHOD\n\s+value: can-reach=192\.0\.2\.10/)
    expect(sysctlConf()).not.toContain('route_localnet')
  })
})

describe('per-node names from one cluster.yaml', () => {
  it('two workers with one cluster.yaml get two names; the shared file cannot pin one name for all', async () => {
    const { clusterConfig } = await import('../../installer/cluster-config.js')
    const shared = 'podSubnet: 10.244.0.0/16\nnodes:\n  k8s02: { advertiseAddress: 192.168.1.12 }\n  k8s03: { nodeName: worker-3 }\n'
    const a = clusterConfig(shared, 'cluster.yaml', {}, { networks: [], hostname: 'k8s02' }).config
    const b = clusterConfig(shared, 'cluster.yaml', {}, { networks: [], hostname: 'k8s03' }).config
    expect([a.nodeName, a.advertiseAddress, b.nodeName, b.advertiseAddress]).toEqual(['k8s02', '192.168.1.12', 'worker-3', undefined])
    expect(clusterConfig(shared, 'cluster.yaml', { nodeName: 'n4' }, { networks: [], hostname: 'k8s04' }).config.nodeName).toBe('n4')
    expect(() => clusterConfig('nodeName: k8s01\n', 'cluster.yaml', {}, { networks: [], hostname: 'k8s02' })).toThrow(
      /nodeName is per node, and the same cluster\.yaml goes to every node \(every worker would be "k8s01"\); give --node-name on each node, or write nodes:/,
    )
    expect(() => clusterConfig('advertiseAddress: 192.168.1.11\n', 'cluster.yaml', {}, { networks: [], hostname: 'k8s02' })).toThrow(
      /advertiseAddress is per node/,
    )
    expect(() => clusterConfig('nodes: { k8s02: { taints: [] } }\n', 'cluster.yaml', {}, { networks: [], hostname: 'k8s02' })).toThrow(
      /nodes\.k8s02: unknown key "taints"/,
    )
    // The example the README points to is valid as it is, on each node it names.
    const example = (await import('node:fs')).readFileSync(join(REPO, 'manifests', 'cluster.example.yaml'), 'utf8')
    expect(clusterConfig(example, 'cluster.example.yaml', {}, { networks: [], hostname: 'k8s02' }).config).toMatchObject({
      nodeName: 'k8s02',
      advertiseAddress: '192.168.1.12',
    })
  })
})

describe('the image table, by exact version', () => {
  it('bundle lock --no-kubeadm refuses a patch version the table does not know, saying where to lock it instead', async () => {
    const manifest = join(dir, 'patch.yaml')
    await writeFile(manifest, world.manifestText.replace(/^kubernetes: .*$/m, 'kubernetes: 1.29.7'))
    const r = await bundleCli(['lock', '--manifest', manifest, '--out', join(dir, 'patch.lock.json'), '--no-kubeadm', ...world.args])
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr.trim().split('\n').pop()).toBe(
      'bundle: ENOTPINNED: Kubernetes 1.29.7: asked not to run kubeadm (--no-kubeadm), and manifests/kubeadm-images.yaml has no row for it; run bundle lock on a linux amd64 or arm64 machine (it asks the pinned kubeadm), or add the row',
    )
  })
})

describe("reset in the field notes' stuck-pod case", () => {
  it('runs every step when crictl stopp fails, unmounts a sandbox shm before removing it, reports the failure; a second reset finishes', async () => {
    const root = await mkdtemp(join(dir, 'stuck-'))
    await freshNodeRoot(root)
    const bin = join(root, 'usr/local/bin')
    await mkdir(bin, { recursive: true })
    // crictl as a node where Calico's teardown fails: stopp fails, rmp -f removes the pod.
    const pods = join(root, 'pods-left')
    await writeFile(pods, 'pod-0123\n')
    await writeFile(
      join(bin, 'crictl'),
      `#!/bin/sh\necho "crictl $*" >> "$KA_RECORD"\ncase "$3" in\n  pods) cat "${pods}" 2>/dev/null ;;\n  stopp) echo 'plugin type="calico" failed (delete): error getting ClusterInformation: connection is unauthorized: Unauthorized' >&2; exit 1 ;;\n  rmp) rm -f "${pods}" ;;\nesac\nexit 0\n`,
    )
    await writeFile(join(bin, 'kubeadm'), '#!/bin/sh\necho "kubeadm $*" >> "$KA_RECORD"\nexit 0\n')
    await chmod(join(bin, 'crictl'), 0o755)
    await chmod(join(bin, 'kubeadm'), 0o755)
    await mkdir(join(root, 'etc/kubernetes'), { recursive: true })
    await writeFile(join(root, 'etc/kubernetes/admin.conf'), 'x')
    // A sandbox whose shm is still a real tmpfs mount.
    const sandbox = join(root, 'run/containerd/io.containerd.grpc.v1.cri/sandboxes/pod-0123')
    await mkdir(join(sandbox, 'shm'), { recursive: true })
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'shm', join(sandbox, 'shm')])
    try {
      const first = installer(root, ['reset', '--yes'])
      expect(first.code).toBe(1)
      expect(first.stderr.trim().split('\n').pop()).toMatch(
        /^install: ESTEP: reset: every step ran, 1 failed: pods stopped and removed \(1\): .*crictl .*stopp pod-0123.* exited 1: .*calico.*Unauthorized; run it again to finish/,
      )
      expect(first.stdout).toMatch(/\[reset\] done +mounts under the pod and sandbox folders unmounted \(1\)/)
      expect(first.stdout).toMatch(/\[reset\] done +leftover CRI state removed/)
      expect(await readdir(join(root, 'run/containerd/io.containerd.grpc.v1.cri/sandboxes'))).toEqual([])
      expect(execFileSync('cat', ['/proc/self/mountinfo'], { encoding: 'utf8' })).not.toContain(sandbox)
      const again = installer(root, ['reset', '--yes'])
      expect(again.code, again.stderr).toBe(0)
    } finally {
      spawnSync('umount', [join(sandbox, 'shm')])
    }
  })
})
