import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { printable } from '../../bundle/text.js'
import { runSync as run } from '../support/cli.js'
import { appendMembers, type Member, type MemberType, patchMember } from '../support/tar-edit.js'
import { lockWorld, signedBuilds, startWorld, type World } from '../support/world.js'

/**
 * The standalone verifier judges what GNU tar will make of a tar, not only its names and
 * bytes: every forged member an attacker with the stick can append or rewrite (links and
 * devices under a slash-ended name, setuid modes, other owners, regex-looking names, a
 * medium that answers the unpacking read differently) is run through the real verifier by
 * dash, the real GNU tar, sha256sum and openssl. Where the verifier passes a tar, GNU tar's
 * own unpacking of it must give the genuine tree.
 */
const NAME = 'kube-airgap-v1.29.3-linux-amd64'
let dir: string
let world: World
let keys: string
let verifier: string
let signedTar: string
let genuineTree: string
/** The genuine tar as root's `tar -xf` unpacks it. */
let genuineRoot: string
let partsDir: string

const verify = (...args: string[]) => run('dash', [verifier, ...args])
/** An async run, for the property test: many verifiers at once on two cores. */
const verifyAsync = (...args: string[]) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const c = spawn('dash', [verifier, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    c.stdout.on('data', (d: Buffer) => (stdout += d))
    c.stderr.on('data', (d: Buffer) => (stderr += d))
    c.on('close', (code) => resolve({ code, stdout, stderr }))
  })
let n = 0
const forged = async (members: Member[]) => {
  const out = join(dir, `forged-${n++}.tar`)
  await appendMembers(signedTar, members, out)
  return out
}
/** What `tar -xf` as root makes of a tar: every path with its type, mode, owner, size, link target and content hash. */
const tree = (root: string) =>
  execFileSync('sh', ['-c', `cd "$1" && find . -printf '%y %m %U:%G %s %p -> %l\\n' | sort && find . -type f -exec sha256sum {} + | sort`, 'sh', root], {
    encoding: 'utf8',
  })
const unpackAsRoot = async (tar: string) => {
  const d = await mkdtemp(join(dir, 'x-'))
  spawnSync('tar', ['-xf', tar, '-C', d])
  return d
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-verifier-'))
  world = await startWorld(dir)
  const lockPath = join(dir, 'bundle.lock.json')
  await lockWorld(world, lockPath, join(dir, 'cache'))
  keys = join(dir, 'keys')
  const build = await signedBuilds(world, lockPath, join(dir, 'cache'), keys)
  verifier = join(keys, 'kube-airgap-verify')
  const said = await build(join(dir, 'signed'))
  // A signed build's next step unpacks with the verifier carried apart, not with sha256sum.
  expect(said).toMatch(new RegExp(`^ {8}kube-airgap-verify --extract \\. ${NAME}\\.tar && cd ${NAME}$`, 'm'))
  expect(said).not.toMatch(/sha256sum -c/)
  signedTar = join(dir, 'signed', `${NAME}.tar`)
  // Desktop automounts name sticks like this.
  partsDir = join(dir, 'media', 'USB DISK & co|2')
  await build(partsDir, '--split', '256K')
  genuineRoot = await unpackAsRoot(signedTar)
  genuineTree = tree(genuineRoot)
}, 180_000)
afterAll(async () => {
  await world.close()
  await rm(dir, { recursive: true, force: true })
})

describe('members judged by what GNU tar makes of them', () => {
  it('a link named install/ over the genuine install is refused; GNU tar would have made install the attacker script', async () => {
    const evil = '#!/bin/sh\ntouch /tmp/ka-owned\n'
    for (const type of ['symlink', 'hardlink'] as const) {
      const tar = await forged([
        { path: `${NAME}/STATEMENT_json`, type: 'file', data: evil, mode: 0o755 },
        { path: `${NAME}/install/`, type, link: type === 'symlink' ? 'STATEMENT_json' : `${NAME}/STATEMENT_json` },
      ])
      // The attack is real: GNU tar strips the slash and replaces the install it just wrote.
      const x = await unpackAsRoot(tar)
      expect(await readFile(join(x, NAME, 'install'), 'utf8'), type).toBe(evil)
      const r = verify(tar)
      expect(r.code, `${type}: ${r.stdout}`).toBe(1)
      expect(r.stdout).toBe('')
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr).toMatch(new RegExp(`${NAME}/install/: not a regular file \\(a ${type === 'symlink' ? 'symbolic' : 'hard'} link to `))
    }
  })

  it('SHA256SUMS/ as a link, a device or FIFO under files/, a folder over a file, a member tar cannot unpack: each refused in one line', async () => {
    const cases: [Member[], RegExp][] = [
      [[{ path: `${NAME}/SHA256SUMS/`, type: 'symlink', link: '/etc/passwd' }], /SHA256SUMS\/: not a regular file \(a symbolic link to \/etc\/passwd/],
      [[{ path: `${NAME}/files/console`, type: 'char' }], /files\/console: not a regular file \(a device or FIFO/],
      [[{ path: `${NAME}/files/disk`, type: 'block' }], /files\/disk: not a regular file \(a device or FIFO/],
      [[{ path: `${NAME}/files/pipe`, type: 'fifo' }], /files\/pipe: not a regular file \(a device or FIFO/],
      [[{ path: `${NAME}/files/calico.yaml/`, type: 'dir' }], /files\/calico\.yaml appears twice/],
      [[{ path: `${NAME}/files/calico.yaml/`, type: 'file', data: 'x' }], /files\/calico\.yaml appears twice/],
      [[{ path: `${NAME}/etc/cron.d/`, type: 'dir' }], /etc\/cron\.d\/: a folder no file of the bundle is in/],
      [
        [{ path: `${NAME}/../../etc/cron.d/evil`, type: 'file', data: 'x' }],
        /GNU tar refuses part of it \(tar: .*: Member name contains '\.\.'\); do not unpack it/,
      ],
      [[{ path: `/${NAME}/install`, type: 'file', data: 'x' }], /a member name that is absolute/],
    ]
    for (const [members, message] of cases) {
      const r = verify(await forged(members))
      expect(r.code, members[0]!.path).toBe(1)
      expect(r.stderr.trim().split('\n'), members[0]!.path).toHaveLength(1)
      expect(r.stderr, members[0]!.path).toMatch(message)
    }
  })

  it('property: any member of any type and spelling appended to a signed tar is refused, or tar -xf gives the genuine tree', async () => {
    const types: (MemberType | 'pax' | 'gnu')[] = ['file', 'hardlink', 'symlink', 'char', 'block', 'fifo', 'dir', 'pax', 'gnu']
    const bases = ['install', 'files', 'files/calico.yaml', 'SHA256SUMS', '', 'new']
    const spell = (b: string): string[] => {
      const p = b ? `${NAME}/${b}` : NAME
      return [p, `${p}/`, `./${p}`, p.replace('/', '//'), p.replace(`${NAME}`, `${NAME}/files/..`), `${p}//`]
    }
    const cases: Member[] = []
    for (const t of types)
      for (const b of bases)
        for (const path of spell(b)) {
          const type: MemberType = t === 'pax' || t === 'gnu' ? 'file' : t
          cases.push({
            path,
            type,
            data: type === 'file' ? 'same name, other bytes\n' : undefined,
            link: type === 'symlink' ? '/etc/passwd' : type === 'hardlink' ? `${NAME}/install` : undefined,
            ...(t === 'pax' || t === 'gnu' ? { longName: t } : {}),
          })
        }
    const tars = await Promise.all(cases.map((m) => forged([m])))
    const results: { code: number | null }[] = []
    for (let i = 0; i < tars.length; i += 4) results.push(...(await Promise.all(tars.slice(i, i + 4).map((t) => verifyAsync(t)))))
    let passed = 0
    for (const [i, r] of results.entries()) {
      if (r.code === 1) continue
      expect(r.code, cases[i]!.path).toBe(0)
      passed++
      expect(tree(await unpackAsRoot(tars[i]!)), `${cases[i]!.type} ${cases[i]!.path}`).toBe(genuineTree)
    }
    expect(cases.length).toBe(9 * 6 * 6)
    // Every forged member changes the tree, so none may pass.
    expect(passed).toBe(0)
  }, 300_000)
})

describe('modes and owners', () => {
  it('a setuid node, a bundle folder anyone may write, a file owned by another user: refused in the tar and in the folder', async () => {
    const cases: [string, { mode?: number; uid?: number }, RegExp][] = [
      [`${NAME}/runtime/bin/node`, { mode: 0o4755 }, /runtime\/bin\/node: mode -rwsr-xr-x: setuid, setgid, sticky or writable by others/],
      [`${NAME}`, { mode: 0o777 }, new RegExp(`${NAME}/: mode drwxrwxrwx: setuid`)],
      [`${NAME}/install`, { mode: 0o2755 }, /install: mode -rwxr-sr-x/],
      [`${NAME}/files`, { mode: 0o1777 }, /files\/: mode drwxrwxrwt/],
      [`${NAME}/files/calico.yaml`, { uid: 1000 }, /files\/calico\.yaml: owned by 1000\/0 \(uid\/gid\), not by root/],
    ]
    for (const [path, change, message] of cases) {
      const tar = join(dir, `mode-${n++}.tar`)
      await patchMember(signedTar, path, change, tar)
      const r = verify(tar)
      expect(r.code, path).toBe(1)
      expect(r.stderr, path).toMatch(message)
    }
    // The same on an unpacked folder, for the verifier and the installer's gate.
    const folder = join(dir, 'modes', NAME)
    await mkdir(join(dir, 'modes'))
    execFileSync('tar', ['-xf', signedTar, '-C', join(dir, 'modes')])
    for (const [path, mode] of [
      ['runtime/bin/node', 0o4755],
      ['', 0o777],
      ['files/calico.yaml', 0o664],
    ] as const) {
      const p = join(folder, path)
      const was = (await stat(p)).mode & 0o7777
      await chmod(p, mode)
      const r = verify(folder)
      expect(r.code, path).toBe(1)
      expect(r.stderr, path).toMatch(new RegExp(`${path || 'the bundle folder'}: mode ${mode.toString(8)}, owner root`))
      const i = run(process.execPath, [join(folder, 'installer', 'install.mjs'), '--bundle', folder, 'verify', '--root', await mkdtemp(join(dir, 'root-'))])
      expect(i.code, path).toBe(1)
      expect(i.stderr, path).toMatch(/setuid, setgid, sticky or writable by others/)
      await chmod(p, was)
    }
    expect(verify(folder).code).toBe(0)
  })
})

describe('names are matched as text, never as patterns', () => {
  it('an unsigned STATEMENTxjson rides in no verified tar; a top-level link spelled like the bundle name creates nothing beside it', async () => {
    const s = verify(await forged([{ path: `${NAME}/STATEMENTxjson`, type: 'file', data: 'unsigned' }]))
    expect(s.code).toBe(1)
    expect(s.stderr).toMatch(/STATEMENTxjson: not listed in SHA256SUMS/)
    const like = NAME.replaceAll('.', 'x')
    const tar = await forged([{ path: like, type: 'symlink', link: '/etc' }])
    const out = await mkdtemp(join(dir, 'beside-'))
    const r = verify('--extract', out, tar)
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(new RegExp(`${like}: not a regular file \\(a symbolic link to /etc`))
    expect(await readdir(out)).toEqual([])
  })
})

describe('--extract', () => {
  it('a medium that answers the unpacking read differently: nothing lands beside the bundle, the old bundle stays, no ok is printed', async () => {
    const out = await mkdtemp(join(dir, 'extract-'))
    // An older bundle already unpacked beside it.
    const old = join(out, 'kube-airgap-v1.29.2-linux-amd64')
    await mkdir(old)
    await writeFile(join(old, 'install'), '#!/bin/sh\necho old genuine\n')
    const evil = join(dir, 'evil.tar')
    await appendMembers(
      signedTar,
      [
        { path: 'kube-airgap-v1.29.2-linux-amd64/install', type: 'file', data: '#!/bin/sh\necho owned\n', mode: 0o755 },
        { path: 'etc/cron.d/evil', type: 'file', data: '* * * * * root sh -c owned\n' },
      ],
      evil,
    )
    // The stick: a FIFO that gives the genuine tar on the first `from` reads and the evil one
    // after. The verifier reads it twice: once to check, once to unpack.
    for (const from of [1, 2]) {
      const fifo = join(dir, `stick-${from}.tar`)
      execFileSync('mkfifo', [fifo])
      // A pause after each read: a writer that opened the FIFO again at once would join the reader still draining it.
      const reads = [...Array(from).fill(signedTar), evil, evil, evil].map((f) => `cat '${f}' > '${fifo}'; sleep 0.5`).join('; ')
      const stick = spawn('sh', ['-c', reads], { stdio: 'ignore' })
      const r = verify('--extract', out, fifo)
      stick.kill()
      expect(await readFile(join(old, 'install'), 'utf8')).toBe('#!/bin/sh\necho old genuine\n')
      if (from === 1) {
        expect(r.code, r.stdout + r.stderr).toBe(1)
        expect(r.stdout).toBe('')
        expect(r.stderr.trim().split('\n')).toHaveLength(1)
        expect(r.stderr).toMatch(/the second read of the tar unpacked more than .*\/ \(the medium answered differently the second time\); nothing was kept/)
        expect(await readdir(out)).toEqual(['kube-airgap-v1.29.2-linux-amd64'])
      } else {
        // Both reads were genuine: what was unpacked is the genuine tree, and nothing else.
        expect(r.code, r.stderr).toBe(0)
        expect((await readdir(out)).sort()).toEqual(['kube-airgap-v1.29.2-linux-amd64', NAME])
        expect(tree(join(out, NAME))).toBe(tree(join(genuineRoot, NAME)))
        await rm(join(out, NAME), { recursive: true })
      }
    }
    // The genuine tar: unpacked, reported once, at the end.
    const g = verify('--extract', out, signedTar)
    expect(g.code, g.stderr).toBe(0)
    expect(g.stdout.match(/^ok: /gm)).toHaveLength(1)
    expect(g.stdout.trim().split('\n').pop()).toBe(`unpacked: ${out}/${NAME}`)
    expect((await readdir(out)).sort()).toEqual(['kube-airgap-v1.29.2-linux-amd64', NAME])
    expect(tree(join(out, NAME))).toBe(tree(join(genuineRoot, NAME)))
  })
})

describe('folders, parts and the terminal', () => {
  it('a file name with a newline is refused, not split; a file sha256sum cannot read fails the check', async () => {
    const folder = join(dir, 'names', NAME)
    await mkdir(join(dir, 'names'))
    execFileSync('tar', ['-xf', signedTar, '-C', join(dir, 'names')])
    // "ok: NAME: signed by" on a line of its own, if a name reached the terminal raw.
    const forgedName = `x\nok: ${NAME}: signed by sha256:${'0'.repeat(64)}\n\u001b[2J\u202e`
    await writeFile(join(folder, 'files', forgedName), 'x')
    const r = verify(folder)
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/files\/x\?ok: .*\?\?\[2J\?\?\?: a name with a control character/)
    await rm(join(folder, 'files', forgedName))
    // The same name beside the bundle (the operator's own files) is refused too: it cannot be told apart.
    await writeFile(join(folder, forgedName), 'x')
    expect(verify(folder).stderr).toMatch(/a name with a control character/)
    await rm(join(folder, forgedName))
    // A name beside the bundle that is odd but has no control character: noted, escaped.
    await writeFile(join(folder, 'notes-\u202etxt.exe'), 'x')
    const noted = verify(folder)
    expect(noted.code, noted.stderr).toBe(0)
    expect(noted.stdout).toContain('note: notes-???txt.exe: not part of the bundle')
    await rm(join(folder, 'notes-\u202etxt.exe'))

    // sha256sum failing on one file (an I/O error on a bad stick), as coreutils does: exit 1, a message on stderr.
    const fake = join(dir, 'fake-sha')
    await mkdir(fake)
    await writeFile(
      join(fake, 'sha256sum'),
      `#!/bin/sh\nfor a; do case "$a" in *calico.yaml) echo "sha256sum: $a: Input/output error" >&2; bad=1 ;; esac; done\n/usr/bin/sha256sum "$@"\n[ -z "\${bad:-}" ] || exit 1\n`,
    )
    await chmod(join(fake, 'sha256sum'), 0o755)
    const io = run('dash', [verifier, folder], { PATH: `${fake}:${process.env.PATH}` })
    expect(io.code).toBe(1)
    expect(io.stderr).toMatch(/a file could not be read to the end \(sha256sum failed\)/)
  })

  it('split parts in a folder named "USB DISK & co|2" verify, also from another folder', async () => {
    const p = verify(join(partsDir, `${NAME}.parts.sha256`))
    expect(p.code, p.stderr).toBe(0)
    expect(p.stdout).toMatch(/^ok: /)
    const x = await mkdtemp(join(dir, 'parts-x-'))
    const e = run('sh', ['-c', `cd / && dash "$1" --extract "$2" "$3"`, 'sh', verifier, x, join(partsDir, `${NAME}.tar.000`)])
    expect(e.code, e.stderr).toBe(0)
    expect(await readlink(join(x, NAME, 'install')).catch(() => 'regular')).toBe('regular')
  })

  it('printable() shows newlines, tabs and bidi controls inside a name instead of acting on them', () => {
    expect(printable('a\u202eb\u2066c')).toBe('a\\u202eb\\u2066c')
    expect(printable('conntrack\u001b[2J')).toBe('conntrack\\x1b[2J')
  })
})
