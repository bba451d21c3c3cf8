import { execFileSync, execSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { closure, newest, parsePackages } from '../../builder/packages/debian.js'
import { Sha256 } from '../../bundle/digest.js'
import { installedBy, PACKAGE_USES, parseLock, serializeLock } from '../../bundle/lock.js'
import { buildUnpacked, bundleCli, installInto } from '../support/cli.js'
import { REPO } from '../support/fake-upstream.js'
import { startUpstream, type Upstream } from '../support/upstream.js'
import { startWorld, type World } from '../support/world.js'

/**
 * OS packages end to end: `bundle lock` reads a local archive mirror that serves Debian 12's
 * real package indexes and the real .deb files of the closure (fetched with apt-get download
 * during setup); the bundle installs them with dpkg into a real Debian 12 root made with
 * `debootstrap --variant=minbase` (cached in /var/cache/kube-airgap-test between runs).
 */
/** Debian's archive is reachable from this machine (and from CI): the tests against it run; elsewhere they say why not. */
const DEBIAN_REACHABLE = await fetch('http://deb.debian.org/debian/dists/bookworm/InRelease', { method: 'HEAD', signal: AbortSignal.timeout(10_000) }).then(
  (r) => r.ok,
  () => false,
)
if (!DEBIAN_REACHABLE) console.log('packages.test.ts: http://deb.debian.org is not reachable from here: the tests against the real Debian archive are skipped')

const NAMES = ['conntrack', 'socat', 'ebtables', 'ethtool', 'ipset', 'iptables']
/** What the fleet playbook's controller needs (docs/fleet.md), as the default manifest names it. */
const CONTROLLER = ['ansible-core', 'sshpass']
const ROOTFS = '/var/cache/kube-airgap-test/debian12'
const LISTS = '/var/lib/apt/lists'
/** Debian 12's suites as this machine's apt sees them; each served as the test's archive lays it out. */
const SUITES: { repo: string; suite: string; list: string; index: 'xz' | 'gz' }[] = [
  { repo: 'debian', suite: 'bookworm', list: 'deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages', index: 'xz' },
  { repo: 'debian', suite: 'bookworm-updates', list: 'deb.debian.org_debian_dists_bookworm-updates_main_binary-amd64_Packages', index: 'gz' },
  {
    repo: 'debian-security',
    suite: 'bookworm-security',
    list: 'deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages',
    index: 'xz',
  },
]
/** The Release files' Date: the snapshot timestamp the lock records. */
const RELEASE_DATE = 'Sat, 11 Jul 2026 10:16:37 UTC'
const SNAPSHOT_TS = '20260711T101637Z'
let dir: string
let world: World
let archive: Upstream
let lockPath: string
let bundle: string
let gnupg: string
let keyring: string

const readList = async (name: string): Promise<string> => {
  const f = (await readdir(LISTS)).find((n) => n.startsWith(name) && !n.endsWith('.diff_Index'))
  if (!f) throw new Error(`no ${name} in ${LISTS}: run apt-get update`)
  return f.endsWith('.lz4') || f.endsWith('.gz') || f.endsWith('.xz')
    ? execFileSync('/usr/lib/apt/apt-helper', ['cat-file', join(LISTS, f)], { maxBuffer: 256 << 20, encoding: 'utf8' })
    : readFile(join(LISTS, f), 'utf8')
}

const gpg = (args: string[], input?: string) =>
  execFileSync('gpg', ['--batch', '--homedir', gnupg, ...args], { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'] })

/**
 * One suite in the real layout: dists/<suite>/main/binary-amd64/Packages.<xz|gz>, and a
 * Release listing it by sha256 and size, clear-signed into InRelease by `key` (or left
 * unsigned, as Release alone).
 */
async function writeSuite(
  root: string,
  repo: string,
  suite: string,
  text: string,
  index: 'xz' | 'gz',
  sign: { key?: string; tamper?: boolean } = { key: 'archive' },
): Promise<void> {
  const d = join(root, 'deb.debian.org', repo, 'dists', suite)
  await mkdir(join(d, 'main', 'binary-amd64'), { recursive: true })
  const name = `main/binary-amd64/Packages.${index}`
  const bytes = index === 'gz' ? gzipSync(text) : execFileSync('xz', ['-c', '-0'], { input: text, maxBuffer: 256 << 20 })
  const served = Buffer.from(bytes)
  if (sign.tamper) served[served.length >> 1] = served[served.length >> 1]! ^ 1
  await writeFile(join(d, name), served)
  const release = `Origin: Debian\nSuite: ${suite}\nCodename: ${suite}\nDate: ${RELEASE_DATE}\nArchitectures: amd64\nComponents: main\nSHA256:\n ${Sha256.of(bytes).hex} ${bytes.length} ${name}\n`
  if (!sign.key) return writeFile(join(d, 'Release'), release)
  await writeFile(join(d, 'InRelease'), gpg(['--local-user', sign.key, '--digest-algo', 'SHA256', '--clearsign'], release))
}

/** The lock and build arguments for an archive root: its mirror and the test's keyring, as a user passes them. */
const archiveArgs = (url: string) => ['--mirror', `http://deb.debian.org=${url}/deb.debian.org`, '--keyring', keyring]

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-packages-'))
  // The test's archive keys, made by gpg: the one the mirror signs with, and another.
  gnupg = join(dir, 'gnupg')
  await mkdir(gnupg, { mode: 0o700 })
  for (const who of ['archive', 'stranger'])
    gpg(['--passphrase', '', '--quick-gen-key', `${who} (kube-airgap test) <${who}@example.invalid>`, 'ed25519', 'sign', 'never'])
  keyring = join(dir, 'test-archive.gpg')
  await writeFile(keyring, execFileSync('gpg', ['--batch', '--homedir', gnupg, '--export', 'archive@example.invalid']))
  const up = join(dir, 'archive')
  // The mirror: the release's real indexes, signed; variants broken in one way each.
  const texts: string[] = []
  for (const { repo, suite, list, index } of SUITES) {
    const text = await readList(list)
    texts.push(text)
    await writeSuite(join(up, 'good'), repo, suite, text, index)
    await writeSuite(join(up, 'broken'), repo, suite, text.replace(/\nPackage: libnfnetlink0\n[\s\S]*?\n\n/, '\n\n'), index)
    await writeSuite(join(up, 'tampered'), repo, suite, text, index, { key: 'archive', tamper: suite === 'bookworm-updates' })
    await writeSuite(join(up, 'stranger'), repo, suite, text, index, { key: suite === 'bookworm-security' ? 'stranger' : 'archive' })
    await writeSuite(join(up, 'unsigned'), repo, suite, text, index, suite === 'bookworm' ? {} : { key: 'archive' })
  }
  // ... and the real .deb files the closure takes, where the index says they are, and on
  // the snapshot service's path for the same file.
  const all = newest(SUITES.map(({ repo }, i) => parsePackages(texts[i]!, `http://deb.debian.org/${repo}`)))
  const debs = join(dir, 'debs')
  await mkdir(debs, { recursive: true })
  const wanted = closure([...NAMES, ...CONTROLLER], all)
  execFileSync('apt-get', ['download', ...wanted.map((p) => `${p.name}=${p.version}`)], { cwd: debs, stdio: 'ignore' })
  for (const f of await readdir(debs)) {
    const p = wanted.find((w) => f.startsWith(`${w.name}_`))!
    const repo = p.archive.split('/').pop()!
    const snap = join(up, 'snapshot', 'snapshot.debian.org', 'archive', repo, SNAPSHOT_TS, p.filename)
    await mkdir(join(snap, '..'), { recursive: true })
    await cp(join(debs, f), snap)
    const dest = join(up, 'good', 'deb.debian.org', repo, p.filename)
    await mkdir(join(dest, '..'), { recursive: true })
    await rename(join(debs, f), dest)
  }
  archive = await startUpstream(join(up, 'good'))

  if (!existsSync(join(ROOTFS, 'usr/bin/dpkg'))) {
    await mkdir(join(ROOTFS, '..'), { recursive: true })
    await rm(`${ROOTFS}.tmp`, { recursive: true, force: true })
    execFileSync('debootstrap', ['--variant=minbase', 'bookworm', `${ROOTFS}.tmp`, 'http://deb.debian.org/debian'], { stdio: 'ignore' })
    await rename(`${ROOTFS}.tmp`, ROOTFS)
  }

  world = await startWorld(dir, {
    realistic: true,
    manifestEdit: (t) =>
      `${t.replace('platforms: [linux/amd64, linux/arm64]', 'platforms: [linux/amd64]')}\npackages:\n  releases: [debian-12]\n  names: [${NAMES.join(', ')}]\n  controller: { names: [${CONTROLLER.join(', ')}] }\n`,
  })
  lockPath = join(dir, 'bundle.lock.json')
  const l = await bundleCli([
    'lock',
    '--manifest',
    world.manifestPath,
    '--out',
    lockPath,
    '--cache',
    join(dir, 'cache'),
    ...world.args,
    ...archiveArgs(archive.url),
  ])
  if (l.code !== 0) throw new Error(l.stderr)
  world.args.push('--mirror', `http://deb.debian.org=${archive.url}/deb.debian.org`)
  bundle = await buildUnpacked(['--lock', lockPath, '--cache', join(dir, 'cache'), '--os', 'debian-12', ...world.args], join(dir, 'out'))
}, 900_000)
afterAll(async () => {
  await world?.close()
  await archive?.close()
  await rm(dir, { recursive: true, force: true })
})

async function debianRoot(name: string): Promise<string> {
  const root = join(dir, 'roots', name)
  await mkdir(join(root, '..'), { recursive: true })
  execFileSync('cp', ['-a', ROOTFS, root])
  return root
}

const install = installInto

const installed = (root: string, pkg: string) => {
  try {
    return execFileSync('chroot', [root, 'dpkg', '-s', pkg], { encoding: 'utf8' }).includes('Status: install ok installed')
  } catch {
    return false
  }
}

describe('OS packages', () => {
  it('bundle lock pins the closure beyond what every installation has, each .deb by the sha256 the index gives', async () => {
    const lock = parseLock(await readFile(lockPath, 'utf8'))
    const names = lock.packages.map((p) => p.name)
    for (const n of [...NAMES, 'libnfnetlink0', 'libnetfilter-conntrack3', 'libxtables12', 'libip4tc2', 'libmnl0', 'libnftnl11', 'libipset13', 'libwrap0'])
      expect(names, n).toContain(n)
    for (const n of ['libc6', 'dpkg', 'coreutils', 'libselinux1']) expect(names, n).not.toContain(n)
    expect(lock.packages.length).toBeGreaterThan(0)
    // The controller's closure beside the nodes': each file once, saying who installs it.
    const uses = (name: string) => PACKAGE_USES.filter((u) => installedBy(lock.packages.find((p) => p.name === name)!, u))
    for (const n of [...CONTROLLER, 'python3-jinja2', 'python3.11']) expect(uses(n), n).toEqual(['controller'])
    for (const n of NAMES) expect(uses(n), n).toEqual(['node'])
    expect(new Set(lock.packages.map((p) => p.file)).size).toBe(lock.packages.length)
    // dpkg unpacks python3 only once python3-minimal is configured, and that once python3.11-minimal is.
    const stage = (name: string) => lock.packages.find((p) => p.name === name)!.stage ?? 0
    expect(stage('python3')).toBeGreaterThan(stage('python3-minimal'))
    expect(stage('python3-minimal')).toBeGreaterThan(stage('python3.11-minimal'))
    expect(lock.packages.every((p) => p.release === 'debian-12' && p.platform === 'linux/amd64' && p.url.startsWith('http://deb.debian.org/'))).toBe(true)
    for (const p of lock.packages) {
      const served = await readFile(join(dir, 'archive', 'good', new URL(p.url).host, new URL(p.url).pathname))
      expect(execSync('sha256sum', { input: served, encoding: 'utf8' }).split(' ')[0], p.name).toBe(p.integrity.hex)
      expect(p.snapshot).toBe(p.url.replace(/^http:\/\/deb\.debian\.org\/(debian(-security)?)\//, `https://snapshot.debian.org/archive/$1/${SNAPSHOT_TS}/`))
    }
  })

  it('a package whose dependency is missing from the index fails the lock, naming it', async () => {
    const broken = await startUpstream(join(dir, 'archive', 'broken'))
    try {
      const r = await bundleCli([
        'lock',
        '--manifest',
        world.manifestPath,
        '--out',
        join(dir, 'broken.lock.json'),
        '--cache',
        join(dir, 'cache'),
        ...world.args.slice(0, -2),
        ...archiveArgs(broken.url),
      ])
      expect(r.code).toBe(2)
      expect(r.stderr.trim().split('\n').pop()).toMatch(
        /^bundle: ENOTPINNED: debian-12 linux\/amd64: libnfnetlink0 \(needed by (conntrack|libnetfilter-conntrack3|iptables)\) is not in the release's package index/,
      )
      expect(existsSync(join(dir, 'broken.lock.json'))).toBe(false)
    } finally {
      await broken.close()
    }
  })

  it('--os picks releases; one the lock does not have is refused', async () => {
    expect(await readdir(join(bundle, 'packages'))).toEqual(['debian-12'])
    const r = await bundleCli(['build', '--lock', lockPath, '--out', join(dir, 'out2'), '--cache', join(dir, 'cache'), '--os', 'ubuntu-22.04', ...world.args])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--os ubuntu-22\.04: the lock has no packages for it \(it has debian-12\)/)
  })

  it('installs exactly the missing packages into a real Debian 12 root with dpkg; dpkg --audit is clean; a second run installs nothing', async () => {
    const root = await debianRoot('install')
    expect(installed(root, 'conntrack')).toBe(false)
    const r = await install(bundle, root, ['--role', 'worker', '--phases', 'verify,packages'])
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(r.stdout).toMatch(/\[packages\] done +OS packages for debian-12 \(\d+: \d+ to install: .*conntrack.*socat/)
    for (const p of NAMES) expect(installed(root, p), p).toBe(true)
    for (const p of CONTROLLER) expect(installed(root, p), `${p} is the controller's, not the node's`).toBe(false)
    expect(execFileSync('chroot', [root, 'dpkg', '--audit'], { encoding: 'utf8' }).trim()).toBe('')
    expect(execFileSync('chroot', [root, 'conntrack', '--version'], { encoding: 'utf8' })).toMatch(/conntrack v1\.4/)
    const again = await install(bundle, root, ['--role', 'worker', '--phases', 'verify,packages'])
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toMatch(/\[packages\] already done +OS packages for debian-12 \(\d+: all installed\)/)
  })

  it("./install controller puts ansible-core and sshpass from the bundle into a real Debian 12 root; the bundle's playbook passes ansible-playbook --syntax-check there; a second run installs nothing", async () => {
    const root = await debianRoot('controller')
    expect(existsSync(join(root, 'usr/bin/ansible-playbook'))).toBe(false)
    const dry = await install(bundle, root, ['controller', '--dry-run'])
    expect(dry.code, dry.stderr).toBe(0)
    expect(dry.stdout).toMatch(/\[controller\] would do +the controller's packages for debian-12 \(\d+: \d+ to install: .*ansible-core.*sshpass/)
    expect(existsSync(join(root, 'usr/bin/ansible-playbook'))).toBe(false)
    const r = await install(bundle, root, ['controller'])
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(r.stdout).toMatch(/\[controller\] done +the controller's packages for debian-12/)
    expect(r.stdout).toMatch(/next: .*\n.*\.\/install inventory > ~\/inventory\.yml/)
    for (const p of CONTROLLER) expect(installed(root, p), p).toBe(true)
    for (const p of NAMES) expect(installed(root, p), `${p} is the nodes', not the controller's`).toBe(false)
    expect(execFileSync('chroot', [root, 'dpkg', '--audit'], { encoding: 'utf8' }).trim()).toBe('')
    expect(execFileSync('chroot', [root, 'ansible-playbook', '--version'], { encoding: 'utf8' })).toMatch(/core 2\.1[4-9]/)
    expect(execFileSync('chroot', [root, 'sshpass', '-V'], { encoding: 'utf8' })).toMatch(/sshpass 1\./)
    // The playbook the bundle carries, as the controller's ansible reads it.
    await cp(join(bundle, 'ansible'), join(root, 'tmp/ansible'), { recursive: true })
    const check = execFileSync('chroot', [root, 'ansible-playbook', '-i', 'localhost,', '--syntax-check', '/tmp/ansible/site.yml'], {
      encoding: 'utf8',
      env: { ...process.env, HOME: '/tmp', ANSIBLE_LOCAL_TEMP: '/tmp/.ansible' },
    })
    expect(check).toMatch(/playbook: \/tmp\/ansible\/site\.yml/)
    const again = await install(bundle, root, ['controller'])
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toMatch(/\[controller\] already done +the controller's packages for debian-12 \(\d+: all installed\)/)

    await rm(join(root, 'etc/os-release'), { force: true })
    await rm(join(root, 'usr/lib/os-release'), { force: true })
    await writeFile(join(root, 'etc/os-release'), 'ID=ubuntu\nVERSION_ID="22.04"\n')
    const other = await install(bundle, root, ['controller'])
    expect(other.code).toBe(2)
    expect(other.stderr.trim()).toMatch(
      /^install: EUSAGE: this machine runs ubuntu-22\.04; the bundle carries the controller's packages for debian-12: run the playbook from a machine of one of those, or use a bundle whose manifest lists ubuntu-22\.04 under packages\.controller\.releases; the full log: /,
    )
  })

  it('a tampered .deb is refused by verify before dpkg runs; a release the bundle lacks is named', async () => {
    const copy = join(dir, 'tampered', 'kube-airgap-v1.29.3-linux-amd64')
    await cp(bundle, copy, { recursive: true })
    const deb = (await readdir(join(copy, 'packages/debian-12'))).find((f) => f.startsWith('conntrack_'))!
    const bytes = await readFile(join(copy, 'packages/debian-12', deb))
    bytes[bytes.length - 100] = bytes[bytes.length - 100]! ^ 1
    await writeFile(join(copy, 'packages/debian-12', deb), bytes)
    const root = await debianRoot('tampered')
    const r = await install(copy, root, ['--role', 'worker', '--phases', 'verify,packages'])
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n').pop()).toMatch(new RegExp(`^install: EVERIFY: .*packages/debian-12/${deb.replace(/[.+]/g, '\\$&')}: changed`))
    expect(installed(root, 'conntrack')).toBe(false)

    // /etc/os-release is a link to /usr/lib/os-release on Debian: replace both.
    await rm(join(root, 'etc/os-release'), { force: true })
    await rm(join(root, 'usr/lib/os-release'), { force: true })
    await writeFile(join(root, 'etc/os-release'), 'ID=ubuntu\nVERSION_ID="22.04"\n')
    const other = await install(bundle, root, ['--role', 'worker', '--phases', 'packages'])
    expect(other.code).toBe(2)
    expect(other.stderr.trim()).toMatch(
      /^install: EUSAGE: this node runs ubuntu-22\.04; the bundle carries OS packages for debian-12: use a bundle whose manifest lists ubuntu-22\.04 under packages\.releases, or run with --skip-phases packages/,
    )
  })

  it('reads the archive the way apt does: a tampered index, a Release signed by another key and an unsigned Release each fail the lock in one line naming the suite', async () => {
    const cases: [string, RegExp][] = [
      [
        'tampered',
        /^bundle: EINTEGRITY: debian-12 bookworm-updates main\/binary-amd64\/Packages\.gz \(against the signed Release\) from http:\/\/\S+: expected sha256/,
      ],
      ['stranger', /^bundle: ESIGNATURE: debian-12 bookworm-security: InRelease is not signed by the release's archive key/],
      ['unsigned', /^bundle: ESIGNATURE: debian-12 bookworm: Release is not signed \(no InRelease, no Release\.gpg\)/],
    ]
    for (const [root, message] of cases) {
      const bad = await startUpstream(join(dir, 'archive', root))
      try {
        const out = join(dir, `${root}.lock.json`)
        const r = await bundleCli([
          'lock',
          '--manifest',
          world.manifestPath,
          '--out',
          out,
          '--cache',
          join(dir, 'cache'),
          ...world.args.slice(0, -2),
          ...archiveArgs(bad.url),
        ])
        expect(r.code, root).toBe(1)
        expect(r.stderr.trim().split('\n').pop(), root).toMatch(message)
        expect(existsSync(out), root).toBe(false)
      } finally {
        await bad.close()
      }
    }
    // Without the mirror's key, the genuine-looking archive is refused too.
    const r = await bundleCli([
      'lock',
      '--manifest',
      world.manifestPath,
      '--out',
      join(dir, 'nokey.lock.json'),
      '--cache',
      join(dir, 'cache'),
      ...world.args.slice(0, -2),
      '--mirror',
      `http://deb.debian.org=${archive.url}/deb.debian.org`,
    ])
    expect(r.stderr.trim().split('\n').pop()).toMatch(
      /^bundle: ESIGNATURE: debian-12 bookworm: InRelease is not signed by the release's archive key \(NO_PUBKEY/,
    )
  })

  it('falls back to the snapshot service when the pool has dropped a pin, still checking the pinned sha256', async () => {
    const gone = await startUpstream(join(dir, 'archive', 'unsigned')) // serves no .deb at all: every pool URL is a 404
    const snap = await startUpstream(join(dir, 'archive', 'snapshot'))
    try {
      const args = [
        ...world.args.slice(0, -2),
        '--mirror',
        `http://deb.debian.org=${gone.url}/deb.debian.org`,
        '--mirror',
        `https://snapshot.debian.org=${snap.url}/snapshot.debian.org`,
      ]
      const r = await bundleCli(['build', '--lock', lockPath, '--out', join(dir, 'out-snap'), '--cache', join(dir, 'cache-snap'), '--os', 'debian-12', ...args])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stderr).toMatch(/gone from the pool, fetching it from the snapshot service/)
      expect(snap.log.filter((l) => l.path.endsWith('.deb') && l.status === 200).length).toBe(parseLock(await readFile(lockPath, 'utf8')).packages.length)
      // A snapshot that serves other bytes is refused by the pin.
      const deb = snap.log.find((l) => l.path.includes('/conntrack_'))!.path
      snap.fault(deb, { kind: 'wrong-bytes' })
      const w = await bundleCli([
        'build',
        '--lock',
        lockPath,
        '--out',
        join(dir, 'out-snap2'),
        '--cache',
        join(dir, 'cache-snap2'),
        '--os',
        'debian-12',
        ...args,
      ])
      expect(w.code).toBe(1)
      expect(w.stderr.trim().split('\n').pop()).toMatch(/^bundle: EINTEGRITY: debian-12 package conntrack .*expected sha256/)
    } finally {
      await gone.close()
      await snap.close()
    }
  })

  it.skipIf(!DEBIAN_REACHABLE)(
    "locks against the real Debian 12 archive through --mirror, its InRelease checked against Debian's keyring",
    async () => {
      const out = join(dir, 'real.lock.json')
      const r = await bundleCli([
        'lock',
        '--manifest',
        world.manifestPath,
        '--out',
        out,
        '--cache',
        join(dir, 'cache'),
        ...world.args.slice(0, -2),
        '--mirror',
        'http://deb.debian.org=http://deb.debian.org',
      ])
      expect(r.code, r.stderr).toBe(0)
      const lock = parseLock(await readFile(out, 'utf8'))
      for (const n of NAMES)
        expect(
          lock.packages.map((p) => p.name),
          n,
        ).toContain(n)
      expect(lock.packages.length).toBeGreaterThan(0)
      expect(
        lock.packages.every(
          (p) => /^http:\/\/deb\.debian\.org\/debian(-security)?\/pool\//.test(p.url) && p.snapshot?.startsWith('https://snapshot.debian.org/archive/'),
        ),
      ).toBe(true)
    },
    300_000,
  )

  it.skipIf(!DEBIAN_REACHABLE)(
    "the committed default lock's debian-12 set installs into a fresh debootstrap minbase root: conntrack and socat run, dpkg --audit is clean, a second run installs nothing; its controller set brings ansible-playbook",
    async () => {
      const committed = parseLock(await readFile(join(REPO, 'bundle.lock.json'), 'utf8'))
      const lock = parseLock(await readFile(lockPath, 'utf8'))
      lock.packages = committed.packages.filter((p) => p.release === 'debian-12' && p.platform === 'linux/amd64')
      expect(lock.packages.length).toBeGreaterThan(NAMES.length)
      const mixed = join(dir, 'default-set.lock.json')
      await writeFile(mixed, serializeLock(lock))
      // The .debs from Debian's real archive (world.args send nothing else there).
      const r = await bundleCli(['build', '--lock', mixed, '--out', join(dir, 'out-default'), '--cache', join(dir, 'cache'), ...world.args.slice(0, -2)])
      expect(r.code, r.stderr).toBe(0)
      execFileSync('tar', ['xf', 'kube-airgap-v1.29.3-linux-amd64.tar'], { cwd: join(dir, 'out-default') })
      const b = join(dir, 'out-default', 'kube-airgap-v1.29.3-linux-amd64')
      const root = await debianRoot('default-set')
      const first = await install(b, root, ['--role', 'worker', '--phases', 'verify,packages'])
      expect(first.code, first.stderr + first.stdout).toBe(0)
      expect(execFileSync('chroot', [root, 'conntrack', '--version'], { encoding: 'utf8' })).toMatch(/conntrack v1\.4/)
      expect(execFileSync('chroot', [root, 'socat', '-V'], { encoding: 'utf8' })).toMatch(/socat version 1\.7/)
      expect(execFileSync('chroot', [root, 'dpkg', '--audit'], { encoding: 'utf8' }).trim()).toBe('')
      const again = await install(b, root, ['--role', 'worker', '--phases', 'verify,packages'])
      expect(again.stdout).toMatch(/\[packages\] already done +OS packages for debian-12 \(\d+: all installed\)/)
      // The controller's set from the same lock, as Debian's archive serves it: the bundle's playbook reads in its ansible.
      const ctl = await install(b, root, ['controller'])
      expect(ctl.code, ctl.stderr + ctl.stdout).toBe(0)
      expect(execFileSync('chroot', [root, 'ansible-playbook', '--version'], { encoding: 'utf8' })).toMatch(/core 2\.14\./)
      expect(execFileSync('chroot', [root, 'dpkg', '--audit'], { encoding: 'utf8' }).trim()).toBe('')
    },
    300_000,
  )

  it('preflight says exactly what to do when kubeadm needs commands the node lacks and the bundle carries nothing for its release', async () => {
    const root = await mkdtemp(join(dir, 'bare-'))
    await mkdir(join(root, 'etc'))
    await writeFile(join(root, 'etc/os-release'), 'ID=ubuntu\nVERSION_ID="22.04"\n')
    // A PATH with a shell and nothing else: conntrack, socat and the rest are missing.
    const path = join(dir, 'bare-path')
    await mkdir(path, { recursive: true })
    await rm(join(path, 'sh'), { force: true })
    await symlink('/bin/sh', join(path, 'sh'))
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const c = spawn(
        process.execPath,
        [join(bundle, 'installer/install.mjs'), '--bundle', bundle, '--role', 'worker', '--phases', 'preflight', '--root', root],
        { env: { PATH: path }, stdio: ['ignore', 'ignore', 'pipe'] },
      )
      let stderr = ''
      c.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
      c.on('close', (code) => resolve({ code, stderr }))
    })
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(
      /FAIL {2}host commands: conntrack.* not found.*this node runs ubuntu-22\.04; the bundle carries OS packages for debian-12\. Either:\n {2}1\. build a bundle with ubuntu-22\.04 in the manifest's packages\.releases \(bundle lock, then bundle build\), or\n {2}2\. install conntrack/,
    )
  })
})
