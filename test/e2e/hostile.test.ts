import { execFileSync, spawn } from 'node:child_process'
import { createServer, type Server } from 'node:http'
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir, hostname } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { download } from '../../builder/download/download.js'
import { httpDefaults } from '../../builder/download/http.js'
import { parseManifest } from '../../builder/lock/manifest.js'
import { listMembers } from '../../installer/archive.js'
import { openBundle } from '../../bundle/open.js'
import { clusterConfig } from '../../installer/cluster-config.js'
import { Sha256 } from '../../bundle/digest.js'
import { parseLock } from '../../bundle/lock.js'
import { parseImageRef } from '../../bundle/reference.js'
import { printable } from '../../bundle/text.js'
import { verifyBundle } from '../../bundle/verify.js'
import { NodeHost } from '../../installer/host.js'
import { parseJoinFile } from '../../installer/kubeadm.js'
import { bundleCli, runSync as run } from '../support/cli.js'
import { lockWorld, startWorld, type World } from '../support/world.js'

/**
 * The adversarial review's defects, each proven fixed against the real parts: the standalone
 * verifier run by dash with the real openssl, sha256sum and GNU tar; the real ./install; real
 * HTTP servers on loopback that trickle or stay silent.
 */
const NAME = 'kube-airgap-v1.29.3-linux-amd64'
let dir: string
let world: World
let lockPath: string
let keys: string
let verifier: string
let signedTar: string
let signed: string
let unsignedTar: string

/** The verifier as an operator runs it, by dash. */
const verify = (...args: string[]) => run('dash', [verifier, ...args])
/** The bundle's installer with this machine's Node.js (this world's runtime is a stand-in; install.test.ts runs the sh entry). */
const installer = (bundle: string, args: string[]) => run(process.execPath, [join(bundle, 'installer', 'install.mjs'), '--bundle', bundle, ...args])
const copyOf = async (label: string) => {
  const d = join(dir, label, NAME)
  await cp(signed, d, { recursive: true })
  return d
}
const retar = (folder: string, out: string) => execFileSync('tar', ['cf', out, '-C', join(folder, '..'), NAME])
const sumsWith = async (bundle: string, rel: string) => {
  const text = (await readFile(join(bundle, 'SHA256SUMS'), 'utf8')).replace(
    new RegExp(`^[0-9a-f]{64}(?= {2}${rel.replace(/\./g, '\\.')}$)`, 'm'),
    Sha256.of(await readFile(join(bundle, rel))).hex,
  )
  await writeFile(join(bundle, 'SHA256SUMS'), text)
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-hostile-'))
  world = await startWorld(dir)
  lockPath = join(dir, 'bundle.lock.json')
  await lockWorld(world, lockPath, join(dir, 'cache'))
  keys = join(dir, 'keys')
  const k = await bundleCli(['keygen', '--out', keys])
  expect(k.code, k.stderr).toBe(0)
  verifier = join(keys, 'kube-airgap-verify')
  const b = await bundleCli([
    'build',
    '--lock',
    lockPath,
    '--out',
    join(dir, 'signed'),
    '--cache',
    join(dir, 'cache'),
    '--sign',
    join(keys, 'kube-airgap.key'),
    ...world.args,
  ])
  expect(b.code, b.stderr).toBe(0)
  signedTar = join(dir, 'signed', `${NAME}.tar`)
  execFileSync('tar', ['xf', `${NAME}.tar`], { cwd: join(dir, 'signed') })
  signed = join(dir, 'signed', NAME)
  const u = await bundleCli(['build', '--lock', lockPath, '--out', join(dir, 'unsigned'), '--cache', join(dir, 'cache'), ...world.args])
  expect(u.code, u.stderr).toBe(0)
  unsignedTar = join(dir, 'unsigned', `${NAME}.tar`)
}, 180_000)
afterAll(async () => {
  await world.close()
  await rm(dir, { recursive: true, force: true })
})

describe('1. the trust root: the standalone verifier (dash, real openssl, sha256sum, GNU tar)', () => {
  it('bundle keygen writes it with the key inside; it passes a genuine tar, folder, split parts and --extract', async () => {
    expect(((await stat(verifier)).mode & 0o777).toString(8)).toBe('755')
    const fp = (await bundleCli(['verify', signedTar, '--public-key', join(keys, 'kube-airgap.pub')])).stdout.match(/signed by (sha256:[0-9a-f]{64})/)![1]!
    const t = verify(signedTar)
    expect(t.code, t.stderr).toBe(0)
    expect(t.stdout).toContain(`ok: ${NAME}: signed by ${fp}`)
    expect(t.stdout).toMatch(/kubernetes 1\.29\.3, linux\/amd64, lock sha256:[0-9a-f]{64}/)
    expect(verify(signed).code).toBe(0)

    const parts = join(dir, 'parts')
    expect(
      (
        await bundleCli([
          'build',
          '--lock',
          lockPath,
          '--out',
          parts,
          '--cache',
          join(dir, 'cache'),
          '--sign',
          join(keys, 'kube-airgap.key'),
          '--split',
          '256K',
          ...world.args,
        ])
      ).code,
    ).toBe(0)
    const p = verify(join(parts, `${NAME}.parts.sha256`))
    expect(p.code, p.stderr).toBe(0)
    expect(verify(join(parts, `${NAME}.tar.001`)).code).toBe(0)

    const dest = join(dir, 'extracted')
    await mkdir(dest)
    const x = verify('--extract', dest, signedTar)
    expect(x.code, x.stderr).toBe(0)
    expect(x.stdout).toContain(`unpacked: ${dest}/${NAME}`)
    const i = installer(join(dest, NAME), ['--role', 'worker', '--root', await mkdtemp(join(dir, 'root-')), '--phases', 'verify'])
    expect(i.code, i.stderr).toBe(0)
    expect(verify('--extract', dest, signedTar).stderr).toMatch(/exists already/)
  })

  it('catches a replaced install or install.mjs (with SHA256SUMS rewritten to match), an unsigned bundle, another key, a planted join/, a link, an extra file, a changed verifier', async () => {
    const cases: [string, (b: string) => Promise<void>, RegExp][] = [
      [
        'install',
        async (b) => {
          await writeFile(join(b, 'install'), '#!/bin/sh\necho "signed by sha256:genuine"; exit 0\n')
          await sumsWith(b, 'install')
        },
        /SHA256SUMS is not the one that was signed/,
      ],
      [
        'mjs',
        async (b) => {
          await writeFile(join(b, 'installer/install.mjs'), 'console.log("owned")\n')
          await sumsWith(b, 'installer/install.mjs')
        },
        /SHA256SUMS is not the one that was signed/,
      ],
      ['mjs-only', (b) => writeFile(join(b, 'installer/install.mjs'), 'console.log("owned")\n'), /installer\/install\.mjs: missing or changed/],
      [
        'join',
        async (b) => {
          await mkdir(join(b, 'join'))
          await writeFile(join(b, 'join/worker.yaml'), 'endpoint: 203.0.113.1:6443\n')
        },
        /never holds join\//,
      ],
      ['extra', (b) => writeFile(join(b, 'files/extra.bin'), 'x'), /files\/extra\.bin: not listed in SHA256SUMS/],
      [
        'lock',
        async (b) => {
          await writeFile(join(b, 'bundle.lock.json'), (await readFile(join(b, 'bundle.lock.json'), 'utf8')).replace('1.29.3', '1.29.4'))
          await sumsWith(b, 'bundle.lock.json')
        },
        /not the one that was signed/,
      ],
    ]
    for (const [label, tamper, message] of cases) {
      const b = await copyOf(`t-${label}`)
      await tamper(b)
      const tar = join(dir, `t-${label}.tar`)
      retar(b, tar)
      const r = verify(tar)
      expect(r.code, label).toBe(1)
      expect(r.stderr.trim().split('\n'), label).toHaveLength(1)
      expect(r.stderr, label).toMatch(message)
      if (label !== 'join') expect(verify(b).code, `${label} (folder)`).toBe(1)
    }
    const linked = await copyOf('t-link')
    await symlink('/etc/passwd', join(linked, 'files', 'passwd'))
    expect(verify(linked).stderr).toMatch(/files\/passwd: not a regular file/)
    retar(linked, join(dir, 't-link.tar'))
    expect(verify(join(dir, 't-link.tar')).stderr).toMatch(/files\/passwd: not a regular file/)

    expect(verify(unsignedTar).stderr).toMatch(/no STATEMENT\.json: the bundle is not signed/)
    const other = join(dir, 'other-keys')
    expect((await bundleCli(['keygen', '--out', other])).code).toBe(0)
    const o = run('dash', [join(other, 'kube-airgap-verify'), signedTar])
    expect(o.code).toBe(1)
    expect(o.stderr).toMatch(/the signature does not match key sha256:/)
    // A verifier whose key was swapped (fingerprint line kept) gives itself away.
    const forged = join(dir, 'forged-verify')
    const otherPem = (await readFile(join(other, 'kube-airgap.pub'), 'utf8')).trim()
    const mine = (await readFile(join(keys, 'kube-airgap.pub'), 'utf8')).trim()
    await writeFile(forged, (await readFile(verifier, 'utf8')).replace(mine, otherPem))
    expect(run('dash', [forged, signedTar]).stderr).toMatch(/this verifier was changed/)
    // An openssl too old for Ed25519 is said in one line, never a pass.
    const fake = join(dir, 'old-openssl')
    await mkdir(fake)
    await writeFile(join(fake, 'openssl'), '#!/bin/sh\necho "OpenSSL 1.1.1w  11 Sep 2023"\n')
    await chmod(join(fake, 'openssl'), 0o755)
    const old = run('dash', [verifier, signedTar], { PATH: `${fake}:${process.env.PATH}` })
    expect(old.code).toBe(1)
    expect(old.stderr.trim()).toMatch(/OpenSSL 1\.1\.1w .*cannot check Ed25519 signatures \(OpenSSL 3 or newer is needed\)/)
  })

  it("the operator's own files beside the bundle are not damage: noted, ignored, never read; a file the bundle owns that is unlisted still is", async () => {
    const b = await copyOf('own-files')
    await writeFile(join(b, 'cluster.yaml'), 'podSubnet: 10.244.0.0/16\n')
    await cp(join(keys, 'kube-airgap.pub'), join(b, 'kube-airgap.pub'))
    const v = verify(b)
    expect(v.code, v.stderr).toBe(0)
    expect(v.stdout).toContain('note: cluster.yaml: not part of the bundle (your own file beside it?): ignored')
    expect(v.stdout).toContain('note: kube-airgap.pub: not part of the bundle')
    const i = installer(b, ['verify', '--root', await mkdtemp(join(dir, 'root-')), '--json'])
    expect(i.code, i.stderr).toBe(0)
    expect(JSON.parse(i.stdout)).toMatchObject({ ok: true, name: NAME })
    expect(i.stderr).toMatch(/^note {2}cluster\.yaml: not part of the bundle/m)
    const report = await verifyBundle(b)
    expect(report.ignored.sort()).toEqual(['cluster.yaml', 'kube-airgap.pub'])
    expect(report.digests.has('cluster.yaml')).toBe(false)
    // Files under the bundle's own folders, and top-level names the bundle uses, are still refused.
    await writeFile(join(b, 'files', 'extra.bin'), 'x')
    expect(verify(b).stderr).toMatch(/files\/extra\.bin: not listed in SHA256SUMS/)
    await rm(join(b, 'files', 'extra.bin'))
    await writeFile(join(b, 'README.txt'), 'planted')
    expect(verify(b).code).toBe(1)
    await expect(verifyBundle(b)).rejects.toThrow(/README\.txt/)
  })

  it('bundle inspect says whether and by whom a bundle is signed, where the runtime is, and previews a lock', async () => {
    const plain = await bundleCli(['inspect', signedTar])
    expect(plain.code, plain.stderr).toBe(0)
    expect(plain.stdout.split('\n')[0]).toMatch(/, signed \(give --public-key to see by whom\)$/)
    expect(plain.stdout).toMatch(/^ {2}node +\S+ +\S+ \S+ +runtime\/bin\/node$/m)
    const by = await bundleCli(['inspect', signedTar, '--public-key', join(keys, 'kube-airgap.pub'), '--json'])
    expect(JSON.parse(by.stdout).signature).toEqual({ signed: true, signedBy: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) })
    expect(JSON.parse((await bundleCli(['inspect', unsignedTar, '--json'])).stdout).signature).toEqual({ signed: false })
    const other = join(dir, 'inspect-keys')
    expect((await bundleCli(['keygen', '--out', other])).code).toBe(0)
    const wrong = await bundleCli(['inspect', signedTar, '--public-key', join(other, 'kube-airgap.pub')])
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/^bundle: ESIGNATURE: .*the signature does not match/)
    const preview = await bundleCli(['inspect', lockPath, '--json'])
    expect(preview.code, preview.stderr).toBe(0)
    expect(JSON.parse(preview.stdout)).toMatchObject({
      ok: true,
      kubernetes: '1.29.3',
      images: 11,
      hosts: expect.arrayContaining(['dl.k8s.io', 'registry.k8s.io', 'docker.io']),
    })
  })

  it('./install --require-signature is a guard against damage only: it refuses an unsigned bundle; --public-key refuses a private key', async () => {
    const root = await mkdtemp(join(dir, 'root-'))
    const u = join(dir, 'unsigned', NAME)
    execFileSync('tar', ['xf', unsignedTar], { cwd: join(dir, 'unsigned') })
    expect(installer(u, ['--role', 'worker', '--root', root, '--phases', 'verify', '--require-signature']).stderr).toMatch(/ESIGNATURE: .*not signed/)
    const priv = installer(signed, ['--role', 'worker', '--root', root, '--phases', 'verify', '--public-key', join(keys, 'kube-airgap.key')])
    expect(priv.code).toBe(2)
    expect(priv.stderr.trim()).toMatch(/^install: EUSAGE: --public-key .*kube-airgap\.key holds a private key; give the public key/)
    const b = await bundleCli(['verify', signedTar, '--public-key', join(keys, 'kube-airgap.key')])
    expect(b.code).toBe(2)
    // Without a key, verify says the signature was not checked.
    const nokey = await bundleCli(['verify', signedTar])
    expect(nokey.code).toBe(0)
    expect(nokey.stdout).toMatch(/note: the bundle is signed, but the signature was not checked/)
  })
})

describe('2. verification is a gate; every byte is checked as it is written', () => {
  it('--phases kernel,containerd on a tampered runc is refused in verify; nothing under the root', async () => {
    const b = await copyOf('gate')
    for (const name of ['runc', 'kubeadm']) {
      const file = join(b, 'files', (await readdir(join(b, 'files'))).find((f) => f.startsWith(name))!)
      const bytes = await readFile(file)
      bytes[10] = bytes[10]! ^ 1
      await writeFile(file, bytes)
    }
    const root = await mkdtemp(join(dir, 'root-'))
    const r = installer(b, ['--role', 'worker', '--root', root, '--host-commands', root, '--phases', 'kernel,containerd', '--skip-phases', 'verify'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^install: EVERIFY: .*failed verification/m)
    expect(r.stderr).toMatch(/files\/runc\.amd64: changed/)
    expect(r.stderr).toMatch(/verify always runs first/)
    expect(await readdir(root)).toEqual([])
    // Even with verification skipped (--no-verify, development only), the write-time hash
    // refuses the bytes against the lock's pin, and nothing is renamed into place.
    const nv = installer(b, ['--role', 'worker', '--root', root, '--host-commands', root, '--phases', 'kubernetes', '--no-verify'])
    expect(nv.code).toBe(1)
    expect(nv.stderr).toMatch(/--no-verify: the bundle was NOT verified/)
    expect(nv.stderr).toMatch(/EINTEGRITY: .*\/usr\/local\/bin\/kubeadm: expected sha256/)
    expect(await readdir(join(root, 'usr/local/bin')).catch(() => [])).toEqual([])
    const record = (await readdir(join(root, 'var/log/kube-airgap'))).find((f) => f.startsWith('verify-'))!
    expect(JSON.parse(await readFile(join(root, 'var/log/kube-airgap', record), 'utf8')).result).toBe('not verified (--no-verify)')
  })

  it('a file swapped after verification: the write, the archive listing and the bundle reader all refuse it', async () => {
    const b = await copyOf('swap')
    const v = await verifyBundle(b)
    const bundle = await openBundle(b, v.digests)
    // The stick answers other bytes on the second read.
    const calico = `files/${bundle.file('calico-manifest').locked.file}`
    await writeFile(join(b, calico), 'kind: Evil\n')
    await expect(bundle.read(calico)).rejects.toMatchObject({ code: 'EINTEGRITY' })
    const ctd = bundle.file('containerd')
    const tgz = await readFile(ctd.path)
    tgz[tgz.length - 5] = tgz[tgz.length - 5]! ^ 1
    await writeFile(ctd.path, tgz)
    await expect(listMembers(ctd.path, ctd.locked.integrity)).rejects.toMatchObject({ code: 'EINTEGRITY' })
    const root = await mkdtemp(join(dir, 'root-'))
    const host = new NodeHost(root)
    const pin = Sha256.of('the pinned bytes')
    await expect(host.write('/usr/local/bin/tool', Readable.from([Buffer.from('other bytes')]), 0o755, pin)).rejects.toMatchObject({ code: 'EINTEGRITY' })
    expect(await readdir(join(root, 'usr/local/bin'))).toEqual([])
    await host.write('/usr/local/bin/tool', Readable.from([Buffer.from('the pinned bytes')]), 0o755, pin)
    expect(await readFile(join(root, 'usr/local/bin/tool'), 'utf8')).toBe('the pinned bytes')
  })

  it('images/index.json must name exactly the images the lock pins, with the manifests the lock records', async () => {
    const b = await copyOf('index')
    const index = JSON.parse(await readFile(join(b, 'images/index.json'), 'utf8'))
    index.manifests[0].annotations['io.containerd.image.name'] = 'docker.io/evil/miner:latest'
    await writeFile(join(b, 'images/index.json'), JSON.stringify(index))
    await sumsWith(b, 'images/index.json')
    await rm(join(b, 'STATEMENT.json'))
    await rm(join(b, 'SIGNATURE'))
    await expect(verifyBundle(b)).rejects.toThrow(/images\/index\.json: names "docker\.io\/evil\/miner:latest", which the lock does not pin/)
  })
})

describe('3. files the installer writes outside the bundle hashes', () => {
  it('a link in join/ is refused, nothing is written where it points; a node file that is a link is refused', async () => {
    const b = await mkdtemp(join(dir, 'usb-'))
    const outside = await mkdtemp(join(dir, 'outside-'))
    await symlink(outside, join(b, 'join'))
    const usb = new NodeHost(b, { noLinks: true })
    await expect(usb.write('/join/worker.yaml', 'x', 0o600, Sha256.of('x'))).rejects.toThrow(/is a symbolic link: refused/)
    expect(await readdir(outside)).toEqual([])
    const root = await mkdtemp(join(dir, 'root-'))
    await mkdir(join(root, 'etc'))
    await symlink(join(outside, 'hosts'), join(root, 'etc/hosts'))
    await expect(new NodeHost(root).write('/etc/hosts', 'x', 0o644, Sha256.of('x'))).rejects.toThrow(/kube-airgap never writes through a link/)
    expect(await readdir(outside)).toEqual([])
  })

  it('--root without --host-commands is refused before anything (systemctl would act on this machine)', async () => {
    const root = await mkdtemp(join(dir, 'root-'))
    const r = installer(signed, ['--role', 'worker', '--root', root])
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toMatch(/^install: EUSAGE: --root .* would still act on this machine: give --host-commands DIR/)
    expect(await readdir(root)).toEqual([])
  })
})

describe('4. builder-side inputs', () => {
  it('a parts file naming ../../x.tar or /dev/zero is refused, and nothing is written outside its folder', async () => {
    const parts = join(dir, 'evil-parts')
    await mkdir(parts)
    const zero = '0'.repeat(64)
    await writeFile(join(parts, 'x.parts.sha256'), `${zero}  x.tar.000\n${zero}  ../../x.tar\n`)
    const j = await bundleCli(['join', join(parts, 'x.parts.sha256')])
    expect(j.code).toBe(1)
    expect(j.stderr.trim()).toMatch(/names "\.\.\/\.\.\/x\.tar", which is not a bundle tar's name/)
    await writeFile(join(parts, 'y.parts.sha256'), `${zero}  /dev/zero\n${zero}  y.tar\n`)
    const v = await bundleCli(['verify', join(parts, 'y.parts.sha256')])
    expect(v.code).toBe(1)
    expect(v.stderr.trim()).toMatch(/names "\/dev\/zero" where part y\.tar\.000 belongs/)
    expect(await readdir(join(dir, '..'))).not.toContain('x.tar')
  })

  it('a trickling server and a silent one end in one EFETCH line within a bounded time', async () => {
    const sockets = new Set<import('node:net').Socket>()
    const server: Server = createServer((req, res) => {
      if (req.url === '/silent') return // never answers
      // The host check before any work (a HEAD of the origin) is answered, as any server does;
      // the download is what trickles.
      if (req.method === 'HEAD') return void res.writeHead(200).end()
      res.writeHead(200, { 'content-length': '1000000' })
      const t = setInterval(() => res.write('x'), 400)
      res.on('close', () => clearInterval(t))
    })
    server.on('connection', (s) => {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    try {
      const opts = httpDefaults({ retries: 1, backoffMs: 50, stallWindowMs: 1000 })
      for (const path of ['/trickle', '/silent']) {
        const t0 = Date.now()
        const e = await download({ what: `file ${path}`, url: `${base}${path}`, partial: join(dir, `partial${path}`) }, opts).catch((x: unknown) => x)
        expect(e).toMatchObject({ code: 'EFETCH' })
        expect((e as Error).message).toMatch(/stalled: under 1024 bytes\/s for 1 s \(gave up after 2 attempts\)/)
        expect(Date.now() - t0).toBeLessThan(10_000)
      }
      // Through the CLI, as a user meets it: a lock whose extra file trickles.
      const manifest = `${world.manifestText.replace(/^files: \[\]$/m, '')}files:\n  - { name: slow, version: 1.0.0, url: ${base}/trickle }\n`
      const mpath = join(dir, 'slow.yaml')
      await writeFile(mpath, manifest)
      const r = await bundleCli(['lock', '--manifest', mpath, '--out', join(dir, 'slow.lock.json'), '--cache', join(dir, 'cache'), ...world.args], {
        env: { KUBE_AIRGAP_STALL_SECONDS: '1', KUBE_AIRGAP_RETRIES: '1' },
      })
      expect(r.code).toBe(1)
      expect(r.stderr.trim().split('\n').pop()).toMatch(/^bundle: EFETCH: .*\/trickle: stalled/)
    } finally {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    }
  })

  it('credentials and query strings never reach a lock; bundle lock never writes a lock build would reject', async () => {
    const lock = JSON.parse(await readFile(lockPath, 'utf8'))
    for (const [url, message] of [
      ['https://user:secret@example.com/x.tgz', /holds credentials/],
      ['https://example.com/x.tgz?token=secret', /has a query string/],
      ['https://example.com/%zz.tgz', /malformed %-escape/],
    ] as const) {
      lock.files[0].url = url
      expect(() => parseLock(JSON.stringify(lock))).toThrow(message)
    }
    const manifest = `${world.manifestText}\nfiles:\n  - { name: evil, version: 1.0.0, url: "https://user:pw@example.com/a.tgz" }\n`
    expect(() => parseManifest(manifest.replace(/^files: \[\]\n/m, ''), 'm.yaml')).toThrow(/holds credentials/)
    // A URL whose base name decodes to ../../evil makes a lock that build would reject: refused, nothing written.
    const up = 'http://127.0.0.1:9/evil/..%2F..%2Fevil'
    const mpath = join(dir, 'evil.yaml')
    await writeFile(
      mpath,
      `${world.manifestText.replace(/^files: \[\]$/m, '')}files:\n  - { name: evil, version: 1.0.0, url: "${up}", sha256: ${'a'.repeat(64)} }\n`,
    )
    const r = await bundleCli(['lock', '--manifest', mpath, '--out', join(dir, 'evil.lock.json'), '--cache', join(dir, 'cache'), ...world.args])
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toMatch(/ELOCK: .*files\[\d+\]\.file: must be a plain file name/)
    expect(await readdir(dir)).not.toContain('evil.lock.json')
    expect(() => parseImageRef('registry.k8s.io#/pause:3.9')).toThrow(/is not host\[:port\]/)
  })

  it('inspect reads PAX headers as verify does, and says one line for junk', async () => {
    const junk = join(dir, 'junk.tar')
    await writeFile(junk, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251)))
    const j = await bundleCli(['inspect', junk])
    expect(j.code).toBe(1)
    expect(j.stderr.trim().split('\n')).toHaveLength(1)
    expect(j.stderr).toMatch(/^bundle: EVERIFY: .*not a tar/)
    // The same bundle as a PAX tar (GNU tar --format=pax): inspect and verify agree.
    const pax = join(dir, 'pax.tar')
    execFileSync('tar', ['--format=pax', '-cf', pax, '-C', join(signed, '..'), NAME])
    const i = await bundleCli(['inspect', pax, '--json'])
    expect(i.code, i.stderr).toBe(0)
    expect(JSON.parse(i.stdout).kubernetes).toBe('1.29.3')
  })

  it('verify caps what it buffers: a 17 MiB SIGNATURE is a problem, not a read into memory', async () => {
    const b = await copyOf('big')
    await writeFile(join(b, 'SIGNATURE'), Buffer.alloc(17 << 20))
    await expect(verifyBundle(b)).rejects.toThrow(/SIGNATURE: larger than 16 MiB/)
  })

  it('a temp tar left by a killed build whose process is a zombie is removed by the next build', async () => {
    // `sleep 0 &` exits at once and stays a zombie: its parent (exec'd into sleep 30) never reaps it.
    const child = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] })
    const pid = Number(await new Promise<string>((r) => child.stdout.once('data', (d: Buffer) => r(d.toString()))))
    await new Promise((r) => setTimeout(r, 200))
    expect(await readFile(`/proc/${pid}/stat`, 'utf8')).toMatch(/\) Z /)
    const out = join(dir, 'unsigned')
    const stale = join(out, `.${NAME}.tar.tmp-${pid}-deadbeef`)
    await writeFile(stale, 'half a tar')
    const b = await bundleCli(['build', '--lock', lockPath, '--out', out, '--cache', join(dir, 'cache'), ...world.args])
    child.kill()
    expect(b.code, b.stderr).toBe(0)
    expect(await readdir(out)).not.toContain(`.${NAME}.tar.tmp-${pid}-deadbeef`)
  })
})

describe('5. hostile YAML and wrong types: one line, exit 2, never a stack trace', () => {
  const bomb = [
    'a: &a ["x","x","x","x","x","x","x","x","x"]',
    ...'bcdefghi'.split('').map(
      (c, i) =>
        `${c}: &${c} [${Array(9)
          .fill(`*${String.fromCharCode(97 + i)}`)
          .join(',')}]`,
    ),
  ].join('\n')

  it('an alias bomb in cluster.yaml, a join file or the manifest is refused at once', async () => {
    const t0 = Date.now()
    expect(() => clusterConfig(bomb, 'cluster.yaml', {}, { networks: [], hostname: hostname() })).toThrow(/uses a YAML alias/)
    expect(() => parseJoinFile(`kind: JoinFile\n${bomb}`, 'join/worker.yaml')).toThrow(/uses a YAML alias/)
    expect(() => parseManifest(bomb, 'm.yaml')).toThrow(/uses a YAML alias/)
    expect(Date.now() - t0).toBeLessThan(1000)
    const cfg = join(dir, 'bomb.yaml')
    await writeFile(cfg, bomb)
    const root = await mkdtemp(join(dir, 'root-'))
    const r = installer(signed, ['--role', 'master', '--root', root, '--dry-run', '--config', cfg])
    expect(r.code).toBe(2)
    expect(r.stderr.trim()).toMatch(/^install: EUSAGE: .*bomb\.yaml: uses a YAML alias/)
    const m = await bundleCli(['lock', '--manifest', cfg, '--out', join(dir, 'bomb.lock.json')])
    expect(m.code).toBe(2)
    expect(m.stderr.trim()).toMatch(/^bundle: ELOCK: .*uses a YAML alias/)
  })

  it('every field is type-checked: objects, newlines, loopback and unspecified addresses, absurd durations', async () => {
    const NO_FACTS = { networks: [], hostname: hostname() }
    const cases: [string, ...Parameters<typeof clusterConfig>][] = [
      ['dnsDomain must be text, found a mapping', 'dnsDomain: {a: 1}', 'c', {}, NO_FACTS],
      ['is not a host name', 'extraHosts: [{ip: 192.168.1.2, names: ["k8s02\\n10.0.0.1 evil"]}]', 'c', {}, NO_FACTS],
      ['extraHosts must be a list', 'extraHosts: "x"', 'c', {}, NO_FACTS],
      ['overlaps 127.0.0.0/8 \\(loopback\\)', undefined, 'flags', { serviceSubnet: '127.0.0.0/8' }, NO_FACTS],
      ['0.0.0.0 is the unspecified block', undefined, 'flags', { advertiseAddress: '0.0.0.0' }, NO_FACTS],
      ['tokenTTL 100000h is out of range', 'tokenTTL: 100000h', 'c', {}, NO_FACTS],
      ['not valid YAML', 'a: [', 'c', {}, NO_FACTS],
    ]
    for (const [message, ...args] of cases) expect(() => clusterConfig(...args), message).toThrow(new RegExp(message))
    const join0 = {
      kind: 'JoinFile',
      role: 'worker',
      endpoint: '192.0.2.1:6443',
      token: 'abcdef.0123456789abcdef',
      caCertHash: `sha256:${'a'.repeat(64)}`,
      expires: new Date(Date.now() + 86_400_000).toISOString(),
    }
    const jf = (o: object) => JSON.stringify({ ...join0, ...o })
    expect(parseJoinFile(jf({}), 'j').endpoint).toBe('192.0.2.1:6443')
    expect(() => parseJoinFile(jf({ role: 'admin' }), 'j')).toThrow(/role is not worker or control-plane/)
    expect(() => parseJoinFile(jf({ expires: 'tomorrow' }), 'j')).toThrow(/expires is not a timestamp/)
    expect(() => parseJoinFile(jf({ endpoint: { host: 'x' } }), 'j')).toThrow(/endpoint is not host:port/)
    expect(() => parseManifest('kubernetes: 1.29.3\nplatforms: [linux/amd64]\nimages: "x"\n', 'm')).toThrow(/images: must be a list/)
    const root = await mkdtemp(join(dir, 'root-'))
    const w = installer(signed, ['--role', 'worker', '--root', root, '--dry-run', '--wait-timeout', '99999999'])
    expect(w.code).toBe(2)
    expect(w.stderr.trim()).toBe('install: EUSAGE: --wait-timeout "99999999": give whole seconds from 1 to 86400, e.g. 600')
    const jpath = join(dir, 'worker.yaml')
    await writeFile(jpath, jf({}), { mode: 0o644 })
    const j = installer(signed, ['--role', 'worker', '--root', root, '--dry-run', '--join-file', jpath, '--phases', 'verify'])
    expect(j.code, j.stderr).toBe(0)
    expect(j.stderr).toMatch(/worker\.yaml is readable by others \(mode 644\)/)
    expect(j.stderr).toMatch(/will trust the control plane at 192\.0\.2\.1:6443 with CA key sha256:a{64}/)
  })

  it('names from a lock never act on the terminal', () => {
    expect(printable('conntrack\u001b[2J\u001b[H')).toBe('conntrack\\x1b[2J\\x1b[H')
    const lock = JSON.parse(
      JSON.stringify({
        lockVersion: 1,
        kubernetes: '1.29.3',
        platforms: ['linux/amd64'],
        files: [],
        images: [],
        packages: [
          {
            release: 'debian-12',
            platform: 'linux/amd64',
            name: 'evil\u001b[2J',
            version: '1',
            url: 'http://deb.example/x.deb',
            integrity: Sha256.of('x').sri,
            size: 1,
            file: 'x.deb',
          },
        ],
      }),
    )
    expect(() => parseLock(JSON.stringify(lock))).toThrow(/packages\[0\]\.name: holds control characters/)
  })
})
