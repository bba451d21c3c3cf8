import { execFileSync, execSync, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { closure, newest, parsePackages } from '../builder/debian.js'
import { parseLock } from '../installer/core/lock.js'
import { bundleCli } from './support/cli.js'
import { startUpstream, type Upstream } from './support/upstream.js'
import { lockWorld, startWorld, type World } from './support/world.js'

/**
 * OS packages end to end: `bundle lock` reads a local archive mirror that serves Debian 12's
 * real package indexes and the real .deb files of the closure (fetched with apt-get download
 * during setup); the bundle installs them with dpkg into a real Debian 12 root made with
 * `debootstrap --variant=minbase` (cached in /var/cache/kube-airgap-test between runs).
 */
const NAMES = ['conntrack', 'socat', 'ebtables', 'ethtool', 'ipset', 'iptables']
const ROOTFS = '/var/cache/kube-airgap-test/debian12'
const LISTS = '/var/lib/apt/lists'
const SUITES: [string, string, string][] = [
  ['debian', 'bookworm', 'deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages'],
  ['debian', 'bookworm-updates', 'deb.debian.org_debian_dists_bookworm-updates_main_binary-amd64_Packages'],
  ['debian-security', 'bookworm-security', 'deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages'],
]
let dir: string
let world: World
let archive: Upstream
let lockPath: string
let bundle: string

const readList = async (name: string): Promise<string> => {
  const f = (await readdir(LISTS)).find((n) => n.startsWith(name) && !n.endsWith('.diff_Index'))
  if (!f) throw new Error(`no ${name} in ${LISTS}: run apt-get update`)
  return f.endsWith('.lz4') || f.endsWith('.gz') || f.endsWith('.xz') ? execFileSync('/usr/lib/apt/apt-helper', ['cat-file', join(LISTS, f)], { maxBuffer: 256 << 20, encoding: 'utf8' }) : readFile(join(LISTS, f), 'utf8')
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-packages-'))
  const up = join(dir, 'archive')
  // The mirror: the release's real indexes (one broken copy lacks a dependency) ...
  const texts: string[] = []
  for (const [repo, suite, list] of SUITES) {
    const text = await readList(list)
    texts.push(text)
    for (const [root, t] of [
      ['good', text],
      ['broken', text.replace(/\nPackage: libnfnetlink0\n[\s\S]*?\n\n/, '\n\n')],
    ] as const) {
      const d = join(up, root, 'deb.debian.org', repo, 'dists', suite, 'main', 'binary-amd64')
      await mkdir(d, { recursive: true })
      await writeFile(join(d, 'Packages.gz'), gzipSync(t))
    }
  }
  // ... and the real .deb files the closure takes, where the index says they are.
  const all = newest(SUITES.map(([repo], i) => parsePackages(texts[i]!, `https://deb.debian.org/${repo}`)))
  const debs = join(dir, 'debs')
  await mkdir(debs, { recursive: true })
  const wanted = closure(NAMES, all)
  execFileSync('apt-get', ['download', ...wanted.map((p) => `${p.name}=${p.version}`)], { cwd: debs, stdio: 'ignore' })
  for (const f of await readdir(debs)) {
    const p = wanted.find((w) => f.startsWith(`${w.name}_`))!
    const dest = join(up, 'good', 'deb.debian.org', p.archive.split('/').pop()!, p.filename)
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

  world = await startWorld(dir, { realistic: true, manifestEdit: (t) => `${t.replace('platforms: [linux/amd64, linux/arm64]', 'platforms: [linux/amd64]')}\npackages:\n  releases: [debian-12]\n  names: [${NAMES.join(', ')}]\n` })
  world.args.push('--mirror', `https://deb.debian.org=${archive.url}/deb.debian.org`)
  lockPath = join(dir, 'bundle.lock.json')
  await lockWorld(world, lockPath, join(dir, 'cache'))
  const r = await bundleCli(['build', '--lock', lockPath, '--out', join(dir, 'out'), '--cache', join(dir, 'cache'), '--os', 'debian-12', ...world.args])
  if (r.code !== 0) throw new Error(r.stderr)
  execFileSync('tar', ['xf', 'kube-airgap-v1.29.3-linux-amd64.tar'], { cwd: join(dir, 'out') })
  bundle = join(dir, 'out', 'kube-airgap-v1.29.3-linux-amd64')
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

const install = (bundleDir: string, root: string, args: string[]) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const c = spawn(join(bundleDir, 'install'), [...args, '--root', root], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    c.on('close', (code) => resolve({ code, stdout, stderr }))
  })

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
    for (const n of [...NAMES, 'libnfnetlink0', 'libnetfilter-conntrack3', 'libxtables12', 'libip4tc2', 'libmnl0', 'libnftnl11', 'libipset13', 'libwrap0']) expect(names, n).toContain(n)
    for (const n of ['libc6', 'dpkg', 'coreutils', 'libselinux1']) expect(names, n).not.toContain(n)
    expect(lock.packages.every((p) => p.release === 'debian-12' && p.platform === 'linux/amd64' && p.url.startsWith('https://deb.debian.org/'))).toBe(true)
    for (const p of lock.packages) {
      const served = await readFile(join(dir, 'archive', 'good', new URL(p.url).host, new URL(p.url).pathname))
      expect(execSync('sha256sum', { input: served, encoding: 'utf8' }).split(' ')[0], p.name).toBe(p.integrity.hex)
    }
  })

  it('a package whose dependency is missing from the index fails the lock, naming it', async () => {
    const broken = await startUpstream(join(dir, 'archive', 'broken'))
    try {
      const r = await bundleCli(['lock', '--manifest', world.manifestPath, '--out', join(dir, 'broken.lock.json'), '--cache', join(dir, 'cache'), ...world.args.slice(0, -2), '--mirror', `https://deb.debian.org=${broken.url}/deb.debian.org`])
      expect(r.code).toBe(2)
      expect(r.stderr.trim().split('\n').pop()).toMatch(/^bundle: ENOTPINNED: debian-12 linux\/amd64: libnfnetlink0 \(needed by (conntrack|libnetfilter-conntrack3|iptables)\) is not in the release's package index/)
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
    expect(execFileSync('chroot', [root, 'dpkg', '--audit'], { encoding: 'utf8' }).trim()).toBe('')
    expect(execFileSync('chroot', [root, 'conntrack', '--version'], { encoding: 'utf8' })).toMatch(/conntrack v1\.4/)
    const again = await install(bundle, root, ['--role', 'worker', '--phases', 'verify,packages'])
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toMatch(/\[packages\] already done +OS packages for debian-12 \(\d+: all installed\)/)
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
    expect(other.stderr.trim()).toMatch(/^install: EUSAGE: this node runs ubuntu-22\.04; the bundle carries OS packages for debian-12: build one with --os ubuntu-22\.04, or run with --skip-phases packages/)
  })
})
