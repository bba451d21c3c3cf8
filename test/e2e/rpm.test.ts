import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { rpmClosure, type RpmPackage } from '../../builder/packages/rpm.js'
import { compareEvr, rpmvercmp } from '../../bundle/rpm-version.js'
import { parseLock } from '../../bundle/lock.js'
import { releaseId } from '../../bundle/os-release.js'
import { buildUnpacked, bundleCli, installInto } from '../support/cli.js'
import { freshNodeRoot, recordedRun, writeStandins } from '../support/standins.js'
import { buildRpms, comps, writeRepo, type RpmSpec } from '../support/rpm-repo.js'
import { startUpstream, type Upstream } from '../support/upstream.js'
import { startWorld, type World } from '../support/world.js'

/**
 * RPM-family OS packages end to end: packages made with the real rpmbuild, in the shapes
 * Rocky 9's have (a library by soname, a virtual provide, a file provide, versioned and
 * arch-qualified requirements, an epoch, a rich dependency, multilib noise), served as
 * Rocky 9's BaseOS and AppStream in the real layout with createrepo_c repodata and a
 * repomd.xml.asc made by gpg; `bundle lock` pins the closure, the bundle installs it with
 * the real rpm into a root made with `rpm --initdb --root`.
 */
const ROCKY = 'https://dl.rockylinux.org/pub/rocky/9'
/** A package as primary.xml would list it, for the resolver's own tests. */
const pkg = (name: string, requires: string[]): RpmPackage => ({
  name,
  arch: 'x86_64',
  evr: '1-1',
  sha256: '0'.repeat(64),
  size: 1,
  href: `${name}.rpm`,
  provides: [],
  requires: requires.map((r) => ({ name: r })),
  files: [],
  repo: 'r',
})
/**
 * The RPM rows' real repositories: each is locked against (through --mirror to itself,
 * repomd.xml checked against the shipped key) when this machine reaches it, and skipped,
 * saying why, when it does not. Probed once, in parallel, at load. AlmaLinux 8 and openEuler
 * are left out: their keys are not shipped (manifests/keyrings/README.md).
 */
const REAL: { release: string; probe: string; expect: string[] }[] = [
  { release: 'rocky-8', probe: 'https://dl.rockylinux.org/pub/rocky/8/BaseOS/x86_64/os/repodata/repomd.xml', expect: ['conntrack-tools', 'socat'] },
  { release: 'rocky-9', probe: `${ROCKY}/BaseOS/x86_64/os/repodata/repomd.xml`, expect: ['conntrack-tools', 'socat', 'iptables-nft'] },
  {
    release: 'almalinux-9',
    probe: 'https://repo.almalinux.org/almalinux/9/BaseOS/x86_64/os/repodata/repomd.xml',
    expect: ['conntrack-tools', 'socat', 'iptables-nft'],
  },
  {
    release: 'kylin-v10sp3',
    probe: 'https://update.cs2c.com.cn/NS/V10/V10SP3/os/adv/lic/base/x86_64/repodata/repomd.xml',
    expect: ['conntrack-tools', 'socat'],
  },
]
const reachable = await Promise.all(
  REAL.map((r) =>
    fetch(r.probe, { method: 'HEAD', signal: AbortSignal.timeout(10_000) }).then(
      (res) => res.ok,
      () => false,
    ),
  ),
)
for (const [i, r] of REAL.entries())
  if (!reachable[i])
    console.log(`rpm.test.ts: ${new URL(r.probe).origin} is not reachable from here: the lock of ${r.release} against its real repositories is skipped`)

const NAMES = ['conntrack', 'socat', 'ebtables', 'ethtool', 'ipset', 'iptables', 'container-selinux']
const CORE = ['glibc', 'bash', 'openssl-libs', 'selinux-policy']
const EL = '.el9'
const lib = (name: string, version: string, soname: string, requires: string[] = []): RpmSpec => ({
  name,
  version,
  release: `1${EL}`,
  provides: [`${soname}()(64bit)`],
  requires: ['libc.so.6()(64bit)', ...requires],
})
const BASEOS: RpmSpec[] = [
  { name: 'glibc', version: '2.34', release: `100${EL}`, provides: ['libc.so.6()(64bit)', 'libc.so.6(GLIBC_2.34)(64bit)'] },
  // Multilib noise: the i686 build of the same name is never the x86_64 node's.
  { name: 'glibc', version: '2.34', release: `101${EL}`, arch: 'i686', provides: ['libc.so.6', 'libc.so.6(GLIBC_2.34)'] },
  { name: 'bash', version: '5.1.8', release: `9${EL}`, provides: ['/bin/sh'], requires: ['libc.so.6()(64bit)'], files: ['/usr/bin/bash'] },
  lib('openssl-libs', '3.0.7', 'libssl.so.3'),
  { name: 'selinux-policy', version: '38.1.35', release: `2${EL}`, arch: 'noarch', files: ['/etc/selinux/config.example'] },
  lib('libmnl', '1.0.3', 'libmnl.so.0'),
  lib('libmnl', '1.0.4', 'libmnl.so.0'),
  lib('libnfnetlink', '1.0.1', 'libnfnetlink.so.0'),
  lib('libnetfilter_conntrack', '1.0.9', 'libnetfilter_conntrack.so.3', ['libnfnetlink.so.0()(64bit)', 'libmnl.so.0()(64bit)']),
  {
    name: 'conntrack-tools',
    version: '1.4.7',
    release: `2${EL}`,
    requires: ['libnetfilter_conntrack.so.3()(64bit)', 'libmnl >= 1.0.4', '/bin/sh'],
    files: ['/usr/sbin/conntrack'],
  },
  { name: 'alternatives', version: '1.24', release: `1${EL}`, requires: ['libc.so.6()(64bit)'], files: ['/usr/sbin/alternatives'] },
  {
    name: 'iptables-libs',
    version: '1.8.10',
    release: `4${EL}`,
    provides: ['libxtables.so.12()(64bit)', `iptables-libs(x86-64) = 1.8.10-4${EL}`],
    requires: ['libc.so.6()(64bit)'],
  },
  {
    name: 'iptables-nft',
    version: '1.8.10',
    release: `4${EL}`,
    provides: [`iptables = 1.8.10-4${EL}`, `ebtables = 1.8.10-4${EL}`],
    requires: [`iptables-libs(x86-64) = 1.8.10-4${EL}`, 'libxtables.so.12()(64bit)', '/usr/sbin/alternatives', '(nftables if firewalld)'],
    files: ['/usr/sbin/iptables-nft'],
  },
  lib('ipset-libs', '7.11', 'libipset.so.13', ['libmnl.so.0()(64bit)']),
  { name: 'ipset', version: '7.11', release: `1${EL}`, requires: [`ipset-libs(x86-64) = 7.11-1${EL}`, 'libipset.so.13()(64bit)'], files: ['/usr/sbin/ipset'] },
  { name: 'ethtool', epoch: 2, version: '6.2', release: `1${EL}`, requires: ['libmnl.so.0()(64bit)'], files: ['/usr/sbin/ethtool'] },
]
const APPSTREAM: RpmSpec[] = [
  // noarch, an epoch, a requirement the core group meets by version, and a conditional one whose condition is absent.
  {
    name: 'container-selinux',
    epoch: 3,
    version: '2.229.0',
    release: `1${EL}`,
    arch: 'noarch',
    requires: ['selinux-policy >= 38.1.23', '(selinux-policy-targeted if selinux-policy-targeted)'],
    files: ['/usr/share/selinux/packages/container.pp.bz2'],
  },
  { name: 'socat', version: '1.7.4.1', release: `5${EL}`, requires: ['libc.so.6(GLIBC_2.34)(64bit)', '(openssl-libs or libressl)'], files: ['/usr/bin/socat'] },
  // Modular builds (EL8's container-selinux is modular only): the default stream's, and a newer one of another stream.
  ...(['2.230.0-1.module+el9.4.0+100+aaaa1111', '2.232.0-1.module+el9.4.0+200+bbbb2222'] as const).map((vr) => ({
    name: 'container-selinux',
    epoch: 3,
    version: vr.split('-')[0]!,
    release: vr.split('-')[1]!,
    arch: 'noarch' as const,
    requires: ['selinux-policy >= 38.1.23'],
    files: ['/usr/share/selinux/packages/container.pp.bz2'],
  })),
]
/**
 * AppStream's modules.yaml as dnf reads it: container-tools with rhel9 as its default stream
 * (modulemd-defaults) in two versions, the newer one's build the one to pick, and a devel
 * stream nobody enabled, whose newer build must stay hidden.
 */
const MODULES = [
  ['rhel9', 1, '2.229.9-1.module+el9.4.0+50+00000000'],
  ['rhel9', 2, '2.230.0-1.module+el9.4.0+100+aaaa1111'],
  ['devel', 3, '2.232.0-1.module+el9.4.0+200+bbbb2222'],
]
  .map(
    ([stream, version, vr]) =>
      `---\ndocument: modulemd\nversion: 2\ndata:\n  name: container-tools\n  stream: "${stream}"\n  version: ${version}\n  context: 20125149\n  arch: x86_64\n  summary: test\n  description: test\n  license:\n    module: [MIT]\n  artifacts:\n    rpms:\n    - container-selinux-3:${vr}.noarch\n    - container-selinux-3:${vr}.src\n...\n`,
  )
  .concat('---\ndocument: modulemd-defaults\nversion: 1\ndata:\n  module: container-tools\n  stream: rhel9\n...\n')
  .join('')
const CLOSURE = [
  'alternatives',
  'conntrack-tools',
  'container-selinux',
  'ethtool',
  'ipset',
  'ipset-libs',
  'iptables-libs',
  'iptables-nft',
  'libmnl',
  'libnetfilter_conntrack',
  'libnfnetlink',
  'socat',
]

let dir: string
let gnupg: string
let keyring: string
let world: World
let archive: Upstream
let lockPath: string
let bundle: string
let rpms: Map<string, string>

const gpg = (args: string[]) => execFileSync('gpg', ['--batch', '--homedir', gnupg, ...args], { stdio: ['ignore', 'pipe', 'ignore'] })
const mirror = (url: string) => ['--mirror', `https://dl.rockylinux.org=${url}/dl.rockylinux.org`]
type Compress = 'gz' | 'xz' | 'bz2' | 'zstd'
/**
 * One variant of the mirror: BaseOS and AppStream, each broken in at most one way;
 * `compress` is their primary.xml's (gz, and zstd as createrepo_c 1.0 and later write it).
 */
async function variant(
  name: string,
  o: { key?: string; signedAt?: string; drop?: string[]; tamper?: boolean; compress?: [Compress, Compress] } = {},
): Promise<string> {
  const root = join(dir, 'archive', name)
  const at = (repo: string) => join(root, 'dl.rockylinux.org', 'pub/rocky/9', repo, 'x86_64', 'os')
  const key = 'key' in o ? o.key : 'archive'
  const sign = { gnupg, ...(key ? { key } : {}), ...(o.signedAt ? { signedAt: o.signedAt } : {}) }
  await writeRepo(at('BaseOS'), builtFor(BASEOS, o.drop), { comps: comps(CORE), ...sign, compress: o.compress?.[0] ?? 'gz' })
  await writeRepo(at('AppStream'), builtFor(APPSTREAM), { ...sign, modules: MODULES, compress: o.compress?.[1] ?? 'zstd' })
  // The point release the tree is, as Rocky's .treeinfo (productmd) says it; [header]'s version is the format's.
  for (const repo of ['BaseOS', 'AppStream'])
    await writeFile(
      join(at(repo), '.treeinfo'),
      `[header]\ntype = productmd.treeinfo\nversion = 1.2\n\n[release]\nname = Rocky Linux\nshort = Rocky\nversion = 9.4\n\n[tree]\narch = x86_64\n`,
    )
  if (o.tamper) {
    const primary = (await readdir(join(at('BaseOS'), 'repodata'))).find((f) => f.startsWith('primary.xml'))!
    const bytes = await readFile(join(at('BaseOS'), 'repodata', primary))
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 1
    await writeFile(join(at('BaseOS'), 'repodata', primary), bytes)
  }
  return root
}

/** The built .rpm of every spec (both libmnl versions: the resolver must pick the newer), less `drop` (name-version). */
const builtFor = (specs: RpmSpec[], drop: string[] = []) =>
  specs
    .filter((s) => !drop.includes(`${s.name}-${s.version}`))
    .map((s) => join(dir, 'rpmbuild', 'RPMS', s.arch ?? 'x86_64', `${s.name}-${s.version}-${s.release}.${s.arch ?? 'x86_64'}.rpm`))

const lock = (out: string, args: string[]) => bundleCli(['lock', '--manifest', world.manifestPath, '--out', out, '--cache', join(dir, 'cache'), ...args])

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-rpm-'))
  gnupg = join(dir, 'gnupg')
  await mkdir(gnupg, { mode: 0o700 })
  for (const who of ['archive', 'stranger'])
    gpg(['--passphrase', '', '--quick-gen-key', `${who} (kube-airgap test) <${who}@example.invalid>`, 'ed25519', 'sign', 'never'])
  // A key that expired in 2020, trusted all the same: apt refuses what it signs, and so must the lock.
  gpg([
    '--faked-system-time',
    '20200101T000000',
    '--passphrase',
    '',
    '--quick-gen-key',
    'expired (kube-airgap test) <expired@example.invalid>',
    'ed25519',
    'sign',
    '1d',
  ])
  keyring = join(dir, 'test-archive.gpg')
  await writeFile(keyring, gpg(['--export', 'archive@example.invalid', 'expired@example.invalid']))
  rpms = await buildRpms(join(dir, 'rpmbuild'), [...BASEOS, ...APPSTREAM])
  await variant('good')
  archive = await startUpstream(join(dir, 'archive', 'good'))
  world = await startWorld(dir, {
    realistic: true,
    manifestEdit: (t) =>
      `${t.replace('platforms: [linux/amd64, linux/arm64]', 'platforms: [linux/amd64]')}\npackages:\n  releases: [rocky-9]\n  names: [${NAMES.join(', ')}]\n`,
  })
  lockPath = join(dir, 'bundle.lock.json')
  const l = await lock(lockPath, [...world.args, ...mirror(archive.url), '--keyring', keyring])
  if (l.code !== 0) throw new Error(l.stderr)
  bundle = await buildUnpacked(['--lock', lockPath, '--cache', join(dir, 'cache'), ...world.args, ...mirror(archive.url)], join(dir, 'out'))
}, 900_000)
afterAll(async () => {
  await world?.close()
  await archive?.close()
  await rm(dir, { recursive: true, force: true })
})

/** A root as a minimal Rocky 9 installation has it: an rpm database holding the core group, and its os-release. */
async function rockyRoot(name: string): Promise<string> {
  const root = join(dir, 'roots', name)
  await mkdir(join(root, 'etc'), { recursive: true })
  await writeFile(join(root, 'etc/os-release'), 'NAME="Rocky Linux"\nVERSION="9.4 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n')
  execFileSync('rpm', ['--root', root, '--initdb'])
  execFileSync('rpm', ['--root', root, '-U', ...CORE.map((n) => rpms.get(`${n}.x86_64`) ?? rpms.get(`${n}.noarch`)!)], { stdio: 'ignore' })
  return root
}

/** Which of `names` the root's rpm database holds (rpm -q exits 1 when any is missing). */
const rpmQ = (root: string, names: string[]) =>
  spawnSync('rpm', ['--root', root, '-q', '--qf', '%{NAME}\\n', ...names], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter((l) => l && !l.startsWith('package '))

const install = installInto

describe('RPM-family OS packages', () => {
  it('bundle lock pins exactly the closure beyond the core group, each .rpm by the sha256 the signed repodata gives', async () => {
    const l = parseLock(await readFile(lockPath, 'utf8'))
    expect(l.packages.map((p) => p.name)).toEqual(CLOSURE)
    const byName = new Map(l.packages.map((p) => [p.name, p]))
    expect(byName.get('libmnl')!.version).toBe(`1.0.4-1${EL}`)
    expect(byName.get('ethtool')!.version).toBe(`2:6.2-1${EL}`)
    // The default stream's newest build, not the non-modular one it hides nor another stream's newer one.
    expect(byName.get('container-selinux')!.version).toBe('3:2.230.0-1.module+el9.4.0+100+aaaa1111')
    expect(byName.get('socat')!.url).toBe(`${ROCKY}/AppStream/x86_64/os/Packages/s/socat-1.7.4.1-5${EL}.x86_64.rpm`)
    // Where 9.4's tree goes once 9.5 is out: the vault, by the point release .treeinfo names.
    expect(byName.get('socat')!.snapshot).toBe(`https://dl.rockylinux.org/vault/rocky/9.4/AppStream/x86_64/os/Packages/s/socat-1.7.4.1-5${EL}.x86_64.rpm`)
    for (const p of l.packages) {
      expect(p.release).toBe('rocky-9')
      const served = await readFile(join(dir, 'archive', 'good', p.url.replace('https://', '')))
      expect(execFileSync('sha256sum', { input: served, encoding: 'utf8' }).split(' ')[0], p.name).toBe(p.integrity.hex)
      expect(p.size).toBe(served.length)
    }
    expect(await readdir(join(bundle, 'packages'))).toEqual(['rocky-9'])
  })

  it('a tampered primary.xml, a repomd.xml signed by another key, by an expired key, or not at all, and a missing or too old dependency each fail the lock in one line naming the cause', async () => {
    const cases: [string, Parameters<typeof variant>[1], number, RegExp][] = [
      [
        'tampered',
        { tamper: true },
        1,
        /^bundle: EINTEGRITY: rocky-9 BaseOS repodata\/primary\.xml\.gz \(against the signed repomd\.xml\) from http:\/\/\S+: expected sha256/,
      ],
      ['stranger', { key: 'stranger' }, 1, /^bundle: ESIGNATURE: rocky-9 (BaseOS|AppStream): repomd\.xml is not signed by the release's archive key/],
      ['unsigned', { key: undefined }, 1, /^bundle: ESIGNATURE: rocky-9 (BaseOS|AppStream): repomd\.xml is not signed \(no repomd\.xml\.asc\)/],
      [
        'expired',
        { key: 'expired', signedAt: '20200101T010000' },
        1,
        /^bundle: ESIGNATURE: rocky-9 (BaseOS|AppStream): repomd\.xml is not signed by the release's archive key \(EXPKEYSIG [0-9A-F]+ expired/,
      ],
      [
        'missing',
        { drop: ['libnfnetlink-1.0.1'], compress: ['xz', 'xz'] },
        2,
        /^bundle: ENOTPINNED: rocky-9 linux\/amd64: libnfnetlink\.so\.0\(\)\(64bit\) \(needed by libnetfilter_conntrack\) is not in the release's repositories/,
      ],
      [
        'old',
        { drop: ['libmnl-1.0.4'], compress: ['bz2', 'bz2'] },
        2,
        /^bundle: ENOTPINNED: rocky-9 linux\/amd64: libmnl >= 1\.0\.4 \(needed by conntrack-tools\) is not in the release's repositories; the repositories have libmnl 1\.0\.3-1\.el9/,
      ],
    ]
    for (const [name, o, code, message] of cases) {
      const bad = await startUpstream(await variant(name, o))
      try {
        const out = join(dir, `${name}.lock.json`)
        const r = await lock(out, [...world.args, ...mirror(bad.url), '--keyring', keyring])
        expect(r.stderr.trim().split('\n').pop(), name).toMatch(message)
        expect(r.code, name).toBe(code)
        expect(existsSync(out), name).toBe(false)
      } finally {
        await bad.close()
      }
    }
    // Without the test key, the genuine-looking repositories are refused: Rocky's own key did not sign them.
    const r = await lock(join(dir, 'nokey.lock.json'), [...world.args, ...mirror(archive.url)])
    expect(r.stderr.trim().split('\n').pop()).toMatch(/^bundle: ESIGNATURE: rocky-9 (BaseOS|AppStream): repomd\.xml is not signed by the release's archive key/)
  })

  it('installs exactly the missing packages into an rpm --initdb root with the real rpm; rpm -V is clean; a second run installs nothing', async () => {
    const root = await rockyRoot('install')
    // One of the set is there already (the operator installed it, and changed its file since): left as it is, and not the bundle's to verify.
    execFileSync('rpm', ['--root', root, '-U', rpms.get('alternatives.x86_64')!], { stdio: 'ignore' })
    await writeFile(join(root, 'usr/sbin/alternatives'), 'the site changed this\n')
    const r = await install(bundle, root, ['--role', 'worker', '--phases', 'verify,packages'])
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(r.stdout).toMatch(
      /\[packages\] done +OS packages for rocky-9 \(12: 11 to install: conntrack-tools, container-selinux, ethtool, ipset, ipset-libs, iptables-libs, iptables-nft, libmnl, libnetfilter_conntrack, libnfnetlink, socat\)/,
    )
    expect(rpmQ(root, CLOSURE)).toEqual(CLOSURE)
    expect(await readFile(join(root, 'usr/sbin/conntrack'), 'utf8')).toBe('conntrack-tools\n')
    expect(execFileSync('rpm', ['--root', root, '-V', ...CLOSURE.filter((n) => n !== 'alternatives')], { encoding: 'utf8' }).trim()).toBe('')
    expect(spawnSync('rpm', ['--root', root, '-V', 'alternatives'], { encoding: 'utf8' }).stdout).toMatch(/^S\.5.* \/usr\/sbin\/alternatives$/m)
    const again = await install(bundle, root, ['--role', 'worker', '--phases', 'verify,packages'])
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toMatch(/\[packages\] already done +OS packages for rocky-9 \(12: all installed\)/)
  })

  it('an older dependency already on the node is not counted as installed: it is upgraded to the pin, and the rest installs', async () => {
    const root = await rockyRoot('older')
    // libmnl 1.0.3 from an earlier install; the locked conntrack-tools needs libmnl >= 1.0.4.
    execFileSync('rpm', ['--root', root, '-U', join(dir, 'rpmbuild', 'RPMS', 'x86_64', `libmnl-1.0.3-1${EL}.x86_64.rpm`)], { stdio: 'ignore' })
    const r = await install(bundle, root, ['--role', 'worker', '--phases', 'verify,packages'])
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(r.stdout).toMatch(/\[packages\] done +OS packages for rocky-9 \(12: 12 to install: .*\blibmnl\b/)
    expect(execFileSync('rpm', ['--root', root, '-q', '--qf', '%{VERSION}', 'libmnl'], { encoding: 'utf8' })).toBe('1.0.4')
    expect(rpmQ(root, CLOSURE)).toEqual(CLOSURE)
    const again = await install(bundle, root, ['--role', 'worker', '--phases', 'verify,packages'])
    expect(again.stdout).toMatch(/\[packages\] already done +OS packages for rocky-9 \(12: all installed\)/)
  })

  it('once the next point release moves 9.4 to the vault, a build from the same lock fetches each .rpm there, against the same pin', async () => {
    const moved = join(dir, 'archive', 'moved', 'dl.rockylinux.org')
    await mkdir(join(moved, 'vault/rocky'), { recursive: true })
    await cp(join(dir, 'archive', 'good', 'dl.rockylinux.org', 'pub/rocky/9'), join(moved, 'vault/rocky/9.4'), { recursive: true })
    const vault = await startUpstream(join(dir, 'archive', 'moved'))
    try {
      const b = await bundleCli([
        'build',
        '--lock',
        lockPath,
        '--out',
        join(dir, 'out-moved'),
        '--cache',
        join(dir, 'cache-moved'),
        ...world.args,
        ...mirror(vault.url),
      ])
      expect(b.code, b.stderr).toBe(0)
      const notes = (b.stdout + b.stderr).split('\n').filter((l) => /^moved +/.test(l))
      expect(notes).toHaveLength(CLOSURE.length)
      expect(notes[0]).toMatch(/gone from the pool, fetching it from the snapshot service or vault at dl\.rockylinux\.org \(the same pin\)$/)
    } finally {
      await vault.close()
    }
  })

  it('a tampered .rpm is refused by verify before rpm runs', async () => {
    const copy = join(dir, 'tampered', 'kube-airgap-v1.29.3-linux-amd64')
    await cp(bundle, copy, { recursive: true })
    const file = (await readdir(join(copy, 'packages/rocky-9'))).find((f) => f.startsWith('conntrack-tools-'))!
    const bytes = await readFile(join(copy, 'packages/rocky-9', file))
    bytes[bytes.length - 100] = bytes[bytes.length - 100]! ^ 1
    await writeFile(join(copy, 'packages/rocky-9', file), bytes)
    const root = await rockyRoot('tampered')
    const r = await install(copy, root, ['--role', 'worker', '--phases', 'verify,packages'])
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n').pop()).toMatch(new RegExp(`^install: EVERIFY: .*packages/rocky-9/${file.replace(/[.+]/g, '\\$&')}: changed`))
    expect(rpmQ(root, ['glibc', 'conntrack-tools'])).toEqual(['glibc'])
  })

  it('preflight counts what the bundle brings for the node in its RPM names, and says how to get the rest with dnf or rpm', async () => {
    const root = await rockyRoot('preflight')
    // A PATH with a shell and nothing else: conntrack and iptables come with the bundle's set, ip, mount and nsenter do not.
    const path = join(dir, 'bare-path')
    await mkdir(path, { recursive: true })
    await rm(join(path, 'sh'), { force: true })
    await symlink('/bin/sh', join(path, 'sh'))
    const r = spawnSync(
      process.execPath,
      [join(bundle, 'installer/install.mjs'), '--bundle', bundle, '--role', 'worker', '--phases', 'preflight', '--root', root],
      {
        env: { PATH: path },
        encoding: 'utf8',
      },
    )
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/FAIL {2}host commands: ip, mount, nsenter not found/)
    expect(r.stderr).toMatch(
      /not found: kubeadm stops with \[ERROR FileExisting-ip\]; the bundle's OS packages for rocky-9 do not bring them: install iproute util-linux by other means \(a local repository: dnf install iproute util-linux; or their \.rpm files with rpm -i\)/,
    )
  })

  it("selinux: keep on an enforcing node: the bundle's container-selinux satisfies preflight, the packages phase installs its policy, SELinux stays enforcing", async () => {
    const root = await rockyRoot('keep')
    await freshNodeRoot(root)
    await mkdir(join(root, 'etc/selinux'), { recursive: true })
    await writeFile(join(root, 'etc/selinux/config'), 'SELINUX=enforcing\nSELINUXTYPE=targeted\n')
    await mkdir(join(root, '.selinux'))
    await writeFile(join(root, '.selinux/mode'), 'Enforcing\n')
    const config = join(dir, 'keep.yaml')
    await writeFile(config, 'selinux: keep\n')
    const standins = await writeStandins(join(dir, 'standins'))
    const r = await recordedRun(
      join(bundle, 'install'),
      ['--role', 'worker', '--phases', 'preflight,packages,kernel', '--config', config, '--root', root, '--host-commands', standins],
      { PATH: `${standins}:${process.env.PATH}`, KA_ROOT: root },
      join(dir, 'keep.record'),
    )
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(existsSync(join(root, 'usr/share/selinux/packages/container.pp.bz2'))).toBe(true)
    expect(await readFile(join(root, '.selinux/mode'), 'utf8')).toBe('Enforcing\n')
    expect(await readFile(join(root, 'etc/selinux/config'), 'utf8')).toBe('SELINUX=enforcing\nSELINUXTYPE=targeted\n')
    expect(r.record.filter((l) => l.startsWith('setenforce'))).toEqual([])
  })

  for (const [i, real] of REAL.entries())
    it.skipIf(!reachable[i])(
      `locks ${real.release} against its real repositories through --mirror, repomd.xml checked against the shipped key`,
      async () => {
        const manifest = join(dir, `${real.release}.yaml`)
        await writeFile(manifest, world.manifestText.replace('releases: [rocky-9]', `releases: [${real.release}]`))
        const out = join(dir, `${real.release}.lock.json`)
        const origin = new URL(real.probe).origin
        const r = await bundleCli([
          'lock',
          '--manifest',
          manifest,
          '--out',
          out,
          '--cache',
          join(dir, 'cache'),
          ...world.args,
          '--mirror',
          `${origin}=${origin}`,
        ])
        expect(r.code, r.stderr).toBe(0)
        const l = parseLock(await readFile(out, 'utf8'))
        for (const n of real.expect) expect(l.packages.map((p) => p.name)).toContain(n)
        expect(l.packages.every((p) => p.release === real.release && p.url.startsWith(`${origin}/`) && /\.(x86_64|noarch)\.rpm$/.test(p.file))).toBe(true)
      },
      300_000,
    )
})

describe('RPM resolution', () => {
  it("orders versions the way rpm does, and reads each distribution's /etc/os-release as the lock names its release", () => {
    for (const [a, b, want] of [
      ['1.0', '1.0', 0],
      ['1.0.10', '1.0.9', 1],
      ['1.0~rc1', '1.0', -1],
      ['1.0^git1', '1.0', 1],
      ['1.0a', '1.0', 1],
      ['1.0', '1.0.1', -1],
      ['2.0', '10', -1],
      ['el9_2', 'el9', 1],
    ] as const)
      expect(Math.sign(rpmvercmp(a, b)), `${a} ${b}`).toBe(want)
    expect(compareEvr('2:6.2-1.el9', '6.9-1.el9')).toBeGreaterThan(0)
    expect(compareEvr('1.0.4-1.el9', '1.0.4')).toBe(0)
    const os = (t: string) => releaseId(t)
    expect(os('ID="rocky"\nVERSION_ID="9.4"\n')).toBe('rocky-9')
    expect(os('ID="almalinux"\nVERSION_ID="8.10"\n')).toBe('almalinux-8')
    expect(os('ID="openEuler"\nVERSION="22.03 (LTS-SP3)"\nVERSION_ID="22.03"\n')).toBe('openeuler-22.03')
    expect(os('ID="kylin"\nVERSION="V10 (Lance)"\nVERSION_ID="V10"\n')).toBe('kylin-v10sp3')
    expect(os('ID=ubuntu\nVERSION_ID="22.04"\n')).toBe('ubuntu-22.04')
  })

  it('names a rich dependency it cannot handle instead of skipping it', () => {
    const all = new Map([['a', pkg('a', ['(b with c)'])]])
    expect(() => rpmClosure(['a'], all, [])).toThrow('(b with c) (needed by a) is a rich dependency the resolver does not handle')
  })

  it('meets (a if b) whichever comes first: b chosen before the package that names the condition, or after it', () => {
    // iptables-nft requires (nftables if firewalld) on Rocky 9 (libsolv resolves it whenever firewalld is in the transaction).
    const all = new Map([pkg('iptables-nft', ['(nftables if firewalld)']), pkg('firewalld', []), pkg('nftables', [])].map((p) => [p.name, p] as const))
    const names = (wanted: string[]) => rpmClosure(wanted, all, []).map((p) => p.name)
    expect(names(['firewalld', 'iptables-nft'])).toEqual(['firewalld', 'iptables-nft', 'nftables'])
    expect(names(['iptables-nft', 'firewalld'])).toEqual(['firewalld', 'iptables-nft', 'nftables'])
    expect(names(['iptables-nft'])).toEqual(['iptables-nft'])
  })
})
