import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { isKaError } from '../../bundle/errors.js'
import { filesFor, installedBy, PACKAGE_USES, packagesFor, parseLock, reduceLock, serializeLock } from '../../bundle/lock.js'
import { REPO } from '../support/fake-upstream.js'

const committed = async () => readFile(join(REPO, 'bundle.lock.json'), 'utf8')
const base = () => JSON.parse('{"lockVersion":1,"kubernetes":"1.29.3","platforms":["linux/amd64"],"files":[],"images":[]}') as Record<string, unknown>
const fails = (doc: unknown): string => {
  try {
    parseLock(typeof doc === 'string' ? doc : JSON.stringify(doc), 'lock.json')
  } catch (e) {
    expect(isKaError(e) && e.code).toBe('ELOCK')
    return (e as Error).message
  }
  throw new Error('parsed')
}

describe('the lock', () => {
  it('round-trips the committed default lock byte for byte', async () => {
    const text = await committed()
    const lock = parseLock(text, 'bundle.lock.json')
    expect(lock.files.length).toBeGreaterThan(5)
    expect(lock.images.length).toBeGreaterThan(5)
    expect(lock.packages.length).toBeGreaterThan(10)
    expect(serializeLock(lock)).toBe(text)
  })

  it('a lock of images alone may name no Kubernetes; any other must', () => {
    const doc = { lockVersion: 1, platforms: ['linux/amd64'], files: [], images: [] }
    const lock = parseLock(JSON.stringify(doc), 'lock.json')
    expect(lock.kubernetes).toBe('')
    expect(serializeLock(lock)).toBe(`${JSON.stringify(doc, null, 2)}\n`)
    const { kubernetes: _, ...noVersion } = {
      ...base(),
      files: [{ name: 'runc', version: '1.1.12', url: 'https://example.com/runc', integrity: `sha256-${Buffer.alloc(32).toString('base64')}`, file: 'runc' }],
    }
    expect(fails(noVersion)).toMatch(/kubernetes/)
  })

  it('reduces to one platform and the chosen releases', async () => {
    const lock = parseLock(await committed(), 'bundle.lock.json')
    const arm = reduceLock(lock, 'linux/arm64', ['debian-12'])
    expect(arm.platforms).toEqual(['linux/arm64'])
    expect(arm.files.length).toBe(filesFor(lock, 'linux/arm64').length)
    expect(arm.files.length).toBeGreaterThan(0)
    for (const f of arm.files) expect(f.platform === undefined || f.platform === 'linux/arm64', f.name).toBe(true)
    expect(arm.packages.length).toBeGreaterThan(0)
    for (const p of arm.packages) expect([p.release, p.platform]).toEqual(['debian-12', 'linux/arm64'])
    expect(packagesFor(lock, 'linux/amd64', ['ubuntu-22.04']).every((p) => p.release === 'ubuntu-22.04')).toBe(true)
  })

  it("records each package's family, which must fit its file; an older lock without it still reads", () => {
    const pkg = {
      release: 'rocky-9',
      family: 'rpm',
      platform: 'linux/amd64',
      name: 'socat',
      version: '0:1.7.4.1-5.el9',
      url: 'https://dl.rockylinux.org/pub/rocky/9/AppStream/x86_64/os/Packages/s/socat-1.7.4.1-5.el9.x86_64.rpm',
      integrity: 'sha256-qt7vQAuPBkVXaMFHbSAjj4dbePUsf/GWfaa84jbIy9g=',
      size: 1,
      file: 'socat-1.7.4.1-5.el9.x86_64.rpm',
    }
    const lock = parseLock(JSON.stringify({ ...base(), packages: [pkg] }), 'lock.json')
    expect(lock.packages[0]?.family).toBe('rpm')
    expect(JSON.parse(serializeLock(lock)).packages[0]).toEqual(pkg)
    const { family: _, ...older } = pkg
    expect(parseLock(JSON.stringify({ ...base(), packages: [older] }), 'lock.json').packages[0]?.family).toBeUndefined()
    expect(fails({ ...base(), packages: [{ ...pkg, family: 'deb' }] })).toMatch(
      /packages\[0\]\.family: must be rpm for "socat-1\.7\.4\.1-5\.el9\.x86_64\.rpm", found "deb"/,
    )
  })

  it('says who installs each package, the nodes when it says nothing; one entry per file', () => {
    const pkg = {
      release: 'debian-12',
      family: 'deb',
      platform: 'linux/amd64',
      name: 'sshpass',
      version: '1.09-1+b1',
      url: 'http://deb.debian.org/debian/pool/main/s/sshpass/sshpass_1.09-1+b1_amd64.deb',
      integrity: 'sha256-qt7vQAuPBkVXaMFHbSAjj4dbePUsf/GWfaa84jbIy9g=',
      size: 1,
      file: 'sshpass_1.09-1+b1_amd64.deb',
    }
    const both = { ...pkg, name: 'libc-bin', file: 'libc-bin.deb', for: ['node', 'controller'] }
    const lock = parseLock(JSON.stringify({ ...base(), packages: [pkg, { ...pkg, name: 'x', file: 'x.deb', for: ['controller'] }, both] }), 'lock.json')
    expect(lock.packages.map((p) => PACKAGE_USES.filter((u) => installedBy(p, u)))).toEqual([['node'], ['controller'], ['node', 'controller']])
    expect(JSON.parse(serializeLock(lock)).packages[2]).toEqual({ release: both.release, for: both.for, ...both })
    expect(fails({ ...base(), packages: [{ ...pkg, for: ['everyone'] }] })).toMatch(
      /packages\[0\]\.for: must list who installs it, once each: node, controller/,
    )
    expect(fails({ ...base(), packages: [{ ...pkg, for: [] }] })).toMatch(/packages\[0\]\.for: must list/)
    expect(fails({ ...base(), packages: [{ ...pkg, for: ['node', 'node'] }] })).toMatch(/packages\[0\]\.for: must list/)
    // Two entries for one file in the bundle: which one does verify hold it to?
    expect(fails({ ...base(), packages: [pkg, { ...pkg, integrity: `sha256-${'A'.repeat(43)}=`, for: ['controller'] }] })).toMatch(
      /packages\[1\]\.file: "sshpass_1\.09-1\+b1_amd64\.deb" is also packages\[0\]\.file for debian-12 linux\/amd64/,
    )
  })

  it('names the field of every error', () => {
    expect(fails('{')).toMatch(/^lock\.json: not valid JSON/)
    expect(fails({ ...base(), lockVersion: 2 })).toMatch(/lockVersion: must be 1, found 2/)
    expect(fails({ ...base(), kubernetes: 'latest' })).toMatch(/kubernetes: must be a version like 1\.29\.3/)
    expect(fails({ ...base(), platforms: [] })).toMatch(/platforms: must name at least one platform/)
    expect(fails({ ...base(), platforms: ['windows/amd64'] })).toMatch(/platforms\[0\]: unknown platform "windows\/amd64"/)
    expect(fails({ ...base(), extra: 1 })).toMatch(/extra: unknown field/)
    const file = {
      name: 'runc',
      version: '1.1.12',
      url: 'https://github.com/opencontainers/runc/releases/download/v1.1.12/runc.amd64',
      integrity: 'sha256-qt7vQAuPBkVXaMFHbSAjj4dbePUsf/GWfaa84jbIy9g=',
      file: 'runc.amd64',
    }
    expect(() => parseLock(JSON.stringify({ ...base(), files: [file] }), 'lock.json')).not.toThrow()
    expect(fails({ ...base(), files: [{ ...file, file: '../etc/passwd' }] })).toMatch(/files\[0\]\.file: must be a plain file name/)
    expect(fails({ ...base(), files: [{ ...file, integrity: 'md5-abc' }] })).toMatch(/files\[0\]\.integrity: not a sha256 integrity string/)
    expect(fails({ ...base(), files: [{ ...file, size: -1 }] })).toMatch(/files\[0\]\.size: must be a whole number of bytes/)
    expect(fails({ ...base(), files: [{ ...file, platform: 'linux/arm64' }] })).toMatch(/files\[0\]\.platform: linux\/arm64 is not in platforms/)
    expect(fails({ ...base(), files: [file, file] })).toMatch(/files\[1\]\.file: "runc\.amd64" is also files\[0\]\.file/)
    expect(fails({ ...base(), images: [{ ref: 'pause:3.9' }] })).toMatch(/images\[0\]\.ref: must be a canonical reference/)
    expect(fails({ ...base(), images: [{ ref: 'registry.k8s.io/pause:3.9', manifest: `sha256:${'a'.repeat(64)}` }] })).toMatch(
      /only an image pinned by "digest" can name its platform manifest/,
    )
  })
})
