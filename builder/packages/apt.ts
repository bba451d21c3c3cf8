import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import type { Arch } from '../../bundle/platform.js'
import { parsePackages, type DebPackage } from './debian.js'
import { download } from '../download/download.js'
import { applyMirrors, fetchText, type HttpOptions, type Mirror } from '../download/http.js'
import type { Cache } from '../download/cache.js'
import type { DebRelease, Suite } from './releases.js'

/** How an archive is read: through these mirrors, trusting these keyrings (the release's and the user's). */
export interface AptOptions {
  cache: Cache
  http: HttpOptions
  mirrors: readonly Mirror[]
  keyrings: readonly string[]
  /** The gpgv program that checks the archive's signature. */
  gpgv: string
  /** The xz program that unpacks Packages.xz (the one the build already needs for Node.js). */
  xz: string
}

export interface SuiteIndex {
  packages: DebPackage[]
  /** The Release file's Date, as snapshot services name the archive's state then (20260711T101637Z). */
  timestamp: string
}

/** Index files in the order apt prefers them, as a Release file names them. */
const INDEX_NAMES = ['Packages.xz', 'Packages.gz', 'Packages'] as const

/**
 * One suite of a release, read the way apt reads it: InRelease (or Release with
 * Release.gpg), its signature checked with gpgv against the release's archive keyring (and
 * any the user adds), then for each component the index file the signed Release lists,
 * preferring .xz, then .gz, then uncompressed, downloaded against the sha256 and size the
 * Release gives. Nothing from the archive is parsed before its signature or hash holds.
 */
export async function readSuite(release: DebRelease, suite: Suite, arch: Arch, o: AptOptions): Promise<SuiteIndex> {
  const base = (suite.archive ?? release.archive)(arch)
  const dists = `${base}/dists/${suite.suite}`
  const where = `${release.id} ${suite.suite}`
  const release_ = await signedRelease(dists, where, o)
  const sums = releaseSums(release_)
  const packages: DebPackage[] = []
  for (const component of release.components) {
    const name = INDEX_NAMES.map((n) => `${component}/binary-${arch}/${n}`).find((p) => sums.has(p))
    if (!name) throw new KaError('EFETCH', `${where}: the signed Release lists no ${component}/binary-${arch}/Packages index; is ${arch} in this archive?`)
    const { sha256, size } = sums.get(name)!
    const partial = o.cache.partialPath(`index-${randomBytes(8).toString('hex')}`)
    try {
      // The index is checked against the signed Release as it downloads (EINTEGRITY names it).
      await download(
        { what: `${where} ${name} (against the signed Release)`, url: applyMirrors(`${dists}/${name}`, o.mirrors), partial, expected: sha256, size },
        o.http,
      )
      const text = await unpack(partial, name, o.xz)
      packages.push(...parsePackages(text, base))
    } finally {
      await rm(partial, { force: true })
    }
  }
  const date = /^Date:\s*(.+)$/m.exec(release_)?.[1]
  const at = date ? new Date(date) : undefined
  if (!at || Number.isNaN(at.getTime())) throw new KaError('EFETCH', `${where}: the signed Release has no Date; the archive is not one apt would use`)
  return {
    packages,
    timestamp: at
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z'),
  }
}

/** The Release text, only once its signature holds: InRelease, else Release + Release.gpg. */
async function signedRelease(dists: string, where: string, o: AptOptions): Promise<string> {
  const get = (file: string) => fetchText(`${where} ${file}`, applyMirrors(`${dists}/${file}`, o.mirrors), o.http)
  const inRelease = await get('InRelease')
  if (inRelease !== undefined) return gpgv(where, 'InRelease', o, inRelease)
  const [text, signature] = await Promise.all([get('Release'), get('Release.gpg')])
  if (text === undefined)
    throw new KaError('EFETCH', `${where}: the archive has neither InRelease nor Release at ${dists}; check the release table and --mirror`)
  if (signature === undefined) throw new KaError('ESIGNATURE', `${where}: Release is not signed (no InRelease, no Release.gpg); refusing an unsigned archive`)
  return gpgv(where, 'Release', o, text, signature)
}

/**
 * gpgv against the keyrings; returns the signed text (for InRelease, only what the
 * signature covers: gpgv --output). A signature by any other key, or by an expired or revoked
 * one, is ESIGNATURE.
 */
export async function gpgv(where: string, file: string, o: AptOptions, text: string, detached?: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kube-airgap-gpgv-'))
  try {
    await writeFile(join(dir, file), text)
    if (detached !== undefined) await writeFile(join(dir, `${file}.gpg`), detached)
    const keyrings = o.keyrings.flatMap((k) => ['--keyring', k])
    const args =
      detached !== undefined
        ? [...keyrings, '--status-fd', '1', join(dir, `${file}.gpg`), join(dir, file)]
        : [...keyrings, '--status-fd', '1', '--output', join(dir, 'signed'), join(dir, file)]
    const r = await runTool(o.gpgv, args, 'gpgv is not installed: the build machine needs it to check the archive signature (apt-get install gpgv)')
    // GOODSIG, not VALIDSIG: gpgv also says VALIDSIG (and exits 0) for a signature by an
    // expired or revoked key, which apt refuses (EXPKEYSIG, REVKEYSIG); one good signature is enough.
    if (r.code !== 0 || !/^\[GNUPG:\] GOODSIG /m.test(r.stdout)) {
      const status = (tag: string) => new RegExp(`^\\[GNUPG:\\] (${tag}[^\\n]*)`, 'm').exec(r.stdout)?.[1]
      const why =
        status('NO_PUBKEY') ??
        status('BADSIG') ??
        status('EXPKEYSIG') ??
        status('REVKEYSIG') ??
        status('EXPSIG') ??
        status('ERRSIG') ??
        status('NODATA') ??
        r.stderr.trim().split('\n').pop() ??
        `gpgv exited ${r.code}`
      throw new KaError(
        'ESIGNATURE',
        `${where}: ${file} is not signed by the release's archive key (${why}); check --mirror, or give the mirror's key with --keyring`,
      )
    }
    return detached !== undefined ? text : await readFile(join(dir, 'signed'), 'utf8')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** The SHA256 section of a Release file: path -> sha256 and size. */
export function releaseSums(text: string): Map<string, { sha256: Sha256; size: number }> {
  const out = new Map<string, { sha256: Sha256; size: number }>()
  const section = /^SHA256:\n((?:[ \t].*\n?)*)/m.exec(text)?.[1] ?? ''
  for (const line of section.split('\n')) {
    const m = /^\s+([0-9a-f]{64})\s+(\d+)\s+(\S+)$/.exec(line)
    if (m) out.set(m[3]!, { sha256: Sha256.fromHex(m[1]!), size: Number(m[2]) })
  }
  return out
}

async function unpack(path: string, name: string, xz: string): Promise<string> {
  if (name.endsWith('.gz')) return gunzipSync(await readFile(path)).toString('utf8')
  if (!name.endsWith('.xz')) return readFile(path, 'utf8')
  const r = await runTool(xz, ['-dc', path], 'xz is not installed: the build machine needs it (apt-get install xz-utils)')
  if (r.code !== 0) throw new KaError('EFETCH', `${name}: xz could not unpack it (${r.stderr.trim()})`)
  return r.stdout
}

function runTool(cmd: string, args: string[], missing: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (c: Buffer) => out.push(c))
    child.stderr.on('data', (c: Buffer) => err.push(c))
    child.on('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT' ? new KaError('EUSAGE', missing) : e))
    child.on('close', (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }))
  })
}
