import { execFileSync, execSync } from 'node:child_process'
import { createServer } from 'node:net'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildUnpacked, dryRunClaims } from '../support/cli.js'
import { changing, freshNodeRoot, type RecordedRun, recordedRun, treeHashes, writeStandins } from '../support/standins.js'
import { runStaticPod, type StaticPod } from '../support/static-pods.js'
import { lockWorld, startWorld, type World } from '../support/world.js'

/**
 * Backups and restores against the real etcd: Debian's etcd-server runs as each master's etcd
 * static pod (test/support/static-pods.ts plays the kubelet for it), from the manifest shape
 * kubeadm writes, with TLS from a kubeadm-shaped etcd PKI made with openssl; the bundle
 * carries Debian's etcdctl as the etcd release's. Debian's etcd is 3.4, the cluster's image
 * 3.5.12: what a backup and a restore use (the v3 API's snapshot and member list, the snapshot
 * file's format, restore's flags) is the same in both, so the installer's code path is the
 * one a 3.5 node runs; only etcdutl, which 3.4 lacks, is a stand-in handing restore to etcdctl.
 */
let dir: string
let world: World
let bundle: string
let standins: string
let ca: string
const pods: StaticPod[] = []

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-etcd-'))
  world = await startWorld(dir, { realistic: true })
  const lock = join(dir, 'bundle.lock.json')
  await lockWorld(world, lock, join(dir, 'cache'))
  bundle = await buildUnpacked(['--lock', lock, '--cache', join(dir, 'cache'), ...world.args], join(dir, 'out'))
  standins = await writeStandins(join(dir, 'standins'))
  ca = join(dir, 'ca.crt')
  execSync(`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ${ca}.key -out ${ca} -days 30 -subj /CN=kubernetes 2>/dev/null`)
  etcdPki(join(dir, 'etcd-pki'))
}, 180_000)
afterAll(async () => {
  for (const p of pods) await p.stop()
  await world.close()
  await rm(dir, { recursive: true, force: true })
})

function install(args: string[], root: string): Promise<RecordedRun> {
  return recordedRun(
    join(bundle, 'install'),
    [...args, '--root', root, '--host-commands', standins],
    { PATH: `${standins}:${process.env.PATH}`, KA_ROOT: root, KA_CA_CRT: ca },
    join(root, '..', `${relative(dir, root).replace(/\//g, '_')}.record`),
  )
}

/** kubeadm's etcd PKI (certs/certlist.go): a CA, a server and peer certificate for loopback, the health-check client. */
function etcdPki(d: string): void {
  execSync(
    `mkdir -p ${d} && cd ${d} && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext && printf 'extendedKeyUsage=clientAuth\\n' > client.ext`,
  )
  const sh = (cmd: string) => execSync(cmd, { cwd: d, stdio: 'ignore', shell: '/bin/sh' })
  const key = '-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
  sh(`openssl req -x509 ${key} -keyout ca.key -out ca.crt -days 30 -subj /CN=etcd-ca`)
  for (const [name, ext] of [
    ['server', 'server.ext'],
    ['peer', 'server.ext'],
    ['healthcheck-client', 'client.ext'],
  ])
    sh(
      `openssl req ${key} -keyout ${name}.key -subj /CN=${name} | openssl x509 -req -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -extfile ${ext} -out ${name}.crt`,
    )
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })
}

interface Member {
  name: string
  root: string
  client: string
  peer: string
}

/** kubeadm's etcd static pod (phases/etcd/local.go getEtcdCommand), without the 3.5-only experimental flags 3.4 refuses. */
const etcdManifest = (m: Member, cluster: Member[]) => `apiVersion: v1
kind: Pod
metadata:
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=${m.client}
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=${m.peer}
    - --initial-cluster=${cluster.map((c) => `${c.name}=${c.peer}`).join(',')}
    - --key-file=/etc/kubernetes/pki/etcd/server.key
    - --listen-client-urls=${m.client}
    - --listen-peer-urls=${m.peer}
    - --name=${m.name}
    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt
    - --peer-client-cert-auth=true
    - --peer-key-file=/etc/kubernetes/pki/etcd/peer.key
    - --peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    - --snapshot-count=10000
    - --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    image: registry.k8s.io/etcd:3.5.12-0
    name: etcd
`

/** Masters installed with the stand-ins, each then running the real etcd as its static pod, as members of one etcd. */
async function masters(names: string[]): Promise<Member[]> {
  const members: Member[] = []
  for (const name of names)
    members.push({ name, root: join(dir, 'roots', name), client: `https://127.0.0.1:${await freePort()}`, peer: `https://127.0.0.1:${await freePort()}` })
  for (const m of members) {
    await mkdir(m.root, { recursive: true })
    await freshNodeRoot(m.root)
    const r = await install(['--role', 'master', '--skip-phases', 'images', '--advertise-address', '192.0.2.10', '--node-name', m.name], m.root)
    expect(r.code, r.stderr + r.stdout).toBe(0)
    execSync(`mkdir -p ${m.root}/etc/kubernetes/pki/etcd && cp ${dir}/etcd-pki/*.crt ${dir}/etcd-pki/*.key ${m.root}/etc/kubernetes/pki/etcd/`)
    for (const pod of ['kube-controller-manager', 'kube-scheduler'])
      await writeFile(join(m.root, 'etc/kubernetes/manifests', `${pod}.yaml`), `# ${pod}\nkind: Pod\n`, { mode: 0o600 })
    await writeFile(join(m.root, 'etc/kubernetes/manifests/etcd.yaml'), etcdManifest(m, members), { mode: 0o600 })
  }
  for (const m of members) pods.push(await runStaticPod(m.root, 'etcd', '/usr/bin/etcd', join(dir, `${m.name}-etcd.log`)))
  for (const m of members) await healthy(m)
  return members
}

const etcdctl = (m: Member, ...args: string[]) =>
  execFileSync(
    'etcdctl',
    [
      `--endpoints=${m.client}`,
      `--cacert=${dir}/etcd-pki/ca.crt`,
      `--cert=${dir}/etcd-pki/healthcheck-client.crt`,
      `--key=${dir}/etcd-pki/healthcheck-client.key`,
      ...args,
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  )

async function healthy(m: Member): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      etcdctl(m, 'endpoint', 'health', '--command-timeout=2s')
      return
    } catch {
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  throw new Error(`${m.name}'s etcd did not come up: ${await readFile(join(dir, `${m.name}-etcd.log`), 'utf8').catch(() => '')}`)
}

const keys = (m: Member) => etcdctl(m, 'get', '/registry/', '--prefix', '--keys-only').split('\n').filter(Boolean)
/** The node's files, but etcd's own data, which the running etcd changes as it likes. */
const tree = (m: Member) => treeHashes(m.root, ['var/lib/etcd', '.pods'])

/** etcd lost: the process killed, its data folder emptied; the kubelet starts it again, an empty etcd. */
async function disaster(members: Member[]): Promise<void> {
  await Promise.all(
    members.map((m, i) => pods[pods.length - members.length + i]!.crash(() => rm(join(m.root, 'var/lib/etcd'), { recursive: true, force: true }))),
  )
  for (const m of members) await healthy(m)
}

describe('./install backup and ./install restore, against the real etcd', () => {
  it('one master: a backup now and daily, the newest kept; a damaged copy refused with nothing touched; the wiped etcd restored with its keys', async () => {
    const [m] = await masters(['m1'])
    for (const k of ['a', 'b', 'c']) etcdctl(m!, 'put', `/registry/${k}`, k)

    const before = await tree(m!)
    const dry = await install(['backup', '--dry-run', '--schedule', 'daily', '--keep', '2'], m!.root)
    expect(dry.code, dry.stderr + dry.stdout).toBe(0)
    expect(await tree(m!)).toEqual(before)
    const r = await install(['backup', '--schedule', 'daily', '--keep', '2'], m!.root)
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(dryRunClaims(dry.stdout, r.stdout)).toEqual([])
    expect(changing(r.record)).toEqual(['systemctl daemon-reload', 'systemctl enable --now kube-airgap-backup.timer'])
    const backups = join(m!.root, 'var/lib/kube-airgap/backups')
    const first = (await readdir(backups)).filter((f) => f.endsWith('.tar.gz'))
    expect(first).toEqual([expect.stringMatching(/^etcd-m1-\d{8}T\d{6}Z\.tar\.gz$/)])
    expect(r.stdout).toContain(`backup: /var/lib/kube-airgap/backups/${first[0]}`)
    const file = join(backups, first[0]!)
    expect(((await stat(file)).mode & 0o777).toString(8)).toBe('600')
    // Its sha256 beside it, in the form sha256sum -c reads; inside, everything a restore needs.
    execFileSync('sha256sum', ['-c', `${first[0]}.sha256`], { cwd: backups, stdio: 'ignore' })
    const inside = execFileSync('tar', ['tzf', file], { encoding: 'utf8' })
    for (const f of ['./etcd.db', './members.json', './etcd.yaml', './kubeadm.yaml', './SHA256SUMS', './pki/ca.crt', './pki/etcd/ca.key'])
      expect(inside).toContain(f)
    expect(await readFile(join(m!.root, 'etc/systemd/system/kube-airgap-backup.service'), 'utf8')).toContain(
      'ExecStart=/usr/local/sbin/kube-airgap-backup /var/lib/kube-airgap/backups 2',
    )
    expect(await readFile(join(m!.root, 'etc/systemd/system/kube-airgap-backup.timer'), 'utf8')).toContain('OnCalendar=daily')

    // What the timer runs is the same script: two more, and only the newest two are kept.
    for (let i = 0; i < 2; i++) {
      await new Promise((res) => setTimeout(res, 1100))
      execFileSync(join(m!.root, 'usr/local/sbin/kube-airgap-backup'), ['/var/lib/kube-airgap/backups', '2'])
    }
    const kept = (await readdir(backups)).sort()
    expect(kept.filter((f) => f.endsWith('.tar.gz'))).toHaveLength(2)
    expect(kept).not.toContain(first[0])
    expect(kept.filter((f) => f.endsWith('.sha256'))).toHaveLength(2)
    await rm(join(backups, kept.find((f) => f.endsWith('.tar.gz'))!))
    await rm(join(backups, kept.find((f) => f.endsWith('.sha256'))!))
    const newest = join(backups, (await readdir(backups)).find((f) => f.endsWith('.tar.gz'))!)
    etcdctl(m!, 'put', '/registry/after-the-backup', 'x')

    // One flipped byte: refused in one line, before anything is touched.
    const bad = join(dir, 'flipped.tar.gz')
    const bytes = await readFile(newest)
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01
    await writeFile(bad, bytes)
    await writeFile(`${bad}.sha256`, await readFile(`${newest}.sha256`))
    const untouched = await tree(m!)
    const refused = await install(['restore', bad], m!.root)
    expect(refused.code).toBe(1)
    expect(refused.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/flipped\.tar\.gz: its sha256 is [0-9a-f]{64}, .* says [0-9a-f]{64}: the backup is damaged/),
    ])
    await rm(`${bad}.sha256`)
    const unpaired = await install(['restore', bad], m!.root)
    expect(unpaired.code).toBe(1)
    expect(unpaired.stderr).toMatch(/flipped\.tar\.gz: .*: the backup is damaged/)
    expect(await tree(m!)).toEqual(untouched)

    await disaster([m!])
    expect(keys(m!)).toEqual([])

    const dryRestore = await install(['restore', newest, '--dry-run'], m!.root)
    expect(dryRestore.code, dryRestore.stderr + dryRestore.stdout).toBe(0)
    expect(await tree(m!)).toEqual(untouched)
    const restored = await install(['restore', newest], m!.root)
    expect(restored.code, restored.stderr + restored.stdout).toBe(0)
    expect(dryRunClaims(dryRestore.stdout, restored.stdout)).toEqual([])
    const order = restored.stdout
      .split('\n')
      .filter((l) => /^\[restore\] done +(\S+ (stopped|started)|etcd's (old )?data)/.test(l))
      .map((l) => l.replace(/^\[restore\] done +/, '').replace(/ \(.*$| by the kubelet.*$| again.*$|: member.*$/, ''))
    expect(order).toEqual([
      'kube-apiserver stopped',
      'kube-controller-manager stopped',
      'kube-scheduler stopped',
      'etcd stopped',
      "etcd's old data",
      "etcd's data restored from the snapshot",
      'etcd started',
      'kube-apiserver started',
      'kube-controller-manager started',
      'kube-scheduler started',
    ])
    expect(changing(restored.record).filter((l) => !l.startsWith('etcdutl'))).toEqual(['systemctl restart kubelet'])
    expect(restored.record.find((l) => l.startsWith('etcdutl'))).toMatch(
      /^etcdutl snapshot restore \S+\/var\/lib\/kube-airgap\/restore\/etcd\.db --name m1 --initial-cluster m1=https:\/\/127\.0\.0\.1:\d+ /,
    )
    await healthy(m!)
    expect(keys(m!)).toEqual(['/registry/a', '/registry/b', '/registry/c'])
    expect((await readdir(join(m!.root, 'var/lib'))).filter((f) => f.startsWith('etcd.before-restore-'))).toHaveLength(1)
    expect(existsSync(join(m!.root, 'var/lib/kube-airgap/restore'))).toBe(false)
    for (const pod of ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler'])
      expect(existsSync(join(m!.root, 'etc/kubernetes/manifests', `${pod}.yaml`))).toBe(true)
  }, 240_000)

  it('three masters: refused unless every one is named; the same backup restored on all three brings the keys back on each', async () => {
    const members = await masters(['m2', 'm3', 'm4'])
    const [a, b, c] = members as [Member, Member, Member]
    for (const k of ['x', 'y']) etcdctl(a, 'put', `/registry/${k}`, k)
    const r = await install(['backup'], a.root)
    expect(r.code, r.stderr + r.stdout).toBe(0)
    const backups = join(a.root, 'var/lib/kube-airgap/backups')
    const file = join(backups, (await readdir(backups)).find((f) => f.endsWith('.tar.gz'))!)
    etcdctl(a, 'put', '/registry/after-the-backup', 'z')

    const untouched = await tree(a)
    const unnamed = await install(['restore', file], a.root)
    expect(unnamed.code).toBe(2)
    expect(unnamed.stderr.trim()).toMatch(
      /the backup is of a 3-member etcd \(m2, m3, m4\): name every master with --masters m2=<its address>,m3=<its address>,m4=<its address>/,
    )
    const short = await install(['restore', file, '--masters', 'm2=127.0.0.1,m3=127.0.0.1'], a.root)
    expect(short.code).toBe(2)
    expect(short.stderr.trim()).toMatch(/--masters must name every member of the backup's etcd \(m2, m3, m4\); it leaves out m4;/)
    expect(await tree(a)).toEqual(untouched)

    await disaster(members)
    const all = '--masters=m2=127.0.0.1,m3=127.0.0.1,m4=127.0.0.1'
    const runs = await Promise.all(members.map((m) => install(['restore', file, all], m.root)))
    for (const run of runs) expect(run.code, run.stderr + run.stdout).toBe(0)
    for (const m of [a, b, c]) {
      await healthy(m)
      expect(keys(m), m.name).toEqual(['/registry/x', '/registry/y'])
    }
    const list = JSON.parse(etcdctl(b, 'member', 'list', '-w', 'json')) as { members: { name: string; peerURLs: string[] }[] }
    expect(list.members.map((x) => `${x.name}=${x.peerURLs[0]}`).sort()).toEqual(members.map((m) => `${m.name}=${m.peer}`))
  }, 240_000)
})
