import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import yaml from 'js-yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { bundleCli } from '../support/cli.js'
import { appendMembers } from '../support/tar-edit.js'
import { changing, freshNodeRoot, treeHashes, writeStandins } from '../support/standins.js'
import { EXTRA_IMAGE, lockWorld, nextMinor, signedBuilds, startWorld, type World } from '../support/world.js'
import { startContainerd } from '../support/containerd.js'
import { runStaticPod } from '../support/static-pods.js'

/**
 * The fleet playbook the bundle carries (ansible/site.yml), run by the real ansible-playbook
 * (Debian's ansible-core) from the bundle unpacked on a controller, against four nodes: each
 * a temporary root driven through ./install --root with the recording stand-ins the other
 * installer tests use. One node (the second master) is reached through a real sshd on
 * loopback, started here with its own host key and an authorized key made here; the others
 * by the local connection. Every run becomes root through the real sudo. This file runs on
 * its own, after the others (package.json's test script): its nodes share this machine's
 * ports, and other tests hold kubelet's port 10250 on purpose, which preflight would see.
 */
const NAME = 'kube-airgap-v1.29.3-linux-amd64'
const NODES = { m1: 'k8s01', m2: 'k8s02', w1: 'k8s03', w2: 'k8s04' } as const
type Node = keyof typeof NODES

let dir: string
let world: World
let tar: string
let rebuild: (out: string, ...args: string[]) => Promise<string>
let playbook: string
let inventory: string
let sshd: ChildProcess | undefined
let sshdLog = ''
let standins: string
const roots = {} as Record<Node, string>

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })

async function startSshd(): Promise<{ port: number; key: string; knownHosts: string }> {
  const d = join(dir, 'ssh')
  await mkdir(d, { recursive: true, mode: 0o700 })
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(d, 'host_key')])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(d, 'client_key')])
  await cp(join(d, 'client_key.pub'), join(d, 'authorized_keys'))
  const port = await freePort()
  await writeFile(
    join(d, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(d, 'host_key')}`,
      `AuthorizedKeysFile ${join(d, 'authorized_keys')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      // The test folder sits under /tmp (world-writable): sshd's ownership checks would refuse it.
      'StrictModes no',
      `PidFile ${join(d, 'sshd.pid')}`,
      'Subsystem sftp /usr/lib/openssh/sftp-server',
    ].join('\n'),
  )
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 })
  sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(d, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] })
  sshd.stderr!.on('data', (b: Buffer) => (sshdLog += b.toString()))
  for (let i = 0; i < 100 && !sshdLog.includes('Server listening'); i++) await new Promise((r) => setTimeout(r, 50))
  expect(sshdLog).toContain(`Server listening on 127.0.0.1 port ${port}`)
  const knownHosts = join(d, 'known_hosts')
  await writeFile(knownHosts, `[127.0.0.1]:${port} ${(await readFile(join(d, 'host_key.pub'), 'utf8')).trim()}\n`)
  return { port, key: join(d, 'client_key'), knownHosts }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-fleet-'))
  // The registry image too, for ansible/registry.yml.
  world = await startWorld(dir, { realistic: true, manifestEdit: (t) => t.replace(/\nimages:\n/, '\nimages:\n  - docker.io/library/registry:2.8.3\n') })
  const lock = join(dir, 'bundle.lock.json')
  await lockWorld(world, lock, join(dir, 'cache'))
  const keys = join(dir, 'keys')
  rebuild = await signedBuilds(world, lock, join(dir, 'cache'), keys)
  const out = join(dir, 'usb')
  await rebuild(out)
  tar = join(out, `${NAME}.tar`)
  // The controller: the verifier carried apart from the stick checks the tar and unpacks it;
  // the playbook runs from what was unpacked.
  const controller = join(dir, 'controller')
  await mkdir(controller)
  execFileSync(join(keys, 'kube-airgap-verify'), ['--extract', controller, tar], { stdio: 'ignore' })
  playbook = join(controller, NAME, 'ansible', 'site.yml')

  standins = await writeStandins(join(dir, 'standins'))
  const ca = join(dir, 'ca.crt')
  execFileSync('sh', ['-c', `openssl req -x509 -newkey rsa:2048 -nodes -keyout ${ca}.key -out ${ca} -days 1 -subj /CN=kubernetes 2>/dev/null`])
  const ssh = await startSshd()
  const host = (node: Node) => {
    const root = join(dir, 'nodes', node)
    roots[node] = root
    return {
      kube_airgap_root: root,
      kube_airgap_dest: join(root, 'opt/kube-airgap'),
      kube_airgap_node_name: NODES[node],
      kube_airgap_advertise_address: `192.0.2.${10 + Object.keys(NODES).indexOf(node)}`,
      // The stand-ins first on PATH, as in the other installer tests (this machine has no modprobe).
      kube_airgap_install_environment: {
        KA_RECORD: `${root}.record`,
        KA_ROOT: root,
        KA_CA_CRT: ca,
        KA_CLUSTER: join(dir, 'cluster'),
        PATH: `${standins}:${process.env.PATH}`,
      },
      ...(node === 'm2'
        ? {
            ansible_host: '127.0.0.1',
            ansible_port: ssh.port,
            ansible_user: 'root',
            ansible_ssh_private_key_file: ssh.key,
            ansible_ssh_common_args: `-o UserKnownHostsFile=${ssh.knownHosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes`,
          }
        : { ansible_connection: 'local' }),
    }
  }
  inventory = join(dir, 'inventory.yml')
  await writeFile(
    inventory,
    yaml.dump({
      all: {
        vars: {
          ansible_python_interpreter: '/usr/bin/python3',
          ansible_pipelining: true,
          kube_airgap_public_key: join(keys, 'kube-airgap.pub'),
          kube_airgap_verifier: join(keys, 'kube-airgap-verify'),
          kube_airgap_fleet_dir: join(dir, 'fleet'),
          kube_airgap_pod_subnet: '10.245.0.0/16',
          kube_airgap_install_args: ['--host-commands', standins, '--skip-phases', 'images'],
        },
        children: {
          masters: { hosts: { m1: host('m1'), m2: host('m2') } },
          // w2 first: the batch test below stops at it before w1.
          workers: { hosts: { w2: host('w2'), w1: host('w1') } },
        },
      },
    }),
  )
  for (const node of Object.keys(NODES) as Node[]) {
    await freshNodeRoot(roots[node])
    // Two masters and no endpoint of the operator's own: the local endpoint, whose HAProxy the
    // bundle's OS packages bring (the test world carries none: it is in place, as after the packages phase).
    await mkdir(join(roots[node], 'usr/sbin'), { recursive: true })
    await writeFile(join(roots[node], 'usr/sbin/haproxy'), '#!/bin/sh\nexit 0\n', { mode: 0o755 })
  }
}, 240_000)

afterAll(async () => {
  sshd?.kill()
  await world?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

interface Play {
  code: number | null
  out: string
  recap: Record<string, Record<string, number>>
}

function playbookRun(args: string[], bundle = tar, book = playbook, inv = inventory): Promise<Play> {
  return new Promise((resolve) => {
    const env = {
      ...process.env,
      ANSIBLE_NOCOLOR: '1',
      ANSIBLE_LOCAL_TEMP: join(dir, 'ansible-tmp'),
      ANSIBLE_REMOTE_TEMP: join(dir, 'ansible-remote-tmp'),
      ANSIBLE_RETRY_FILES_ENABLED: 'false',
    }
    const child = spawn('ansible-playbook', ['-i', inv, book, '-e', `kube_airgap_bundle=${bundle}`, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    child.on('close', (code) => {
      const recap: Play['recap'] = {}
      for (const m of out.matchAll(/^(\S+)\s+: (ok=.*)$/gm))
        recap[m[1]!] = Object.fromEntries(
          m[2]!
            .trim()
            .split(/\s+/)
            .map((kv) => [kv.split('=')[0]!, Number(kv.split('=')[1])]),
        )
      resolve({ code, out, recap })
    })
  })
}

/** The commands a node's stand-ins received that change something. */
const changedOn = async (node: Node): Promise<string[]> =>
  changing((await readFile(`${roots[node]}.record`, 'utf8').catch(() => '')).split('\n').filter(Boolean))

const fleet = (...p: string[]) => join(dir, 'fleet', ...p)

describe('ansible-playbook ansible/site.yml', () => {
  it('check mode on fresh nodes copies nothing and says each would get the bundle', async () => {
    const before = Object.fromEntries(await Promise.all((Object.keys(NODES) as Node[]).map(async (n) => [n, await treeHashes(roots[n])])))
    const r = await playbookRun(['--check'])
    expect(r.code, r.out).toBe(0)
    for (const n of Object.keys(NODES) as Node[]) {
      expect(await treeHashes(roots[n]), n).toEqual(before[n])
      expect(r.out).toContain(`ok: [${n}] => {\n    "msg": "${NAME} is not on this node yet: it would be copied and unpacked; its plan shows once it is"`)
    }
  }, 300_000)

  it('installs the first master, joins the second over ssh and the workers with the join files it fetched; a tampered worker fails alone, with its error line and output on the controller', async () => {
    // w2 already holds the bundle, unpacked, with a file edited since (someone with the stick).
    const dest = join(roots.w2, 'opt/kube-airgap')
    await mkdir(dest, { recursive: true })
    await cp(tar, join(dest, `${NAME}.tar`))
    execFileSync('tar', ['xf', `${NAME}.tar`], { cwd: dest })
    const sha = createHash('sha256')
      .update(await readFile(tar))
      .digest('hex')
    await writeFile(join(dest, `${NAME}.unpacked`), `${sha}\n`)
    const calico = join(dest, NAME, 'files', 'calico.yaml')
    await writeFile(calico, `${await readFile(calico, 'utf8')}# edited\n`)

    const r = await playbookRun([])
    expect(r.code, r.out).toBe(2)
    for (const h of ['m1', 'm2', 'w1']) expect(r.recap[h]?.failed, `${h}\n${r.out}`).toBe(0)
    expect(r.recap.w2?.failed, r.out).toBe(1)
    expect(r.out).toMatch(
      /fatal: \[w2\]: FAILED! => \{"changed": false, "msg": "install: ESIGNATURE: .*files\/calico\.yaml: changed: .*not what was signed; do not install it"/,
    )
    const saved = (await readdir(fleet('w2'))).filter((f) => f.startsWith('install-'))
    expect(saved).toHaveLength(1)
    expect(await readFile(fleet('w2', saved[0]!), 'utf8')).toMatch(/^install: ESIGNATURE: /m)

    // The first master: initialized once, Calico applied, the join files written.
    expect((await changedOn('m1')).filter((l) => /^kube(adm|ctl) /.test(l))).toEqual([
      `kubeadm init --config ${join(roots.m1, 'etc/kube-airgap/kubeadm.yaml')} --upload-certs`,
      `kubectl --kubeconfig ${join(roots.m1, 'etc/kubernetes/admin.conf')} apply --server-side --force-conflicts -f ${join(roots.m1, 'etc/kube-airgap/calico.yaml')}`,
    ])
    // The join files went through the controller (0600 there, never in Ansible's output) to the nodes.
    const workerJoin = yaml.load(await readFile(fleet('join', 'worker.yaml'), 'utf8')) as Record<string, string>
    const cpJoin = yaml.load(await readFile(fleet('join', 'control-plane.yaml'), 'utf8')) as Record<string, string>
    for (const f of ['worker.yaml', 'control-plane.yaml']) expect((await stat(fleet('join', f))).mode & 0o777).toBe(0o600)
    expect((await stat(fleet('join'))).mode & 0o777).toBe(0o700)
    expect(r.out).not.toContain(workerJoin.token)
    expect(r.out).not.toContain(cpJoin.certificateKey)
    // The second master joined as a control plane, over ssh; the worker as a worker.
    expect(sshdLog).toMatch(/Accepted publickey for root from 127\.0\.0\.1/)
    for (const [node, file] of [
      ['m2', join(roots.m2, 'opt/kube-airgap', NAME, 'join/control-plane.yaml')],
      ['w1', join(roots.w1, 'opt/kube-airgap', NAME, 'join/worker.yaml')],
    ] as const) {
      expect((await changedOn(node)).filter((l) => /^kube(adm|ctl) /.test(l))).toEqual([
        `kubeadm join --config ${join(roots[node], 'etc/kube-airgap/kubeadm-join.yaml')}`,
      ])
      expect((await stat(file)).mode & 0o777).toBe(0o600)
      const joinCfg = yaml.load(await readFile(join(roots[node], 'etc/kube-airgap/kubeadm-join.yaml'), 'utf8')) as Record<string, any>
      expect(joinCfg.discovery.bootstrapToken.token).toBe(workerJoin.token)
      expect(joinCfg.nodeRegistration.name).toBe(NODES[node])
      // The address the inventory names is the one the kubelet registers (node-ip), a worker's too.
      expect(joinCfg.nodeRegistration.kubeletExtraArgs).toEqual({ 'node-ip': `192.0.2.${10 + Object.keys(NODES).indexOf(node)}` })
      expect(!!joinCfg.controlPlane).toBe(node === 'm2')
      // Through its own local endpoint, to both masters of the inventory.
      expect(joinCfg.discovery.bootstrapToken.apiServerEndpoint).toBe('127.0.0.1:7443')
    }
    for (const node of ['m1', 'm2', 'w1'] as const) {
      const proxy = await readFile(join(roots[node], 'etc/kube-airgap/apiserver-proxy.cfg'), 'utf8')
      expect(proxy.match(/^ {4}server .*$/gm), node).toEqual([`    server ${NODES.m1} 192.0.2.10:6443`, `    server ${NODES.m2} 192.0.2.11:6443`])
      const ran = await changedOn(node)
      expect(ran.indexOf('systemctl enable --now kube-airgap-apiserver-proxy'), node).toBeLessThan(ran.findIndex((l) => /^kubeadm (init|join)/.test(l)))
    }
    expect((await changedOn('m2')).slice(0, 4)).toEqual(['modprobe overlay', 'modprobe br_netfilter', 'sysctl --system', 'swapoff -a'])
    // Each node holds the bundle's files, and the controller each node's log and verification record.
    for (const node of ['m1', 'm2', 'w1'] as const) {
      expect((await stat(join(roots[node], 'usr/local/bin/kubeadm'))).mode & 0o777).toBe(0o755)
      const got = await readdir(fleet(node))
      expect(
        got.filter((f) => /^install-.*\.log$/.test(f)),
        node,
      ).toHaveLength(1)
      // The log holds kubeadm's output: the owner's alone on the controller, and no join token in it.
      for (const f of got.filter((f) => /\.(log|json)$/.test(f))) expect((await stat(fleet(node, f))).mode & 0o777, f).toBe(0o600)
      expect(await readFile(fleet(node, got.find((f) => f.endsWith('.log'))!), 'utf8')).not.toContain(workerJoin.token)
      expect(
        got.filter((f) => /^verify-.*\.json$/.test(f)),
        node,
      ).toHaveLength(1)
      const record = JSON.parse(await readFile(fleet(node, got.find((f) => f.startsWith('verify-'))!), 'utf8'))
      expect(record).toMatchObject({ result: 'verified', bundle: NAME })
      expect(record.signedBy).toMatch(/^sha256:[0-9a-f]{64}$/)
    }
    // The tampered worker: nothing changed under its root, nothing run.
    expect(await changedOn('w2')).toEqual([])
  }, 600_000)

  it('--limit reruns just the failed worker; with kube_airgap_unpack=always its folder is unpacked again and it joins', async () => {
    const before = await readFile(`${roots.m1}.record`, 'utf8')
    const r = await playbookRun(['--limit', 'w2', '-e', 'kube_airgap_unpack=always'])
    expect(r.code, r.out).toBe(0)
    expect(Object.keys(r.recap)).toEqual(['w2'])
    expect((await changedOn('w2')).filter((l) => /^kubeadm /.test(l))).toEqual([`kubeadm join --config ${join(roots.w2, 'etc/kube-airgap/kubeadm-join.yaml')}`])
    expect(await readFile(`${roots.m1}.record`, 'utf8')).toBe(before)
  }, 300_000)

  it('a second run changes nothing on any node and reports changed=0 everywhere', async () => {
    const before = Object.fromEntries(await Promise.all((Object.keys(NODES) as Node[]).map(async (n) => [n, await treeHashes(roots[n])])))
    const commands = Object.fromEntries(await Promise.all((Object.keys(NODES) as Node[]).map(async (n) => [n, await changedOn(n)])))
    const r = await playbookRun([])
    expect(r.code, r.out).toBe(0)
    for (const h of Object.keys(NODES)) expect(r.recap[h], `${h}\n${r.out}`).toMatchObject({ changed: 0, failed: 0 })
    for (const n of Object.keys(NODES) as Node[]) {
      expect(await treeHashes(roots[n]), n).toEqual(before[n])
      expect(await changedOn(n), n).toEqual(commands[n])
    }
  }, 300_000)

  it('check mode changes nothing on any node and shows each node plan (./install --dry-run)', async () => {
    await rm(join(roots.w1, 'etc/crictl.yaml'))
    const before = Object.fromEntries(await Promise.all((Object.keys(NODES) as Node[]).map(async (n) => [n, await treeHashes(roots[n])])))
    const r = await playbookRun(['--check'])
    expect(r.code, r.out).toBe(0)
    for (const n of Object.keys(NODES) as Node[]) expect(await treeHashes(roots[n]), n).toEqual(before[n])
    expect(r.out).toMatch(/"\[containerd\] would do +crictl config \(\/etc\/crictl\.yaml\)"/)
    expect(r.out.match(/dry run: \d+ steps would change the node; nothing was changed/g)).toHaveLength(4)
  }, 300_000)

  it("check mode plans with the controller's cluster.yaml and key, not the nodes' copies, and shows what the installer says on stderr", async () => {
    // w1 has lost its copy of the key (the copy is skipped in check mode, the flag was not),
    // and the controller's cluster.yaml is one no node has: a line for /etc/hosts.
    await rm(join(roots.w1, 'opt/kube-airgap/kube-airgap.pub'))
    const config = join(dir, 'check-cluster.yaml')
    await writeFile(config, 'extraHosts: [{ ip: 192.0.2.99, names: [registry-host] }]\n')
    const inv = yaml.load(await readFile(inventory, 'utf8')) as { all: { vars: Record<string, unknown> } }
    inv.all.vars.kube_airgap_config = config
    const checkInventory = join(dir, 'inventory-check.yml')
    await writeFile(checkInventory, yaml.dump(inv))
    const before = Object.fromEntries(await Promise.all((Object.keys(NODES) as Node[]).map(async (n) => [n, await treeHashes(roots[n])])))
    const r = await playbookRun(['--check'], tar, playbook, checkInventory)
    expect(r.code, r.out).toBe(0)
    expect(r.out).not.toMatch(/cannot read it/)
    expect(r.out.match(/"\[cluster\] would do +node names in \/etc\/hosts \(1\)"/g), r.out).toHaveLength(4)
    // What the installer says on stderr is in the plan: here the join line of each node that
    // joins (the second master and the workers).
    expect(r.out.match(/"join {2}this node will trust the control plane at /g), r.out).toHaveLength(3)
    for (const n of Object.keys(NODES) as Node[]) expect(await treeHashes(roots[n]), n).toEqual(before[n])
    // The key back where a real run puts it, as the tests after this one expect the node.
    await cp(join(dir, 'keys', 'kube-airgap.pub'), join(roots.w1, 'opt/kube-airgap/kube-airgap.pub'))
  }, 300_000)
})

describe('ansible-playbook, batches and join files', () => {
  it('in batches of one, a failed worker stops the rollout before the next batch', async () => {
    const calico = join(roots.w2, 'opt/kube-airgap', NAME, 'files', 'calico.yaml')
    const genuine = await readFile(calico, 'utf8')
    await writeFile(calico, `${genuine}# edited again\n`)
    try {
      const r = await playbookRun(['--limit', 'workers', '-e', 'kube_airgap_worker_batch=1'])
      expect(r.code, r.out).toBe(2)
      expect(r.out).toMatch(/fatal: \[w2\]: FAILED! => \{"changed": false, "msg": "install: ESIGNATURE: /)
      expect(r.out.slice(r.out.indexOf('PLAY [Join the workers'))).not.toContain('[w1]')
    } finally {
      // Put back: the upgrade below takes from this folder what its delta leaves out.
      await writeFile(calico, genuine)
    }
  }, 300_000)

  it('a node still to join when the join files have expired gets fresh ones (join-command on the first master), then joins', async () => {
    const state = join(roots.m1, 'etc/kube-airgap/join.json')
    const yesterday = new Date(Date.now() - 86_400_000).toISOString()
    await writeFile(state, JSON.stringify({ ...JSON.parse(await readFile(state, 'utf8')), expires: yesterday, certificateKeyExpires: yesterday }))
    // w1 never joined: no kubelet.conf, no kubelet running, no Node in the cluster.
    await rm(join(roots.w1, 'etc/kubernetes/kubelet.conf'))
    await rm(join(roots.w1, '.systemctl/active.kubelet'), { force: true })
    await rm(join(dir, 'cluster', 'nodes', NODES.w1), { force: true })
    const before = (await changedOn('m1')).length
    const r = await playbookRun(['--limit', 'm1,w1'])
    expect(r.code, r.out).toBe(0)
    expect((await changedOn('m1')).slice(before)).toEqual([
      'kubeadm token create --ttl 24h',
      expect.stringMatching(/^kubeadm init phase upload-certs --upload-certs --certificate-key [0-9a-f]{64}$/),
    ])
    expect(yaml.load(await readFile(fleet('join', 'worker.yaml'), 'utf8'))).toMatchObject({ token: 'fresh1.0123456789abcdef' })
    const joinCfg = yaml.load(await readFile(join(roots.w1, 'etc/kube-airgap/kubeadm-join.yaml'), 'utf8')) as Record<string, any>
    expect(joinCfg.discovery.bootstrapToken.token).toBe('fresh1.0123456789abcdef')
    expect((await changedOn('w1')).pop()).toBe(`kubeadm join --config ${join(roots.w1, 'etc/kube-airgap/kubeadm-join.yaml')}`)
  }, 300_000)
})

describe('ansible-playbook with split parts', () => {
  it('checks each part, joins them once on the controller into the same tar, and the nodes see nothing new; a damaged part is refused', async () => {
    const split = join(dir, 'usb-split')
    await rebuild(split, '--split', '64M')
    const parts = join(split, `${NAME}.parts.sha256`)
    const sha = async (f: string) =>
      createHash('sha256')
        .update(await readFile(f))
        .digest('hex')
    const r = await playbookRun(['--limit', 'w1'], parts)
    expect(r.code, r.out).toBe(0)
    expect(await sha(fleet(`${NAME}.tar`))).toBe(await sha(tar))
    // Joined from the parts in one read of the stick: the same tar the controller holds already, so nothing changes.
    expect(r.out).toMatch(/TASK \[Check every part \(sha256sum -c\) and join them\] \**\nok: \[w1 -> localhost\]/)
    expect(r.out).toMatch(/TASK \[Copy the bundle tar\] \**\nskipping: \[w1\]/)

    const part = join(split, `${NAME}.tar.001`)
    const bytes = await readFile(part)
    bytes[1000] = bytes[1000]! ^ 1
    await writeFile(part, bytes)
    const bad = await playbookRun(['--limit', 'w1'], parts)
    expect(bad.code, bad.out).toBe(2)
    expect(bad.out).toMatch(
      new RegExp(
        `fatal: \\[w1 -> localhost\\]: FAILED!.*${NAME}\\.tar\\.001: changed or damaged \\(its sha256 is [0-9a-f]{64}, not [0-9a-f]{64}\\): copy this part again`,
      ),
    )
    expect(bad.out).not.toContain('TASK [Copy the bundle tar]')
    expect(await sha(fleet(`${NAME}.tar`))).toBe(await sha(tar))
  }, 300_000)
})

describe('ansible-playbook: the fleet unpacks only what was verified', () => {
  const marker = () => join(dir, 'owned')
  const forgedTar = async () => {
    const stick = join(dir, 'usb-forged')
    await mkdir(stick, { recursive: true })
    const out = join(stick, `${NAME}.tar`)
    // A signed tar with an install/ link appended: GNU tar makes install the attacker's script.
    await appendMembers(
      tar,
      [
        { path: `${NAME}/STATEMENT_json`, type: 'file', data: `#!/bin/sh\ntouch ${marker()}\n`, mode: 0o755 },
        { path: `${NAME}/install/`, type: 'symlink', link: 'STATEMENT_json' },
      ],
      out,
    )
    return out
  }

  it('a signed tar with an install/ link appended is refused on the controller; no node gets it, nothing runs', async () => {
    const before = await treeHashes(roots.w1)
    const r = await playbookRun(['--limit', 'w1'], await forgedTar())
    expect(r.code, r.out).toBe(2)
    expect(r.out).toMatch(/fatal: \[w1 -> localhost\]: FAILED!.*kube-airgap-verify: .*install\/: not a regular file \(a symbolic link/)
    expect(r.out).not.toContain('TASK [Copy the bundle tar]')
    expect(await stat(marker()).catch(() => undefined)).toBeUndefined()
    expect(await treeHashes(roots.w1)).toEqual(before)
  }, 300_000)

  it('a stick that answers the second read differently: the controller reads it once, checks that copy, and the nodes get exactly it', async () => {
    const fifo = join(dir, 'usb-fifo', `${NAME}.tar`)
    await mkdir(join(dir, 'usb-fifo'), { recursive: true })
    execFileSync('mkfifo', [fifo])
    const forged = await forgedTar()
    // A pause after each read: a writer that opened the FIFO again at once would join the reader still draining it.
    const reads = [tar, forged, forged, forged, forged].map((f) => `cat '${f}' > '${fifo}'; sleep 0.5`).join('; ')
    const stick = spawn('sh', ['-c', reads], { stdio: 'ignore' })
    try {
      const r = await playbookRun(['--limit', 'w1', '-e', 'kube_airgap_unpack=always'], fifo)
      expect(r.code, r.out).toBe(0)
    } finally {
      stick.kill()
    }
    expect(await stat(marker()).catch(() => undefined)).toBeUndefined()
    const node = join(roots.w1, 'opt/kube-airgap')
    expect((await readFile(join(node, `${NAME}.tar`))).equals(await readFile(tar))).toBe(true)
    // Unpacked by the verifier the fleet carried, which is the one the operator gave.
    expect(await readFile(join(node, 'kube-airgap-verify'))).toEqual(await readFile(join(dir, 'keys', 'kube-airgap-verify')))
    expect((await stat(join(node, NAME, 'install'))).isFile()).toBe(true)
  }, 300_000)

  it('an inventory host named ../escape is refused before anything is copied or written outside the fleet folder', async () => {
    const inv = yaml.load(await readFile(inventory, 'utf8')) as any
    const root = join(dir, 'nodes', 'escape')
    await freshNodeRoot(root)
    inv.all.children.workers.hosts = {
      '../escape': {
        ...inv.all.children.workers.hosts.w1,
        kube_airgap_root: root,
        kube_airgap_dest: join(root, 'opt/kube-airgap'),
        kube_airgap_node_name: 'k8s09',
      },
    }
    const badInventory = join(dir, 'inventory-escape.yml')
    await writeFile(badInventory, yaml.dump(inv))
    const before = await treeHashes(root)
    const r = await playbookRun(['--limit', '../escape'], tar, playbook, badInventory)
    expect(r.code, r.out).toBe(2)
    expect(r.out).toContain('../escape: not a plain host name')
    expect(await stat(join(dir, 'escape')).catch(() => undefined)).toBeUndefined()
    expect(await treeHashes(root)).toEqual(before)
  }, 300_000)
})

describe('the second year, for the fleet: certificates, images', () => {
  const book = (name: string) => join(playbook, '..', name)

  it('ansible/certs.yml: each master renews its certificates, one after the other; each worker has its rotation checked and changes nothing', async () => {
    const before = { w1: await changedOn('w1'), w2: await changedOn('w2') }
    const r = await playbookRun([], tar, book('certs.yml'))
    expect(r.code, r.out).toBe(0)
    for (const m of ['m1', 'm2'] as const)
      expect(
        (await changedOn(m)).filter((l) => l === 'kubeadm certs renew all'),
        m,
      ).toHaveLength(1)
    for (const w of ['w1', 'w2'] as const) expect(await changedOn(w), w).toEqual(before[w])
    // serial: 1: the first master's whole run (its output kept on the controller) ends before the second's begins.
    const ran = (n: Node) =>
      readdir(fleet(n)).then(
        (fs) =>
          fs
            .filter((f) => f.startsWith('certs-'))
            .sort()
            .pop()!,
      )
    for (const n of Object.keys(NODES) as Node[]) expect(await readFile(fleet(n, await ran(n)), 'utf8'), n).toMatch(/\(exit 0\)\n$/)
    const renewPlay = r.out.slice(
      r.out.indexOf("PLAY [Renew each master's certificates, one at a time]"),
      r.out.indexOf("PLAY [Check every worker's kubelet rotation]"),
    )
    const order = [...renewPlay.matchAll(/^(?:ok|changed): \[(m[12])\]/gm)].map((m) => m[1])
    expect(order.length).toBeGreaterThan(2)
    expect(order.lastIndexOf('m1')).toBeLessThan(order.indexOf('m2'))
  }, 600_000)

  it('ansible/images.yml: an image bundle checked on the controller, unpacked by the verifier, imported and pinned on every node; nothing else changes', async () => {
    const lock = join(dir, 'apps.lock.json')
    await lockWorld(world, lock, join(dir, 'cache'), `platforms: [linux/amd64]\nimages:\n  - ${EXTRA_IMAGE}\n  - registry.k8s.io/pause:3.9\n`)
    const b = await bundleCli([
      'build',
      '--lock',
      lock,
      '--out',
      join(dir, 'usb-apps'),
      '--cache',
      join(dir, 'cache'),
      '--sign',
      join(dir, 'keys', 'kube-airgap.key'),
      ...world.args,
    ])
    expect(b.code, b.stderr).toBe(0)
    const images = join(dir, 'usb-apps', (await readdir(join(dir, 'usb-apps'))).find((f) => f.endsWith('.tar'))!)
    // One containerd for the four nodes of this machine: the first imports, the others find the images there.
    const ctd = await startContainerd(join(dir, 'ctd'))
    try {
      const before = Object.fromEntries(await Promise.all((Object.keys(NODES) as Node[]).map(async (n) => [n, await treeHashes(roots[n])])))
      const args = [
        '-e',
        `kube_airgap_images=${images}`,
        '-e',
        JSON.stringify({ kube_airgap_install_args: ['--host-commands', standins, '--containerd-address', ctd.socket] }),
      ]
      const check = await playbookRun([...args, '--check'], tar, book('images.yml'))
      expect(check.code, check.out).toBe(0)
      expect(check.out).toMatch(/is not on this node yet: it would be copied and unpacked, then its images imported/)
      const r = await playbookRun(args, tar, book('images.yml'))
      expect(r.code, r.out).toBe(0)
      const ls = await ctd.ctr(['-n', 'k8s.io', 'images', 'ls'])
      for (const ref of [EXTRA_IMAGE, 'registry.k8s.io/pause:3.9'])
        expect(ls.stdout).toMatch(new RegExp(`^${ref.replace(/[.]/g, '\\.')}\\s.*io\\.cri-containerd\\.pinned=pinned`, 'm'))
      const name = images
        .split('/')
        .pop()!
        .replace(/\.tar$/, '')
      for (const n of Object.keys(NODES) as Node[]) {
        const out = (await readdir(fleet(n)))
          .filter((f) => f.startsWith('images-'))
          .sort()
          .pop()!
        expect(await readFile(fleet(n, out), 'utf8'), n).toMatch(new RegExp(`install images \\S+/${name} `))
        // Only the image bundle, beside the cluster's; nothing else of the node changed.
        const now = await treeHashes(roots[n])
        const added = Object.keys(now).filter((p) => !(p in before[n]!))
        expect(
          added.every((p) => p.startsWith(`opt/kube-airgap/${name}`)),
          `${n}: ${added.filter((p) => !p.startsWith(`opt/kube-airgap/${name}`))}`,
        ).toBe(true)
        for (const [p, h] of Object.entries(before[n]!)) expect(now[p], `${n} ${p}`).toBe(h)
      }
    } finally {
      await ctd.stop()
    }
  }, 600_000)
})

describe('the registry inside the air gap, for the fleet', () => {
  it("ansible/registry.yml: the registry on the node the inventory names, answering over TLS; its CA back on the controller and every other node's containerd trusting it; a rerun changes nothing", async () => {
    const port = await freePort()
    const config = join(dir, 'registry-cluster.yaml')
    await writeFile(config, `registry:\n  node: k8s01\n  name: localhost:${port}\n  mirrors: [docker.io]\n  auth: true\n`)
    const pod = await runStaticPod(roots.m1, 'kube-airgap-registry', '/usr/bin/docker-registry', join(dir, 'fleet-registry.log'))
    try {
      const args = ['-e', `kube_airgap_config=${config}`, '-e', 'kube_airgap_registry_node=m1']
      const r = await playbookRun(args, tar, join(playbook, '..', 'registry.yml'))
      expect(r.code, r.out).toBe(0)
      const ca = await readFile(join(roots.m1, 'etc/kube-airgap/registry/ca.crt'), 'utf8')
      expect(await readFile(fleet('join', 'registry-ca.crt'), 'utf8')).toBe(ca)
      expect(((await stat(fleet('join', 'registry-credentials'))).mode & 0o777).toString(8)).toBe('600')
      const code = execFileSync(
        'curl',
        ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', fleet('join', 'registry-ca.crt'), `https://localhost:${port}/v2/`],
        {
          encoding: 'utf8',
        },
      )
      expect(code).toBe('401')
      for (const n of ['m2', 'w1', 'w2'] as const) {
        for (const name of [`localhost:${port}`, 'docker.io']) {
          expect(await readFile(join(roots[n], 'etc/containerd/certs.d', name, 'ca.crt'), 'utf8'), `${n} ${name}`).toBe(ca)
          expect(await readFile(join(roots[n], 'etc/containerd/certs.d', name, 'hosts.toml'), 'utf8'), `${n} ${name}`).toContain(
            `server = "https://localhost:${port}"`,
          )
        }
      }
      const again = await playbookRun(args, tar, join(playbook, '..', 'registry.yml'))
      expect(again.code, again.out).toBe(0)
      for (const [host, recap] of Object.entries(again.recap)) if (host !== 'localhost') expect(recap.changed, host).toBe(0)
    } finally {
      await pod.stop()
    }
  }, 600_000)
})

describe('ansible-playbook ansible/upgrade.yml from the next bundle', () => {
  it('from a delta bundle: stages the new images on every node, then upgrades the first master, the second, then the workers each drained and uncordoned from the first master; a rerun changes nothing', async () => {
    // A delta (only what the 1.29.3 bundle lacks): each node finds the old bundle beside it, where site.yml put it.
    const NEW = 'kube-airgap-v1.30.11-linux-amd64-from-v1.29.3'
    const next = await startWorld(join(dir, 'w130'), { realistic: true, manifestEdit: nextMinor })
    try {
      const lock = join(dir, 'w130', 'bundle.lock.json')
      await lockWorld(next, lock, join(dir, 'w130', 'cache'))
      const out = join(dir, 'usb130')
      const b = await bundleCli([
        'build',
        '--lock',
        lock,
        '--out',
        out,
        '--upgrade-from',
        join(dir, 'bundle.lock.json'),
        '--cache',
        join(dir, 'cache'),
        '--sign',
        join(dir, 'keys', 'kube-airgap.key'),
        ...next.args,
      ])
      expect(b.code, b.stderr).toBe(0)
      execFileSync(join(dir, 'keys', 'kube-airgap-verify'), ['--extract', join(dir, 'controller'), join(out, `${NEW}.tar`)], { stdio: 'ignore' })
      const upgrade = join(dir, 'controller', NEW, 'ansible', 'upgrade.yml')
      const before = Object.fromEntries(await Promise.all((Object.keys(NODES) as Node[]).map(async (n) => [n, (await changedOn(n)).length])))
      const since = async (n: Node) => (await changedOn(n)).slice(before[n])

      // A worker that reports a flag as its node name (its own kubeadm-join.yaml, which whoever
      // owns the worker can write), in an inventory that does not name it: its staging fails
      // (no such node), so the rollout stops before the first master changes or its kubectl
      // sees the name. (Past staging, upgrade-worker.yml refuses such a name before draining.)
      const joinCfg = join(roots.w1, 'etc/kube-airgap/kubeadm-join.yaml')
      const genuineJoin = await readFile(joinCfg, 'utf8')
      expect(genuineJoin).toMatch(/^\s*name: k8s03$/m)
      await writeFile(joinCfg, genuineJoin.replace(/^(\s*name: )k8s03$/m, '$1--selector=node-role.kubernetes.io/control-plane'))
      const inv = yaml.load(await readFile(inventory, 'utf8')) as { all: { children: { workers: { hosts: Record<string, Record<string, unknown>> } } } }
      delete inv.all.children.workers.hosts.w1!.kube_airgap_node_name
      const forgedInventory = join(dir, 'inventory-forged-name.yml')
      await writeFile(forgedInventory, yaml.dump(inv))
      const forged = await playbookRun([], join(out, `${NEW}.tar`), upgrade, forgedInventory)
      expect(forged.code, forged.out).toBe(2)
      expect(forged.out).toContain(
        `the API server does not list this node by the name its kubeadm config gives (\\"--selector=node-role.kubernetes.io/control-plane\\")`,
      )
      expect((await changedOn('m1')).filter((l) => /--selector|^kubeadm upgrade/.test(l))).toEqual([])
      const events = async () => (await readFile(join(dir, 'cluster', 'events'), 'utf8')).trim().split('\n')
      expect(await events()).not.toContain('upgrade apply v1.30.11')
      await writeFile(joinCfg, genuineJoin)

      // k8s04 cordoned by the operator before the upgrade: drained all the same, and left cordoned.
      const onM1 = (...args: string[]) =>
        execFileSync(join(roots.m1, 'usr/local/bin/kubectl'), ['--kubeconfig', join(roots.m1, 'etc/kubernetes/admin.conf'), ...args], {
          env: { ...process.env, KA_ROOT: roots.m1, KA_CLUSTER: join(dir, 'cluster'), KA_RECORD: '/dev/null' },
        })
      onM1('cordon', 'k8s04')
      const r = await playbookRun([], join(out, `${NEW}.tar`), upgrade)
      expect(r.code, r.out).toBe(0)
      expect(existsSync(join(dir, 'cluster', 'cordoned', 'k8s04'))).toBe(true)
      expect(existsSync(join(dir, 'cluster', 'cordoned', 'k8s03'))).toBe(false)
      for (const n of Object.keys(NODES) as Node[]) {
        expect(r.recap[n]?.failed, `${n}\n${r.out}`).toBe(0)
        expect((await readFile(join(roots[n], 'usr/local/bin/kubelet'), 'utf8')).match(/^VERSION=(.*)$/m)?.[1], n).toBe('1.30.11')
      }
      // Every node staged the new images (marked itself) before the first master's kubeadm upgrade apply.
      const all = await events()
      const apply = all.indexOf('upgrade apply v1.30.11')
      expect(apply, all.join('\n')).toBeGreaterThan(0)
      expect(
        all
          .slice(0, apply)
          .filter((e) => e.startsWith('annotate '))
          .map((e) => e.split(' ')[1])
          .sort(),
      ).toEqual(Object.values(NODES).sort())
      const admin1 = join(roots.m1, 'etc/kubernetes/admin.conf')
      const m1 = (await since('m1')).filter((l) => /^kubeadm upgrade|drain|uncordon/.test(l))
      expect(m1.slice(0, 3)).toEqual([
        'kubeadm upgrade apply v1.30.11 --yes',
        `kubectl --kubeconfig ${admin1} drain k8s01 --ignore-daemonsets --delete-emptydir-data --timeout=600s`,
        `kubectl --kubeconfig ${admin1} uncordon k8s01`,
      ])
      // The workers, drained from the first master (its record) before their upgrade and
      // uncordoned after; one batch runs its hosts side by side, so their order may vary.
      const workers = m1.slice(3)
      expect([...workers].sort()).toEqual(
        [
          ...['k8s03', 'k8s04'].map((n) => `kubectl --kubeconfig ${admin1} drain --ignore-daemonsets --delete-emptydir-data --timeout=600s -- ${n}`),
          `kubectl --kubeconfig ${admin1} uncordon -- k8s03`,
        ].sort(),
      )
      for (const n of ['k8s03'])
        expect(workers.findIndex((l) => l.includes(`drain `) && l.endsWith(` ${n}`))).toBeLessThan(workers.findIndex((l) => l.endsWith(`uncordon -- ${n}`)))
      expect((await since('m2')).filter((l) => /^kubeadm upgrade|drain|uncordon/.test(l))).toEqual([
        'kubeadm upgrade node',
        `kubectl --kubeconfig ${join(roots.m2, 'etc/kubernetes/admin.conf')} drain k8s02 --ignore-daemonsets --delete-emptydir-data --timeout=600s`,
        `kubectl --kubeconfig ${join(roots.m2, 'etc/kubernetes/admin.conf')} uncordon k8s02`,
      ])
      for (const w of ['w1', 'w2'] as Node[])
        expect(
          (await since(w)).filter((l) => /^kubeadm upgrade/.test(l)),
          w,
        ).toEqual(['kubeadm upgrade node'])
      expect(await readdir(fleet('m1'))).toEqual(
        expect.arrayContaining([expect.stringMatching(/^upgrade-.*\.out$/), expect.stringMatching(/^upgrade-.*\.log$/)]),
      )

      const counts = Object.fromEntries(await Promise.all((Object.keys(NODES) as Node[]).map(async (n) => [n, (await changedOn(n)).length])))
      const again = await playbookRun([], join(out, `${NEW}.tar`), upgrade)
      expect(again.code, again.out).toBe(0)
      for (const n of Object.keys(NODES) as Node[]) {
        expect(again.recap[n]?.changed, `${n}\n${again.out}`).toBe(0)
        expect((await changedOn(n)).length, n).toBe(counts[n])
      }
    } finally {
      await next.close()
    }
  }, 600_000)
})

describe('./install inventory', () => {
  it('prints the commented example inventory the playbook reads, which ansible-inventory parses', async () => {
    const out = execFileSync(join(dir, 'controller', NAME, 'install'), ['inventory'], { encoding: 'utf8' })
    expect(out).toContain('kube_airgap_control_plane_endpoint:')
    const file = join(dir, 'example.yml')
    await writeFile(file, out)
    const graph = JSON.parse(execFileSync('ansible-inventory', ['-i', file, '--list'], { encoding: 'utf8' }))
    expect(graph.masters.hosts).toEqual(['m01', 'm02', 'm03'])
    expect(graph.workers.hosts).toHaveLength(3)
  })

  it('ansible-lint passes on the playbooks', () => {
    const r = spawnLint(join(dir, 'controller', NAME, 'ansible'))
    expect(r.code, r.out).toBe(0)
  })
})

function spawnLint(cwd: string): { code: number; out: string } {
  try {
    const out = execFileSync('ansible-lint', ['--offline', '--nocolor', 'site.yml', 'upgrade.yml', 'certs.yml', 'images.yml', 'remove.yml', 'replace.yml'], {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    return { code: 0, out }
  } catch (e) {
    const err = e as { status: number; stdout: string; stderr: string }
    return { code: err.status, out: err.stdout + err.stderr }
  }
}

describe('the second year, for the fleet: remove and replace, on a cluster of their own', () => {
  const book = (name: string) => join(playbook, '..', name)
  const R = { r1: 'k8s11', r2: 'k8s12', r3: 'k8s13' } as const
  const rootOf = (h: keyof typeof R) => join(dir, 'nodes-r', h)
  const record = async (h: keyof typeof R) => changing((await readFile(`${rootOf(h)}.record`, 'utf8').catch(() => '')).split('\n').filter(Boolean))
  /** One master (r1) and the workers given, beside the main cluster: their own roots and KA_CLUSTER. */
  async function inventoryOf(workers: (keyof typeof R)[]): Promise<string> {
    const inv = yaml.load(await readFile(inventory, 'utf8')) as any
    const base = inv.all.children.workers.hosts.w1
    const host = (h: keyof typeof R, i: number) => ({
      ...base,
      kube_airgap_root: rootOf(h),
      kube_airgap_dest: join(rootOf(h), 'opt/kube-airgap'),
      kube_airgap_node_name: R[h],
      kube_airgap_advertise_address: `192.0.2.${21 + i}`,
      kube_airgap_install_environment: {
        ...base.kube_airgap_install_environment,
        KA_RECORD: `${rootOf(h)}.record`,
        KA_ROOT: rootOf(h),
        KA_CLUSTER: join(dir, 'cluster-r'),
      },
    })
    inv.all.vars.kube_airgap_fleet_dir = join(dir, 'fleet-r')
    inv.all.children = {
      masters: { hosts: { r1: host('r1', 0) } },
      workers: { hosts: Object.fromEntries(workers.map((w) => [w, host(w, Object.keys(R).indexOf(w))])) },
    }
    const path = join(dir, `inventory-${['r1', ...workers].join('-')}.yml`)
    await writeFile(path, yaml.dump(inv))
    return path
  }

  it('ansible/replace.yml: the old worker drained and deleted from the master, reset and purged; the new machine beside it in the inventory joined', async () => {
    for (const h of Object.keys(R) as (keyof typeof R)[]) await freshNodeRoot(rootOf(h))
    const made = await playbookRun([], tar, playbook, await inventoryOf(['r2']))
    expect(made.code, made.out).toBe(0)
    expect(existsSync(join(dir, 'cluster-r', 'nodes', R.r2))).toBe(true)

    const r = await playbookRun(['-e', 'kube_airgap_remove=r2'], tar, book('replace.yml'), await inventoryOf(['r2', 'r3']))
    expect(r.code, r.out).toBe(0)
    const removal = (await record('r1'))
      .filter((l) => / (cordon|drain|delete node) /.test(l))
      .map((l) => l.replace(/^kubectl .* (cordon|drain|delete node) .*$/, '$1'))
    expect(removal).toEqual(['cordon', 'drain', 'delete node'])
    expect(existsSync(join(dir, 'cluster-r', 'nodes', R.r2))).toBe(false)
    expect((await record('r2')).filter((l) => l.startsWith('kubeadm reset'))).toHaveLength(1)
    expect(existsSync(join(rootOf('r2'), 'usr/local/bin/kubelet'))).toBe(false)
    expect((await record('r3')).filter((l) => l.startsWith('kubeadm join'))).toEqual([
      `kubeadm join --config ${join(rootOf('r3'), 'etc/kube-airgap/kubeadm-join.yaml')}`,
    ])
    expect(existsSync(join(dir, 'cluster-r', 'nodes', R.r3))).toBe(true)
    // The removed node is left out of every play of site.yml that follows.
    expect(r.out).not.toMatch(/TASK \[Install a worker\][\s\S]*?\bok: \[r2\]/)
  }, 600_000)

  it('ansible/remove.yml: a worker taken out (refused for the first master itself), then reset where it answers', async () => {
    const inv = await inventoryOf(['r3'])
    const self = await playbookRun(['-e', 'kube_airgap_remove=r1'], tar, book('remove.yml'), inv)
    expect(self.code).toBe(2)
    expect(self.out).toMatch(/not the first master: put another master first in the inventory/)
    const r = await playbookRun(['-e', 'kube_airgap_remove=r3'], tar, book('remove.yml'), inv)
    expect(r.code, r.out).toBe(0)
    expect(existsSync(join(dir, 'cluster-r', 'nodes', R.r3))).toBe(false)
    expect((await record('r3')).filter((l) => l.startsWith('kubeadm reset'))).toHaveLength(1)
    expect(existsSync(join(rootOf('r3'), 'usr/local/bin/kubelet'))).toBe(false)
  }, 600_000)
})
