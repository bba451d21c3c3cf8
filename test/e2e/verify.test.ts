import { execFileSync } from 'node:child_process'
import { appendFile, cp, mkdir, mkdtemp, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TarWriter } from '../../bundle/tar.js'
import { writeAtomic } from '../../bundle/atomic.js'
import { deltaBytes } from '../../bundle/delta.js'
import { formatSums, parseSums } from '../../bundle/sums.js'
import { Sha256 } from '../../bundle/digest.js'
import { isKaError, type KaError } from '../../bundle/errors.js'
import { verifyBundle } from '../../bundle/verify.js'
import { bundleCli } from '../support/cli.js'
import { lockWorld, startWorld, type World } from '../support/world.js'

let dir: string
let world: World
let tar: string
let folder: string
const NAME = 'kube-airgap-v1.29.3-linux-amd64'

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-verify-'))
  world = await startWorld(dir)
  const lockPath = join(dir, 'bundle.lock.json')
  await lockWorld(world, lockPath, join(dir, 'cache'))
  const r = await bundleCli(['build', '--lock', lockPath, '--out', join(dir, 'out'), '--cache', join(dir, 'cache'), '--json', ...world.args])
  tar = JSON.parse(r.stdout).bundle
  execFileSync('tar', ['xf', tar], { cwd: join(dir, 'out') })
  folder = join(dir, 'out', NAME)
})
afterAll(async () => {
  await world.close()
  await rm(dir, { recursive: true, force: true })
})

async function failure(path: string): Promise<KaError> {
  const e = await verifyBundle(path).then(
    () => undefined,
    (err: unknown) => err,
  )
  if (!isKaError(e)) throw new Error(`expected a verification failure, got ${String(e)}`)
  return e
}

async function copy(): Promise<string> {
  const to = join(dir, `copy-${Math.random().toString(36).slice(2)}`, NAME)
  await cp(folder, to, { recursive: true })
  return to
}

/**
 * A copy of the bundle cut into a delta by hand, the way `bundle build --upgrade-from` lays one
 * out: `taken` moved into an "old bundle" folder beside it, DELTA.json listing them (with
 * `edit` applied), SHA256SUMS listing the rest and DELTA.json.
 */
async function cutDelta(taken: string[], edit: (d: ReturnType<typeof JSON.parse>) => void = () => {}): Promise<{ delta: string; base: string }> {
  const delta = await copy()
  const base = join(dirname(delta), 'kube-airgap-v1.29.0-linux-amd64')
  const files = []
  for (const p of taken) {
    await mkdir(dirname(join(base, p)), { recursive: true })
    await rename(join(delta, p), join(base, p))
    files.push({ path: p, sha256: (await Sha256.ofFile(join(base, p))).digest })
  }
  const doc = JSON.parse(deltaBytes({ base: 'kube-airgap-v1.29.0-linux-amd64', kubernetes: '1.29.0', files }).toString())
  edit(doc)
  const text = JSON.stringify(doc)
  await writeFile(join(delta, 'DELTA.json'), text)
  const sums = parseSums(await readFile(join(delta, 'SHA256SUMS'), 'utf8'), 'SHA256SUMS')
  for (const p of taken) sums.delete(p)
  await writeFile(join(delta, 'SHA256SUMS'), formatSums(sums.set('DELTA.json', Sha256.of(text))))
  return { delta, base }
}

const problems = (e: KaError) => (e.facts.problems as { path: string; problem: string }[]).map((p) => `${p.path}: ${p.problem}`)

describe('verifyBundle of a delta bundle', () => {
  const taken = ['files/kubectl', 'files/runc.amd64']

  it('passes a delta alone (the old files not found) and with its old bundle beside it or given (each old file checked)', async () => {
    const { delta, base } = await cutDelta(taken)
    const moved = join(dirname(base), 'elsewhere')
    await rename(base, moved)
    const alone = await verifyBundle(delta)
    expect(alone.delta).toMatchObject({
      base: 'kube-airgap-v1.29.0-linux-amd64',
      paths: ['files/kubectl', 'files/runc.amd64'],
      missing: [{ path: 'files/kubectl' }, { path: 'files/runc.amd64' }],
    })
    expect(alone.digests.has('files/kubectl')).toBe(false)
    const given = await verifyBundle(delta, { base: moved })
    expect(given.delta).toMatchObject({ dir: moved, missing: [] })
    await rename(moved, base)
    const beside = await verifyBundle(delta)
    expect(beside.delta).toMatchObject({ dir: base, missing: [] })
    expect(beside.digests.get('files/kubectl')?.hex).toBe((await Sha256.ofFile(join(base, 'files/kubectl'))).digest.hex)
    await expect(verifyBundle(delta, { base: join(dir, 'nowhere') })).rejects.toMatchObject({
      code: 'EUSAGE',
      message: expect.stringMatching(/^--base .*nowhere: no such folder/),
    })
  })

  it('names an old file that changed, one the delta holds itself, a forged or unsafe DELTA.json, and one SHA256SUMS does not list', async () => {
    const changed = await cutDelta(taken)
    await appendFile(join(changed.base, 'files/kubectl'), 'x')
    expect(problems(await failure(changed.delta))).toEqual([
      expect.stringMatching(
        /kube-airgap-v1\.29\.0-linux-amd64\/files\/kubectl: changed in the old bundle: DELTA\.json pins sha256 [0-9a-f]{64}, found [0-9a-f]{64}$/,
      ),
    ])

    // A folder of the old bundle that links out of it: what is reached through it is not taken.
    const linked = await cutDelta(taken)
    const outside = join(dirname(linked.base), 'outside-files')
    await rename(join(linked.base, 'files'), outside)
    await symlink(outside, join(linked.base, 'files'))
    expect((await verifyBundle(linked.delta)).delta?.missing.map((f) => f.path)).toEqual(taken)

    const held = await cutDelta(taken)
    await cp(join(held.base, 'files/kubectl'), join(held.delta, 'files/kubectl'))
    expect(problems(await failure(held.delta))).toEqual(['files/kubectl: not listed in SHA256SUMS'])

    const both = await cutDelta(taken, (d) => d.files.push({ path: 'files/crictl-v1.29.0-linux-amd64.tar.gz', sha256: Sha256.of('x').hex }))
    expect(problems(await failure(both.delta))).toContain('files/crictl-v1.29.0-linux-amd64.tar.gz: listed in both SHA256SUMS and DELTA.json')

    const unsafe = await cutDelta(taken, (d) => (d.files[0].path = '../../etc/shadow'))
    expect(problems(await failure(unsafe.delta))).toContainEqual(
      expect.stringMatching(/^DELTA\.json: files\[0\] names an unsafe path "\.\.\/\.\.\/etc\/shadow"$/),
    )

    const unlisted = await cutDelta(taken)
    const sums = (await readFile(join(unlisted.delta, 'SHA256SUMS'), 'utf8')).replace(/^.* {2}DELTA\.json\n/m, '')
    await writeFile(join(unlisted.delta, 'SHA256SUMS'), sums)
    expect(problems(await failure(unlisted.delta))).toContain('DELTA.json: not listed in SHA256SUMS')
  })
})

describe('verifyBundle', () => {
  it('passes a good tar and a good folder', async () => {
    expect((await verifyBundle(tar)).name).toBe(NAME)
    const r = await verifyBundle(folder)
    expect(r.files).toBe(Number(execFileSync('find', [folder, '-type', 'f'], { encoding: 'utf8' }).trim().split('\n').length))
    expect(r.lock.platforms).toEqual(['linux/amd64'])
  })

  it('names a changed byte, a missing file, an unlisted file and a link', async () => {
    const b = await copy()
    const runc = join(b, 'files', 'runc.amd64')
    const bytes = await readFile(runc)
    bytes[10] = bytes[10]! ^ 0x01
    await writeFile(runc, bytes)
    await unlink(join(b, 'files', 'kubectl'))
    await writeFile(join(b, 'files', 'extra.sh'), 'echo hi\n')
    await symlink('/etc/passwd', join(b, 'files', 'passwd'))
    const e = await failure(b)
    expect(e.code).toBe('EVERIFY')
    expect(e.exitCode).toBe(1)
    const list = problems(e)
    expect(list).toContainEqual(expect.stringMatching(/^files\/runc\.amd64: changed: expected sha256 [0-9a-f]{64}, found [0-9a-f]{64}$/))
    expect(list).toContain('files/kubectl: missing')
    expect(list).toContain('files/extra.sh: not listed in SHA256SUMS')
    expect(list).toContainEqual(expect.stringMatching(/^files\/passwd: not a regular file/))
    expect(e.message).toMatch(/and 3 more/)
  })

  it('catches a lock and SHA256SUMS that agree with each other but not with the files', async () => {
    const b = await copy()
    const lock = JSON.parse(await readFile(join(b, 'bundle.lock.json'), 'utf8'))
    lock.files[0].integrity = Sha256.of('something else').sri
    const lockText = `${JSON.stringify(lock, null, 2)}\n`
    await writeFile(join(b, 'bundle.lock.json'), lockText)
    const sums = (await readFile(join(b, 'SHA256SUMS'), 'utf8')).replace(/^[0-9a-f]{64}(?= {2}bundle\.lock\.json$)/m, Sha256.of(lockText).hex)
    await writeFile(join(b, 'SHA256SUMS'), sums)
    expect(problems(await failure(b))).toContainEqual(expect.stringMatching(/SHA256SUMS says sha256 [0-9a-f]{64}, the lock pins [0-9a-f]{64}/))
  })

  it('refuses a tar with a path that escapes the bundle, a link, or a changed byte', async () => {
    const evil = join(dir, 'evil.tar')
    await writeAtomic(evil, async (sink) => {
      const w = new TarWriter(sink)
      await w.directory(NAME)
      await w.data(`${NAME}/SHA256SUMS`, 0o644, Buffer.alloc(0))
      await w.data(`${NAME}/../../etc/cron.d/evil`, 0o644, Buffer.from('boom'))
      await w.end()
    })
    expect(problems(await failure(evil))).toContainEqual(expect.stringMatching(/etc\/cron\.d\/evil: unsafe path/))

    const flipped = join(dir, 'flipped', `${NAME}.tar`)
    await cp(tar, flipped)
    const bytes = await readFile(flipped)
    // Flip a byte inside calico.yaml's body: GNU tar -R tells in which block its header is.
    const block = Number(/block (\d+): .*files\/calico\.yaml/.exec(execFileSync('tar', ['tRf', flipped], { encoding: 'utf8' }))![1])
    const at = (block + 1) * 512 + 100
    bytes[at] = bytes[at]! ^ 0xff
    await writeFile(flipped, bytes)
    const e = await failure(flipped)
    expect(problems(e).some((p) => /changed: expected/.test(p))).toBe(true)

    const withLink = join(dir, 'link')
    await cp(folder, join(withLink, NAME), { recursive: true })
    await symlink('/etc/shadow', join(withLink, NAME, 'files', 'shadow'))
    execFileSync('tar', ['cf', 'b.tar', NAME], { cwd: withLink })
    expect(problems(await failure(join(withLink, 'b.tar')))).toContainEqual(expect.stringMatching(/files\/shadow: a SymbolicLink entry/))
  })

  it('checks the .tar.sha256 beside a tar', async () => {
    const d = join(dir, 'sidecar')
    await cp(tar, join(d, `${NAME}.tar`))
    await writeFile(join(d, `${NAME}.tar.sha256`), `${'0'.repeat(64)}  ${NAME}.tar\n`)
    expect(problems(await failure(join(d, `${NAME}.tar`)))).toContainEqual(
      expect.stringMatching(/the tar's sha256 is [0-9a-f]{64}, the \.sha256 file says 0{64}/),
    )
  })

  it('`bundle verify` prints every problem and exits 1', async () => {
    const b = await copy()
    await appendFile(join(b, 'files', 'calico.yaml'), '# changed\n')
    await unlink(join(b, 'files', 'kubelet'))
    const r = await bundleCli(['verify', b])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/^bundle: EVERIFY: .* failed verification: files\/calico\.yaml: changed: .* \(and 1 more\); do not install it/m)
    expect(r.stderr).toMatch(/^ {2}files\/kubelet: missing$/m)
    const missing = await bundleCli(['verify', join(dir, 'nope')])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/EUSAGE: .*nope: no such bundle/)
  })
})
