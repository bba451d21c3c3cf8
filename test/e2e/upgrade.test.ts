import { execFileSync } from 'node:child_process'
import { appendFile, chmod, cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bundleCli, dryRunClaims } from '../support/cli.js'
import { startContainerd, type TestContainerd } from '../support/containerd.js'
import { changing, freshNodeRoot, type RecordedRun, recordedRun, treeHashes, writeStandins } from '../support/standins.js'
import { lockWorld, nextMinor, startWorld, type World } from '../support/world.js'

/**
 * Upgrades end to end: a three-node cluster (two masters, a worker; a second worker for the
 * failure cases) installed by the real ./install from a 1.29.3 bundle, then upgraded by the
 * real ./install upgrade from a 1.30.11 bundle, both built by the real builder from the test
 * world. kubeadm, kubelet and kubectl are the recording stand-ins, here sharing one cluster
 * folder ($KA_CLUSTER): kubeadm registers the nodes and keeps the API server's version,
 * kubectl answers `version` and `get nodes` from it (each node with the version its kubelet
 * runs, Ready while active, cordoned while drained). The images go into a real containerd.
 */
let dir: string
const worlds: World[] = []
let standins: string
let ctd: TestContainerd
/** w3 has a containerd of its own: it is upgraded from the delta, and its import must not find the new images there already. */
let ctd3: TestContainerd
let ca: string
let cluster: string
const bundles: Record<string, string> = {}
const byName: Record<string, World> = {}
const roots: Record<string, string> = {}

/** local-path-provisioner at `version` among the manifest's components: the add-on the upgrade carries forward. */
const withLocalPath = (version: string) => (t: string) => t.replace(/^(components:\n)/m, `$1  local-path-provisioner: ${version}\n`)

async function buildBundle(name: string, manifestEdit?: (t: string) => string): Promise<string> {
  const w = await startWorld(join(dir, name), { realistic: true, ...(manifestEdit ? { manifestEdit } : {}) })
  worlds.push(w)
  byName[name] = w
  const lock = join(dir, name, 'bundle.lock.json')
  await lockWorld(w, lock, join(dir, name, 'cache'))
  const r = await bundleCli(['build', '--lock', lock, '--out', join(dir, name, 'out'), '--cache', join(dir, name, 'cache'), ...w.args])
  expect(r.code, r.stderr).toBe(0)
  const version = name === 'w130' ? '1.30.11' : '1.29.3'
  execFileSync('tar', ['xf', `kube-airgap-v${version}-linux-amd64.tar`], { cwd: join(dir, name, 'out') })
  return join(dir, name, 'out', `kube-airgap-v${version}-linux-amd64`)
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-upgrade-'))
  ;[bundles.old, bundles.new] = await Promise.all([
    buildBundle('w129', withLocalPath('0.0.37')),
    buildBundle('w130', (t) => withLocalPath('0.0.38')(nextMinor(t))),
  ])
  standins = await writeStandins(join(dir, 'standins'))
  ca = join(dir, 'ca.crt')
  execFileSync('sh', ['-c', `openssl req -x509 -newkey rsa:2048 -nodes -keyout ${ca}.key -out ${ca} -days 1 -subj /CN=kubernetes 2>/dev/null`])
  cluster = join(dir, 'cluster')
  await mkdir(cluster)
  for (const n of ['m1', 'm2', 'w1', 'w2', 'w3']) {
    roots[n] = join(dir, 'roots', n)
    await mkdir(roots[n]!, { recursive: true })
    await freshNodeRoot(roots[n]!)
  }
  ;[ctd, ctd3] = await Promise.all([startContainerd(join(dir, 'ctd')), startContainerd(join(dir, 'ctd3'))])
}, 240_000)
afterAll(async () => {
  await ctd?.stop()
  await ctd3?.stop()
  for (const w of worlds) await w.close()
  await rm(dir, { recursive: true, force: true })
})

/** `./install ARGS --root <node>` from a bundle, with the stand-ins; what the stand-ins recorded during it. */
const run = (node: string, bundle: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<RecordedRun> =>
  recordedRun(
    join(bundle, 'install'),
    [...args, '--root', roots[node]!, '--host-commands', standins, '--containerd-address', (node === 'w3' ? ctd3 : ctd).socket],
    { PATH: `${standins}:${process.env.PATH}`, KA_ROOT: roots[node], KA_CA_CRT: ca, KA_CLUSTER: cluster, ...env },
    `${roots[node]}.record`,
  )

/** The node's files (the stand-ins' own state and the installer's logs aside). */
const files = async (node: string) =>
  Object.fromEntries(
    Object.entries(await treeHashes(roots[node]!)).filter(
      ([p]) => !p.startsWith('.') && !p.startsWith('var/lib/kube-airgap/') && !p.startsWith('etc/kubernetes/tmp/'),
    ),
  )

/** A refusal of `./install upgrade ARGS` (or of `command`): exit 2, one line, nothing on the node changed, nothing run that changes anything. */
async function refused(node: string, bundle: string, args: string[], why: RegExp, command = ['upgrade']): Promise<void> {
  const before = await treeHashes(roots[node]!)
  const r = await run(node, bundle, [...command, ...args])
  expect(r.code, r.stdout + r.stderr).toBe(2)
  expect(r.stderr.trim().split('\n').pop()).toMatch(why)
  expect(r.stderr).not.toMatch(/\n\s+at /)
  expect(changing(r.record)).toEqual([])
  expect(await treeHashes(roots[node]!)).toEqual(before)
}

const apiServer = async () => (await readFile(join(roots.m1!, 'etc/kubernetes/manifests/kube-apiserver.yaml'), 'utf8')).split(':').pop()!.trim()
const admin = (node: string) => join(roots[node]!, 'etc/kubernetes/admin.conf')
/** kubectl on the first master, as an operator runs it there (cordon, uncordon). */
const kubectl = (...args: string[]) =>
  execFileSync(join(roots.m1!, 'usr/local/bin/kubectl'), ['--kubeconfig', admin('m1'), ...args], {
    env: { ...process.env, KA_ROOT: roots.m1, KA_CLUSTER: cluster, KA_RECORD: '/dev/null' },
  })
const version = async (node: string, bin: string) => (await readFile(join(roots[node]!, 'usr/local/bin', bin), 'utf8')).match(/^VERSION=(.*)$/m)?.[1]

/**
 * `./install upgrade ARGS` from the 1.30.11 bundle on a node other than the first master: what
 * it ran is kubeadm upgrade node, the drain and uncordon with `kubeconfig`, and the kubelet
 * restarted on the new version.
 */
async function upgradedNode(node: string, kubeconfig: string, args: string[] = []): Promise<void> {
  const r = await run(node, bundles.new!, ['upgrade', ...args])
  expect(r.code, r.stdout + r.stderr).toBe(0)
  expect(changing(r.record)).toEqual([
    'kubeadm upgrade node',
    `kubectl --kubeconfig ${kubeconfig} drain ${node} --ignore-daemonsets --delete-emptydir-data --timeout=600s`,
    'systemctl daemon-reload',
    'systemctl restart kubelet',
    `kubectl --kubeconfig ${kubeconfig} uncordon ${node}`,
  ])
  expect(await version(node, 'kubelet')).toBe('1.30.11')
}

describe('a cluster installed from the 1.29.3 bundle', () => {
  it('comes up with two masters and two workers', async () => {
    const skip = ['--skip-phases', 'preflight']
    // Calico told to pick interfaces by name: the upgrade must keep it without being told again.
    const config = join(dir, 'cluster.yaml')
    // The add-on's folder too: the upgrade applies the newer local-path-provisioner with it, without being told again.
    await writeFile(config, 'podSubnet: 10.245.0.0/16\ncalicoAutodetection: interface=eth.*,ens.*\naddons:\n  localPathProvisioner: { path: /data/volumes }\n')
    const m1 = await run('m1', bundles.old!, ['--role', 'master', '--config', config, '--node-name', 'm1', '--advertise-address', '192.0.2.10', ...skip])
    expect(m1.code, m1.stdout + m1.stderr).toBe(0)
    const joins: [string, string[]][] = [
      ['m2', ['--role', 'master', '--join-file', join(bundles.old!, 'join/control-plane.yaml'), '--advertise-address', '192.0.2.11']],
      ['w1', ['--role', 'worker', '--join-file', join(bundles.old!, 'join/worker.yaml')]],
      ['w2', ['--role', 'worker', '--join-file', join(bundles.old!, 'join/worker.yaml')]],
      ['w3', ['--role', 'worker', '--join-file', join(bundles.old!, 'join/worker.yaml')]],
    ]
    for (const [node, args] of joins) {
      const r = await run(node, bundles.old!, [...args, '--node-name', node, ...skip])
      expect(r.code, r.stdout + r.stderr).toBe(0)
    }
    expect(await apiServer()).toBe('v1.29.3')
    for (const n of ['m1', 'm2', 'w1', 'w2', 'w3']) expect(await version(n, 'kubelet')).toBe('1.29.3')
  }, 180_000)
})

const DELTA = 'kube-airgap-v1.30.11-linux-amd64-from-v1.29.3'
let delta: string
let keys: string
const imagesOf = async (c: TestContainerd) => (await c.ctr(['-n', 'k8s.io', 'images', 'ls', '-q'])).stdout.split('\n').filter(Boolean).sort()

describe('a delta bundle from 1.29.3 to 1.30.11 (bundle build --upgrade-from)', () => {
  const name = DELTA
  it('holds only what the old bundle lacks, and verifies on its own: with bundle verify and with kube-airgap-verify', async () => {
    keys = join(dir, 'keys')
    expect((await bundleCli(['keygen', '--out', keys])).code).toBe(0)
    // Built where the old bundle was built: its image manifests are in that cache.
    const r = await bundleCli([
      'build',
      '--lock',
      join(dir, 'w130', 'bundle.lock.json'),
      '--upgrade-from',
      join(bundles.old!, 'bundle.lock.json'),
      '--out',
      join(dir, 'delta'),
      '--cache',
      join(dir, 'w129', 'cache'),
      '--sign',
      join(keys, 'kube-airgap.key'),
      '--json',
      ...byName.w130!.args,
    ])
    expect(r.code, r.stderr).toBe(0)
    const built = JSON.parse(r.stdout)
    delta = built.bundle
    expect(built.name).toBe(name)
    const full = (await stat(join(dir, 'w130', 'out', 'kube-airgap-v1.30.11-linux-amd64.tar'))).size
    const size = (await stat(delta)).size
    expect(size).toBeLessThan(full)
    expect(built.delta).toMatchObject({ base: 'kube-airgap-v1.29.3-linux-amd64' })
    console.log(
      `delta ${size} bytes, full bundle ${full} bytes: ${(100 * (1 - size / full)).toFixed(1)}% smaller (${built.delta.files} files left to the old bundle)`,
    )

    // Left out: what did not change (containerd, Calico, the shared base layer); carried: Kubernetes, the runtime, DELTA.json.
    const listed = execFileSync('tar', ['tf', delta], { encoding: 'utf8' })
    const left = JSON.parse(execFileSync('tar', ['xOf', delta, `${name}/DELTA.json`], { encoding: 'utf8' })) as { base: string; files: { path: string }[] }
    expect(left.base).toBe('kube-airgap-v1.29.3-linux-amd64')
    const paths = left.files.map((f) => f.path)
    expect(paths.some((p) => /^files\/containerd-.*\.tar\.gz$/.test(p))).toBe(true)
    expect(paths.some((p) => p.startsWith('images/blobs/sha256/'))).toBe(true)
    expect(paths.some((p) => /kubelet|kubeadm/.test(p))).toBe(false)
    for (const p of paths) expect(listed).not.toContain(`${name}/${p}\n`)
    expect(listed).toContain(`${name}/files/kubelet\n`)
    expect(listed).toContain(`${name}/runtime/bin/node\n`)

    const v = await bundleCli(['verify', delta, '--public-key', join(keys, 'kube-airgap.pub'), '--json'])
    expect(v.code, v.stderr).toBe(0)
    expect(JSON.parse(v.stdout).delta).toMatchObject({ base: 'kube-airgap-v1.29.3-linux-amd64', files: paths.length, missing: paths })
    // inspect names the old bundle and what is left to it, with the sizes DELTA.json gives.
    const i = await bundleCli(['inspect', delta])
    expect(i.code, i.stderr).toBe(0)
    expect(i.stdout).toMatch(new RegExp(`^a delta from kube-airgap-v1\\.29\\.3-linux-amd64: ${paths.length} files \\(\\d`, 'm'))
    expect(i.stdout).toMatch(/ \d[\d.]* (B|[KMG]iB) +files\/containerd-\S+\.tar\.gz \(in kube-airgap-v1\.29\.3-linux-amd64\)$/m)
    expect(v.stderr).toMatch(
      /^note {2}a delta from kube-airgap-v1\.29\.3-linux-amd64: \d+ files \(.*\) come from it; \d+ not found: to install, put the unpacked/m,
    )
    expect(execFileSync(join(keys, 'kube-airgap-verify'), [delta], { encoding: 'utf8' })).toMatch(
      /^ok: kube-airgap-v1\.30\.11-linux-amd64-from-v1\.29\.3: signed by/,
    )

    // A delta goes from older to newer only: one line, exit 2, nothing written.
    const back = await bundleCli([
      'build',
      '--lock',
      join(bundles.old!, 'bundle.lock.json'),
      '--upgrade-from',
      join(dir, 'w130', 'bundle.lock.json'),
      '--out',
      join(dir, 'back'),
    ])
    expect(back.code).toBe(2)
    expect(back.stderr.trim()).toMatch(
      /^bundle: EUSAGE: --upgrade-from .*w130\/bundle\.lock\.json locks Kubernetes v1\.30\.11, not older than this lock's v1\.29\.3: a delta bundle goes from an older bundle to a newer one$/,
    )
    await expect(stat(join(dir, 'back'))).rejects.toThrow()
  }, 120_000)
})

describe('./install upgrade from the 1.30.11 bundle', () => {
  it('doctor shows the versions, that this bundle would upgrade the node, and flags a kubelet newer than the API server', async () => {
    const r = await run('m2', bundles.new!, ['doctor'])
    expect(r.stdout).toMatch(/^OK +version skew +API server v1\.29\.3; kubelets: m1 v1\.29\.3, m2 v1\.29\.3, w1 v1\.29\.3, w2 v1\.29\.3, w3 v1\.29\.3$/m)
    expect(r.stdout).toMatch(
      /^WARN +upgrade +this node runs v1\.29\.3, this bundle is v1\.30\.11\n +fix: sudo \.\/install upgrade from this bundle: the first master, then/m,
    )
    // w2's kubelet reporting 1.30.11 while the API server is 1.29.3.
    const running = join(roots.w2!, '.systemctl/running.kubelet')
    const was = await readFile(running)
    await writeFile(running, 'Kubernetes v1.30.11\n')
    try {
      const bad = await run('m2', bundles.old!, ['doctor'])
      expect(bad.code).toBe(1)
      expect(bad.stdout).toMatch(/^FAIL +version skew +kubelet newer than the API server \(v1\.29\.3\) on w2 \(v1\.30\.11\)$/m)
      expect(bad.stdout).not.toMatch(/^WARN +upgrade/m)
    } finally {
      await writeFile(running, was)
    }
  })

  it('refuses, changing nothing, a worker or a second master while the control plane is older', async () => {
    await refused(
      'w1',
      bundles.new!,
      [],
      /^install: EUSAGE: the control plane is at v1\.29\.3, older than this bundle's v1\.30\.11: masters go first; run sudo \.\/install upgrade on the first master/,
    )
    await refused('m2', bundles.new!, [], /^install: EUSAGE: the control plane is at v1\.29\.3, older than this bundle's v1\.30\.11: masters go first/)
    await refused(
      'm1',
      bundles.new!,
      ['--skip-phases', 'backup'],
      /^install: EUSAGE: --skip-phases backup: upgrade runs its phases in order; of them only packages, kernel, containerd, cni, images, network, addons may be skipped/,
    )
  })

  it('refuses to skip a minor version, naming the bundles needed between', async () => {
    // w2's kubelet swapped for one that says 1.28.9, as on a node installed from a 1.28 bundle.
    const kubelet = join(roots.w2!, 'usr/local/bin/kubelet')
    const real = await readFile(kubelet)
    await writeFile(kubelet, '#!/bin/sh\necho "Kubernetes v1.28.9"\n')
    try {
      await refused(
        'w2',
        bundles.new!,
        [],
        /^install: EUSAGE: v1\.28\.9 to v1\.30\.11 skips a minor version: kubeadm upgrades one minor at a time; upgrade the whole cluster with a 1\.29\.x bundle first, then with this one$/,
      )
    } finally {
      await writeFile(kubelet, real)
      await chmod(kubelet, 0o755)
    }
  })

  it('shows the whole plan in a dry run and changes nothing', async () => {
    const before = await treeHashes(roots.m1!)
    const r = await run('m1', bundles.new!, ['upgrade', '--dry-run'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stdout).toMatch(
      /^\[skew\] checked +v1\.29\.3 to v1\.30\.11 on the first master m1: the skew rules hold \(API server v1\.29\.3, 5 nodes, all Ready\)$/m,
    )
    expect(r.stdout).toMatch(/^\[upgrade\] would do +control plane upgraded to v1\.30\.11 \(kubeadm upgrade apply/m)
    expect(r.stdout).toMatch(/run +\S+\/kubeadm upgrade apply v1\.30\.11 --yes$/m)
    // A dry run names the nodes that must stage the images first, and goes on.
    expect(r.stdout + r.stderr).toMatch(/WARN +node m2, w1, w2, w3 have not staged this bundle's images/)
    expect(changing(r.record)).toEqual([])
    expect(await treeHashes(roots.m1!)).toEqual(before)
  })

  it('refuses to upgrade the first master while a node lacks the new images, naming each; --stage imports and pins them on any node and marks it, changing nothing else', async () => {
    const unstaged = (nodes: string) =>
      new RegExp(
        `^install: EUSAGE: node ${nodes} have not staged this bundle's images: kubeadm upgrade apply rolls kube-proxy and CoreDNS \\(and a new Calico\\) onto every node, which cannot pull them; run sudo \\./install upgrade --stage from this bundle on each \\(ansible/upgrade\\.yml does it on every node first\\), then this again$`,
      )
    await refused('m1', bundles.new!, [], unstaged('m2, w1, w2, w3'))
    await refused(
      'w1',
      bundles.new!,
      ['--stage', '--rollback'],
      /^install: EUSAGE: --stage with --rollback: --stage only imports the images and marks the node; run it alone$/,
    )

    // A worker marks itself with its own kubelet.conf (a kubelet may annotate its own Node).
    const before = await files('w1')
    const r = await run('w1', bundles.new!, ['upgrade', '--stage'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    const conf = join(roots.w1!, 'etc/kubernetes/kubelet.conf')
    expect(changing(r.record)).toEqual([
      expect.stringMatching(
        new RegExp(`^kubectl --kubeconfig ${conf} annotate --overwrite node -- w1 kube-airgap\\.io/staged-images=v1\\.30\\.11-[0-9a-f]{16}$`),
      ),
    ])
    expect(await files('w1')).toEqual(before)
    expect(await version('w1', 'kubelet')).toBe('1.29.3')
    const ls = (await ctd.ctr(['-n', 'k8s.io', 'images', 'ls'])).stdout
    for (const image of ['kube-proxy:v1.30.11', 'etcd:3.5.15-0'])
      expect(ls).toMatch(new RegExp(`^registry\\.k8s\\.io/${image.replaceAll('.', '\\.')} .*io\\.cri-containerd\\.pinned=pinned`, 'm'))
    expect(changing((await run('w1', bundles.new!, ['upgrade', '--stage'])).record)).toEqual([])
    await refused('m1', bundles.new!, [], unstaged('m2, w2, w3'))

    // The others: m2 and w2 from the full bundle, w3 (a containerd of its own) from the delta beside the old bundle.
    for (const node of ['m2', 'w2']) expect((await run(node, bundles.new!, ['upgrade', '--stage'])).code, node).toBe(0)
    execFileSync('tar', ['xf', delta, '-C', dirname(bundles.old!)])
    const w3 = await run('w3', join(dirname(bundles.old!), DELTA), ['upgrade', '--stage'])
    expect(w3.code, w3.stdout + w3.stderr).toBe(0)
    expect(await imagesOf(ctd3)).toContain('registry.k8s.io/kube-proxy:v1.30.11')
    const events = (await readFile(join(cluster, 'events'), 'utf8')).trim().split('\n')
    expect(events.map((e) => e.split(' ').slice(0, 2).join(' ')).sort()).toEqual(['annotate m2', 'annotate w1', 'annotate w2', 'annotate w3'])
  })

  it("on the first master, a kubelet that fails to start after kubeadm upgrade apply: --rollback is refused, since the cluster's own objects moved on; a rerun finishes without applying again", async () => {
    const failed = await run('m1', bundles.new!, ['upgrade', '--wait-timeout', '2'], { KA_BROKEN_KUBELET: 'v1.30.11' })
    expect(failed.code, failed.stdout + failed.stderr).toBe(1)
    expect(changing(failed.record)).toContain('kubeadm upgrade apply v1.30.11 --yes')
    expect(await apiServer()).toBe('v1.30.11')
    // kubeadm moved kube-proxy, CoreDNS and kubeadm-config on (cmd/kubeadm/app/phases/upgrade/postupgrade.go): the node's files alone cannot go back.
    await refused(
      'm1',
      bundles.new!,
      ['--rollback'],
      /^install: EUSAGE: kubeadm upgrade apply v1\.30\.11 finished on this cluster: kube-proxy, CoreDNS and the kubeadm-config ConfigMap are at v1\.30\.11, and kubeadm cannot take them back; fix what failed \(journalctl -u kubelet\) and finish with sudo \.\/install upgrade; the files it replaced stay in \/var\/lib\/kube-airgap\/backup\/v1\.29\.3$/,
    )
  })

  it('finishes the first master: what the failed run did (apply, drain) stays done; the new kubelet and kubectl, restart, uncordon; the new images beside the old, the old ones unpinned', async () => {
    // An image of the site's own, pinned: its pin stays.
    await ctd.ctr(['-n', 'k8s.io', 'images', 'tag', 'registry.k8s.io/etcd:3.5.12-0', 'example.org/site/tool:1'])
    await ctd.ctr(['-n', 'k8s.io', 'images', 'label', 'example.org/site/tool:1', 'io.cri-containerd.pinned=pinned'])
    const r = await run('m1', bundles.new!, ['upgrade'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    const m1 = roots.m1!
    // After the control plane, the newer bundle's add-on: local-path-provisioner 0.0.38, with the folder the install chose.
    const addon = join(m1, 'etc/kube-airgap/addons/local-path-provisioner.yaml')
    expect(changing(r.record)).toEqual([
      'systemctl daemon-reload',
      'systemctl restart kubelet',
      `kubectl --kubeconfig ${admin('m1')} uncordon m1`,
      `kubectl --kubeconfig ${admin('m1')} apply --server-side --force-conflicts -f ${addon}`,
    ])
    const applied = await readFile(addon, 'utf8')
    expect(applied).toMatch(/image: docker\.io\/rancher\/local-path-provisioner:v0\.0\.38@sha256:[0-9a-f]{64}/)
    expect(applied).toMatch(/"paths": \[\s+"\/data\/volumes"/)
    for (const bin of ['kubeadm', 'kubelet', 'kubectl', 'crictl']) expect(await version('m1', bin), bin).toBe(bin === 'crictl' ? '1.30.0' : '1.30.11')
    expect(await apiServer()).toBe('v1.30.11')
    // What it replaced is kept, byte for byte, with its list.
    const backup = JSON.parse(await readFile(join(m1, 'var/lib/kube-airgap/backup/v1.29.3/backup.json'), 'utf8'))
    expect(backup.files.map((f: { path: string }) => f.path)).toEqual(
      expect.arrayContaining(['/usr/local/bin/kubeadm', '/usr/local/bin/kubelet', '/usr/local/bin/kubectl', '/usr/local/bin/crictl']),
    )
    expect(await readFile(join(m1, 'var/lib/kube-airgap/backup/v1.29.3/files/usr/local/bin/kubelet'), 'utf8')).toMatch(/^VERSION=1\.29\.3$/m)
    expect(JSON.parse(await readFile(join(m1, 'var/lib/kube-airgap/upgrade.json'), 'utf8'))).toMatchObject({
      from: 'v1.29.3',
      to: 'v1.30.11',
      finished: expect.any(String),
    })
    // Calico did not change between the bundles: applied once, at install, with the pool and
    // autodetection given then (read back from the manifest as applied).
    expect(r.stdout).toMatch(/^\[network\] already done +Calico manifest \(\/etc\/kube-airgap\/calico\.yaml: \d+ documents, pool 10\.245\.0\.0\/16\)$/m)
    expect(r.stdout).toMatch(/^\[network\] already done +Calico applied/m)
    const ls = (await ctd.ctr(['-n', 'k8s.io', 'images', 'ls', '-q'])).stdout
    for (const ref of [
      'registry.k8s.io/kube-apiserver:v1.30.11',
      'registry.k8s.io/etcd:3.5.15-0',
      'registry.k8s.io/kube-apiserver:v1.29.3',
      'registry.k8s.io/etcd:3.5.12-0',
    ])
      expect(ls, ref).toContain(ref)
    // The old version's images stay, unpinned for the kubelet's image GC; the new ones and the site's own stay pinned.
    expect(r.stdout).toMatch(/^\[finish\] done +the images of earlier versions unpinned, .*\(.*registry\.k8s\.io\/kube-apiserver:v1\.29\.3/m)
    const pinned = (await ctd.ctr(['-n', 'k8s.io', 'images', 'ls'])).stdout
      .split('\n')
      .filter((l) => l.includes('io.cri-containerd.pinned=pinned'))
      .map((l) => l.split(/\s+/)[0])
    expect(pinned).toContain('registry.k8s.io/kube-apiserver:v1.30.11')
    expect(pinned).toContain('example.org/site/tool:1')
    expect(pinned).not.toContain('registry.k8s.io/kube-apiserver:v1.29.3')
    expect(pinned).not.toContain('registry.k8s.io/etcd:3.5.12-0')
    await ctd.ctr(['-n', 'k8s.io', 'images', 'rm', 'example.org/site/tool:1'])
    expect(r.stdout).toMatch(/^next: upgrade the other masters one at a time/m)
  })

  it('refuses a downgrade with the old bundle (by upgrade or by --role), a rollback of a finished upgrade, and --role over an older node, changing nothing', async () => {
    await refused(
      'm1',
      bundles.new!,
      ['--rollback'],
      /^install: EUSAGE: the upgrade to v1\.30\.11 finished on this node .*: a finished upgrade is not rolled back/,
    )
    await refused(
      'm1',
      bundles.old!,
      [],
      /^install: EUSAGE: this node runs v1\.30\.11 and the bundle is v1\.29\.3: a downgrade is refused .*sudo \.\/install upgrade --rollback$/,
    )
    // Nor does ./install --role swap the binaries of a cluster's node around kubeadm: not older ones on m1, not newer ones on w2.
    await refused(
      'm1',
      bundles.old!,
      ['--role', 'master', '--advertise-address', '192.0.2.10', '--skip-phases', 'preflight'],
      /^install: EUSAGE: this node runs Kubernetes v1\.30\.11, newer than this bundle's v1\.29\.3: installing would put older binaries under its cluster; run \.\/install from the v1\.30\.11 bundle \(or a newer one\)$/,
      [],
    )
    await refused(
      'w2',
      bundles.new!,
      ['--role', 'worker', '--join-file', join(bundles.old!, 'join/worker.yaml'), '--skip-phases', 'preflight'],
      /^install: EUSAGE: this node runs Kubernetes v1\.29\.3 in a cluster, older than this bundle's v1\.30\.11: upgrade it with sudo \.\/install upgrade from this bundle/,
      [],
    )
  })

  it('upgrades the second master with kubeadm upgrade node, drained (though cordoned already) and left cordoned as it was, with its own admin.conf', async () => {
    // Cordoned by the operator before the upgrade, not drained: drained all the same, and kept cordoned.
    kubectl('cordon', 'm2')
    const dry = await run('m2', bundles.new!, ['upgrade', '--dry-run'])
    expect(dry.code, dry.stdout + dry.stderr).toBe(0)
    const r = await run('m2', bundles.new!, ['upgrade'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    // The dry run claimed no result the real run had not reached (it said "Ready on kubelet
    // v1.30.11" was checked and "upgraded to v1.30.11" already done, for a node on v1.29.3).
    expect(dryRunClaims(dry.stdout, r.stdout)).toEqual([])
    expect(dry.stdout).toMatch(/^\[upgrade\] would check +node m2 Ready on kubelet v1\.30\.11$/m)
    expect(dry.stdout).toMatch(/^\[finish\] would do +node m2 upgraded to v1\.30\.11$/m)
    expect(changing(r.record)).toEqual([
      'kubeadm upgrade node',
      `kubectl --kubeconfig ${admin('m2')} drain m2 --ignore-daemonsets --delete-emptydir-data --timeout=600s`,
      'systemctl daemon-reload',
      'systemctl restart kubelet',
    ])
    expect(r.stdout).toMatch(/^\[upgrade\] already done +node m2 left cordoned, as it was before the upgrade$/m)
    expect(await version('m2', 'kubelet')).toBe('1.30.11')
    kubectl('uncordon', 'm2')
  })

  it("refuses to replace an undrained worker's kubelet without credentials, or a cordoned one that still runs pods; with --drain-from it drains and uncordons itself", async () => {
    await refused(
      'w1',
      bundles.new!,
      [],
      /^install: EUSAGE: a worker is drained before its kubelet is replaced, and this one holds no credentials to drain itself.*`kubectl drain w1 --ignore-daemonsets --delete-emptydir-data --timeout=600s`.*--drain-from/,
    )
    // Cordoned is not drained: the pods the worker's own kubelet.conf lists on it (DaemonSet pods aside) must go first.
    kubectl('cordon', 'w1')
    await refused(
      'w1',
      bundles.new!,
      [],
      /^install: EUSAGE: a worker is drained before its kubelet is replaced, and this one is cordoned but still runs default\/web-w1: /,
    )
    kubectl('uncordon', 'w1')
    await upgradedNode('w1', admin('m1'), ['--drain-from', admin('m1')])
  })

  it('changes nothing when run again', async () => {
    const before = await treeHashes(roots.w1!)
    const r = await run('w1', bundles.new!, ['upgrade', '--drain-from', admin('m1')])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(changing(r.record)).toEqual([])
    expect(await treeHashes(roots.w1!)).toEqual(before)
    expect(r.stdout.trim().split('\n').pop()).toMatch(/^ok: 0 steps changed the node/)
  })

  it('a kubelet that fails to start: the run fails saying how back; --rollback puts back every file byte for byte; a rerun resumes', async () => {
    const before = await files('w2')
    // Drained from a master by hand, as the worker's own run asks.
    execFileSync(join(roots.m1!, 'usr/local/bin/kubectl'), ['--kubeconfig', admin('m1'), 'drain', 'w2', '--ignore-daemonsets'], {
      env: { ...process.env, KA_RECORD: `${roots.m1}.record`, KA_ROOT: roots.m1, KA_CLUSTER: cluster },
    })
    const broken = { KA_BROKEN_KUBELET: 'v1.30.11' }
    const failed = await run('w2', bundles.new!, ['upgrade', '--wait-timeout', '2'], { ...broken, KUBE_AIRGAP_HEARTBEAT_SECONDS: '1' })
    expect(failed.code, failed.stdout + failed.stderr).toBe(1)
    // In a pipe, the wait says where it is now and then, each time on a line of its own.
    expect(failed.stdout).toMatch(/^waiting \d+\/2 s: node w2 reports NotReady on kubelet \(none\)$/m)
    expect(failed.stderr).toMatch(
      /node w2 reports NotReady on kubelet \(none\) after 2 s: the new kubelet does not come up; .* sudo \.\/install upgrade --rollback/,
    )
    expect(await version('w2', 'kubelet')).toBe('1.30.11')

    const back = await run('w2', bundles.new!, ['upgrade', '--rollback'])
    expect(back.code, back.stdout + back.stderr).toBe(0)
    expect(await files('w2')).toEqual(before)
    expect(changing(back.record)).toEqual(['systemctl daemon-reload', 'systemctl restart kubelet'])
    expect(back.stdout).toMatch(/^next: the node runs v1\.29\.3 again; .*kubectl uncordon w2$/m)
    // Only the kubelet was restarted, and the step says so (it said "containerd and the kubelet").
    expect(back.stdout).toMatch(/^\[rollback\] done +the kubelet restarted on v1\.29\.3$/m)

    // Failed again, then run again with a kubelet that starts: what was done stays done.
    expect((await run('w2', bundles.new!, ['upgrade', '--wait-timeout', '2'], broken)).code).toBe(1)
    const resumed = await run('w2', bundles.new!, ['upgrade'])
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0)
    expect(resumed.stdout).toMatch(/^\[backup\] already done +backup of v1\.29\.3 in \/var\/lib\/kube-airgap\/backup\/v1\.29\.3/m)
    expect(changing(resumed.record)).toEqual(['systemctl daemon-reload', 'systemctl restart kubelet'])
    expect(await version('w2', 'kubelet')).toBe('1.30.11')
    expect(resumed.stdout).toMatch(/^next: on a master, let pods back on this node: kubectl uncordon w2$/m)
  })
})

describe('the delta bundle, for a worker', () => {
  const name = DELTA
  it('refuses, changing nothing, to install without its old bundle or from an old bundle whose files changed', async () => {
    const alone = join(dir, 'alone')
    await mkdir(alone)
    execFileSync('tar', ['xf', delta, '-C', alone])
    await refused(
      'w3',
      join(alone, name),
      ['--drain-from', admin('m1')],
      /^install: EUSAGE: kube-airgap-v1\.30\.11-linux-amd64-from-v1\.29\.3 is a delta from kube-airgap-v1\.29\.3-linux-amd64 and \d+ of the files it takes from it .* put the unpacked kube-airgap-v1\.29\.3-linux-amd64 folder beside this one, or give it with --base DIR$/,
    )

    const copy = join(dir, 'old-copy')
    await cp(bundles.old!, copy, { recursive: true })
    const left = JSON.parse(await readFile(join(alone, name, 'DELTA.json'), 'utf8')) as { files: { path: string }[] }
    const victim = left.files.find((f) => f.path.startsWith('files/'))!.path
    await appendFile(join(copy, victim), 'x')
    const before = await treeHashes(roots.w3!)
    const r = await run('w3', join(alone, name), ['upgrade', '--base', copy, '--drain-from', admin('m1')])
    expect(r.code, r.stdout + r.stderr).toBe(1)
    expect(r.stderr.trim().split('\n').pop()).toMatch(
      new RegExp(`^install: EVERIFY: .*${copy}/${victim}: changed in the old bundle: DELTA\\.json pins sha256 [0-9a-f]{64}, found`),
    )
    expect(changing(r.record)).toEqual([])
    expect(await treeHashes(roots.w3!)).toEqual(before)
  })

  it('upgrades a worker from the old bundle and the delta beside it to the same node the full bundle made', async () => {
    execFileSync('tar', ['xf', delta, '-C', dirname(bundles.old!)])
    const r = await run('w3', join(dirname(bundles.old!), name), ['upgrade', '--drain-from', admin('m1')])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stdout + r.stderr).toMatch(
      /note {2}a delta from kube-airgap-v1\.29\.3-linux-amd64: \d+ files \(.*\) come from it, found in .*\/w129\/out\/kube-airgap-v1\.29\.3-linux-amd64 as DELTA\.json pins them/,
    )
    expect(await version('w3', 'kubelet')).toBe('1.30.11')
    // w1 was upgraded from the full bundle: the same files, but for those that name the node.
    const [full, fromDelta] = [await files('w1'), await files('w3')]
    const differ = Object.keys({ ...full, ...fromDelta }).filter((p) => full[p] !== fromDelta[p])
    expect(differ).toEqual(['etc/kube-airgap/kubeadm-join.yaml'])
    // Only the node's name differs (a random token may contain "w3" too: not replaced there).
    const joinConfig = async (node: string) =>
      (await readFile(join(roots[node]!, differ[0]!), 'utf8')).replace(new RegExp(`^(\\s*name: )${node}$`, 'm'), '$1NODE')
    expect(await joinConfig('w3')).toBe(await joinConfig('w1'))
    // w3's own containerd holds what the shared one does: the old images and the new, the blobs from the old bundle among them.
    expect(await imagesOf(ctd3)).toEqual(await imagesOf(ctd))
  })
})

describe('./install remove-node, on the first master', () => {
  const admin = () => join(roots.m1!, 'etc/kubernetes/admin.conf')
  const kubectl = () => `kubectl --kubeconfig ${admin()}`
  const events = async () => (await readFile(join(cluster, 'events'), 'utf8')).trim().split('\n')

  it('stops in one line naming the pod a drain cannot evict, changing nothing more; then drains, removes the etcd member and deletes the Node, in that order; a worker has no etcd member', async () => {
    const before = await events()
    const blocked = await run('m1', bundles.new!, ['remove-node', 'm2', '--wait-timeout', '20'], { KA_DRAIN_BLOCKED: 'm2' })
    expect(blocked.code, blocked.stdout + blocked.stderr).toBe(1)
    expect(blocked.stderr.trim().split('\n').pop()).toMatch(
      /^install: ESTEP: remove-node: node m2 drained .*: node m2 was not drained within 20s: default\/web-m2 would not leave .*; nothing more was changed \(it stays cordoned: kubectl uncordon m2 to undo\)/,
    )
    expect(changing(blocked.record).filter((l) => !l.includes(' cordon '))).toEqual([
      `${kubectl()} drain m2 --ignore-daemonsets --delete-emptydir-data --timeout=20s`,
    ])
    expect(await events()).toEqual(before)

    const dry = await run('m1', bundles.new!, ['remove-node', 'm2', '--dry-run'])
    expect(dry.code, dry.stdout + dry.stderr).toBe(0)
    expect(changing(dry.record)).toEqual([])
    const r = await run('m1', bundles.new!, ['remove-node', 'm2'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(dryRunClaims(dry.stdout, r.stdout)).toEqual([])
    const ran = changing(r.record)
    expect(ran[0]).toBe(`${kubectl()} drain m2 --ignore-daemonsets --delete-emptydir-data --timeout=600s`)
    expect(ran[1]).toMatch(new RegExp(`^${kubectl()} -n kube-system exec etcd-m1 -- etcdctl .* member remove [0-9a-f]+$`))
    expect(ran.slice(2)).toEqual([`${kubectl()} delete node m2`])
    expect((await events()).slice(before.length)).toEqual(['etcd member remove m2', 'delete node m2'])
    expect(r.stdout).toContain('next: on m2: sudo ./install reset --purge')

    const w = await run('m1', bundles.new!, ['remove-node', 'w2'])
    expect(w.code, w.stdout + w.stderr).toBe(0)
    // w2 is cordoned already (the worker tests above left it so): only drained and deleted.
    expect(w.stdout).toMatch(/^\[remove-node\] already done +node w2 cordoned$/m)
    expect(changing(w.record)).toEqual([`${kubectl()} drain w2 --ignore-daemonsets --delete-emptydir-data --timeout=600s`, `${kubectl()} delete node w2`])
    await refused('m1', bundles.new!, ['w2'], /^install: EUSAGE: the cluster has no node "w2"; its nodes: .*m1/, ['remove-node'])
    await refused('m1', bundles.new!, ['m1'], /^install: EUSAGE: m1 is this node: run remove-node on another master/, ['remove-node'])
  })
})
