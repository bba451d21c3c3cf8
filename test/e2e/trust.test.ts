import { execFileSync, execSync } from 'node:child_process'
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Sha256 } from '../../bundle/digest.js'
import { bundleCli } from '../support/cli.js'
import { REPO } from '../support/fake-upstream.js'
import { lockWorld, startWorld, type World } from '../support/world.js'

/** USB media and trust: split parts, Ed25519 signatures (checked with openssl too), the SBOM, the verification record. */
const NAME = 'kube-airgap-v1.29.3-linux-amd64'
const INSTALLER = (bundle: string) => join(bundle, 'installer', 'install.mjs')
let dir: string
let world: World
let lockPath: string
let keys: string
let signed: string

const runInstaller = (bundle: string, args: string[]) => {
  try {
    return {
      code: 0,
      stdout: execFileSync(process.execPath, [INSTALLER(bundle), '--bundle', bundle, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
      stderr: '',
    }
  } catch (e) {
    const err = e as { status: number; stdout: string; stderr: string }
    return { code: err.status, stdout: err.stdout, stderr: err.stderr }
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-trust-'))
  world = await startWorld(dir)
  lockPath = join(dir, 'bundle.lock.json')
  await lockWorld(world, lockPath, join(dir, 'cache'))
  keys = join(dir, 'keys')
  const k = await bundleCli(['keygen', '--out', keys])
  expect(k.code, k.stderr).toBe(0)
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
  execFileSync('tar', ['xf', `${NAME}.tar`], { cwd: join(dir, 'signed') })
  signed = join(dir, 'signed', NAME)
}, 120_000)
afterAll(async () => {
  await world.close()
  await rm(dir, { recursive: true, force: true })
})

describe('split parts', () => {
  it('a corrupted part is named alone; the repaired set verifies, joins, and installs; cat | tar x works too', async () => {
    const out = join(dir, 'split')
    const r = await bundleCli(['build', '--lock', lockPath, '--out', out, '--cache', join(dir, 'cache'), '--split', '256K', ...world.args])
    expect(r.code, r.stderr).toBe(0)
    const files = (await readdir(out)).sort()
    expect(files).toContain(`${NAME}.parts.sha256`)
    expect(files).not.toContain(`${NAME}.tar`)
    const parts = files.filter((f) => /\.tar\.\d{3}$/.test(f))
    expect(parts.length).toBeGreaterThan(3)
    for (const p of parts.slice(0, -1)) expect((await stat(join(out, p))).size).toBe(256 * 1024)
    expect((await bundleCli(['verify', join(out, `${NAME}.parts.sha256`)])).code).toBe(0)

    const victim = join(out, parts[2]!)
    const good = await readFile(victim)
    const bad = Buffer.from(good)
    bad[1000] = bad[1000]! ^ 1
    await writeFile(victim, bad)
    const v = await bundleCli(['verify', join(out, `${NAME}.tar.000`)])
    expect(v.code).toBe(1)
    expect(v.stderr.trim()).toBe(
      `bundle: EVERIFY: ${NAME}.tar: ${parts[2]}: changed: expected sha256 ${Sha256.of(good).hex}, found ${Sha256.of(bad).hex}; copy this part again`,
    )
    const kept = await readFile(join(out, parts[3]!))
    await rm(join(out, parts[3]!))
    const two = await bundleCli(['verify', join(out, `${NAME}.parts.sha256`)])
    expect(two.stderr).toMatch(new RegExp(`^ {2}${parts[3]!.replace(/\./g, '\\.')}: missing: copy this part again$`, 'm'))

    // Repaired: the set verifies, joins into the original tar, and the installer accepts it.
    await writeFile(victim, good)
    await writeFile(join(out, parts[3]!), kept)
    expect((await bundleCli(['verify', join(out, `${NAME}.parts.sha256`)])).code).toBe(0)
    const j = await bundleCli(['join', join(out, `${NAME}.parts.sha256`)])
    expect(j.code, j.stderr).toBe(0)
    const whole = (await readFile(join(out, `${NAME}.parts.sha256`), 'utf8')).trim().split('\n').pop()!.split(' ')[0]
    expect(Sha256.of(await readFile(join(out, `${NAME}.tar`))).hex).toBe(whole)
    const catDir = join(dir, 'cat')
    await mkdir(catDir)
    execSync(`cat ${out}/${NAME}.tar.* | tar x -C ${catDir}`)
    const inst = runInstaller(join(catDir, NAME), ['--role', 'worker', '--root', await mkdtemp(join(dir, 'root-')), '--phases', 'verify'])
    expect(inst.code, inst.stderr).toBe(0)
    expect(inst.stdout).toMatch(/\[verify\] checked +bundle kube-airgap-v1\.29\.3-linux-amd64/)
  })

  it('--media fat32 keeps one part under 4 GiB', async () => {
    const r = await bundleCli(['build', '--lock', lockPath, '--out', join(dir, 'fat'), '--cache', join(dir, 'cache'), '--media', 'fat32', ...world.args])
    expect(r.code, r.stderr).toBe(0)
    expect((await readdir(join(dir, 'fat'))).sort()).toEqual([`${NAME}.parts.sha256`, `${NAME}.tar.000`])
  })
})

describe('signatures', () => {
  it('a signed bundle verifies with the public key, and with openssl alone', async () => {
    const pub = join(keys, 'kube-airgap.pub')
    expect(((await stat(join(keys, 'kube-airgap.key'))).mode & 0o777).toString(8)).toBe('600')
    const v = await bundleCli(['verify', join(dir, 'signed', `${NAME}.tar`), '--public-key', pub])
    expect(v.code, v.stderr).toBe(0)
    expect(v.stdout).toMatch(/; signed by sha256:[0-9a-f]{64}$/m)
    const openssl = execSync(`openssl pkeyutl -verify -pubin -inkey ${pub} -rawin -in ${signed}/STATEMENT.json -sigfile ${signed}/SIGNATURE`, {
      encoding: 'utf8',
    })
    expect(openssl.trim()).toBe('Signature Verified Successfully')
    // The statement binds SHA256SUMS (and through it every file, the SBOM too) and the lock.
    const statement = JSON.parse(await readFile(join(signed, 'STATEMENT.json'), 'utf8'))
    expect(statement.sha256sums).toBe(Sha256.of(await readFile(join(signed, 'SHA256SUMS'))).oci)
    expect(statement.lock).toBe(Sha256.of(await readFile(join(signed, 'bundle.lock.json'))).oci)
    expect(await readFile(join(signed, 'SHA256SUMS'), 'utf8')).toMatch(/ {2}sbom\.cdx\.json$/m)
    // Deterministic: signing the same lock again gives the same tar.
    const again = await bundleCli([
      'build',
      '--lock',
      lockPath,
      '--out',
      join(dir, 'signed2'),
      '--cache',
      join(dir, 'cache'),
      '--sign',
      join(keys, 'kube-airgap.key'),
      ...world.args,
    ])
    expect(again.code).toBe(0)
    expect((await readFile(join(dir, 'signed2', `${NAME}.tar`))).equals(await readFile(join(dir, 'signed', `${NAME}.tar`)))).toBe(true)
  })

  it('a changed byte, a swapped lock or another key: ESIGNATURE, exit 1, and nothing on the node changes', async () => {
    const pub = join(keys, 'kube-airgap.pub')
    const other = join(dir, 'other-keys')
    expect((await bundleCli(['keygen', '--out', other])).code).toBe(0)
    const copy = async (name: string) => {
      const d = join(dir, name, NAME)
      await cp(signed, d, { recursive: true })
      return d
    }
    const changed = await copy('changed')
    const calico = join(changed, 'files', 'calico.yaml')
    const b = await readFile(calico)
    b[100] = b[100]! ^ 1
    await writeFile(calico, b)
    const swapped = await copy('swapped')
    const lockText = (await readFile(join(swapped, 'bundle.lock.json'), 'utf8')).replace('"kubernetes": "1.29.3"', '"kubernetes": "1.29.4"')
    await writeFile(join(swapped, 'bundle.lock.json'), lockText)
    const sums = (await readFile(join(swapped, 'SHA256SUMS'), 'utf8')).replace(/^[0-9a-f]{64}(?= {2}bundle\.lock\.json$)/m, Sha256.of(lockText).hex)
    await writeFile(join(swapped, 'SHA256SUMS'), sums)
    const cases: [string, string, RegExp][] = [
      [changed, pub, /files\/calico\.yaml: changed: .*: not what was signed/],
      [swapped, pub, /SHA256SUMS is not the one that was signed/],
      [signed, join(other, 'kube-airgap.pub'), /the signature does not match .*other-keys\/kube-airgap\.pub/],
    ]
    for (const [bundle, key, message] of cases) {
      const root = await mkdtemp(join(dir, 'node-'))
      const r = runInstaller(bundle, ['--role', 'worker', '--root', root, '--host-commands', root, '--public-key', key])
      expect(r.code, bundle).toBe(1)
      expect(r.stderr.trim().split('\n').pop()).toMatch(/^install: ESIGNATURE: /)
      expect(r.stderr).toMatch(message)
      expect(await readdir(root)).toEqual([])
      const v = await bundleCli(['verify', bundle, '--public-key', key])
      expect(v.code).toBe(1)
      expect(v.stderr).toMatch(/^bundle: ESIGNATURE: /m)
    }
    // An unsigned bundle is refused when a signature is required.
    const unsigned = join(dir, 'unsigned')
    expect((await bundleCli(['build', '--lock', lockPath, '--out', unsigned, '--cache', join(dir, 'cache'), ...world.args])).code).toBe(0)
    const u = await bundleCli(['verify', join(unsigned, `${NAME}.tar`), '--require-signature'])
    expect(u.code).toBe(1)
    expect(u.stderr).toMatch(/ESIGNATURE: .*the bundle is not signed/)
  })
})

describe('SBOM and verification record', () => {
  it('the SBOM is CycloneDX 1.5 and validates against the published schema', async () => {
    const r = await bundleCli(['inspect', join(dir, 'signed', `${NAME}.tar`), '--sbom'])
    expect(r.code, r.stderr).toBe(0)
    const sbom = JSON.parse(r.stdout)
    const require = createRequire(import.meta.url)
    const Ajv = require('ajv').default
    const addFormats = require('ajv-formats').default
    const res = join(REPO, 'node_modules', '@cyclonedx', 'cyclonedx-library', 'res', 'schema')
    const ajv = new Ajv({ strict: false, allErrors: true })
    addFormats(ajv)
    // The 1.5 schema refers to its companions by these names, next to its own $id.
    for (const f of ['spdx.SNAPSHOT.schema.json', 'jsf-0.82.SNAPSHOT.schema.json'])
      ajv.addSchema({ ...JSON.parse(await readFile(join(res, f), 'utf8')), $id: `http://cyclonedx.org/schema/${f}` })
    const validate = ajv.compile(JSON.parse(await readFile(join(res, 'bom-1.5.SNAPSHOT.schema.json'), 'utf8')))
    expect(validate(sbom), JSON.stringify(validate.errors?.slice(0, 3))).toBe(true)
    const byName = new Map(sbom.components.map((c: { name: string }) => [c.name, c]))
    expect(byName.get('containerd')).toMatchObject({
      type: 'file',
      version: '1.7.16',
      purl: expect.stringMatching(/^pkg:generic\/containerd@1\.7\.16\?download_url=https%3A%2F%2Fgithub\.com/),
    })
    expect(byName.get('registry.k8s.io/pause:3.9')).toMatchObject({
      type: 'container',
      purl: expect.stringMatching(/^pkg:oci\/pause@sha256%3A[0-9a-f]{64}\?repository_url=registry\.k8s\.io%2Fpause&tag=3\.9$/),
    })
    expect(sbom.components.length).toBeGreaterThan(0)
    expect(sbom.components.every((c: { hashes: { content: string }[] }) => /^[0-9a-f]{64}$/.test(c.hashes[0]!.content))).toBe(true)
  })

  it("the installer's verify writes a record a security officer can keep", async () => {
    const root = await mkdtemp(join(dir, 'record-'))
    const r = runInstaller(signed, ['--root', root, 'verify', '--public-key', join(keys, 'kube-airgap.pub')])
    expect(r.code, r.stderr).toBe(0)
    const [f] = await readdir(join(root, 'var/log/kube-airgap'))
    const record = JSON.parse(await readFile(join(root, 'var/log/kube-airgap', f!), 'utf8'))
    expect(record).toMatchObject({
      result: 'verified',
      bundle: NAME,
      lock: Sha256.of(await readFile(join(signed, 'bundle.lock.json'))).oci,
      signedBy: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
    })
    expect(record.files['files/calico.yaml']).toBe(Sha256.of(await readFile(join(signed, 'files/calico.yaml'))).oci)
  })
})
