import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { rm } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import type { Arch } from '../../bundle/platform.js'
import { gpgv, type AptOptions } from './apt.js'
import { download } from '../download/download.js'
import { applyMirrors, fetchText } from '../download/http.js'
import { rpmArch, type RpmRelease, type RpmRepo } from './releases.js'
import yaml from 'js-yaml'
import { coreGroup, type DefaultStreams, defaultStreams, parsePrimaryPackage, type RpmPackage } from './rpm.js'

/** How RPM repositories are read: the archive options, plus the programs for .zst and .bz2 metadata. */
export interface DnfOptions extends AptOptions {
  zstd: string
  bzip2: string
}

export interface RepoIndex {
  /** What its modules.yaml lets dnf see (its default streams). */
  modules?: DefaultStreams
  /** Where the packages' hrefs are relative to. */
  base: string
  packages: RpmPackage[]
  /** The core group's mandatory packages, when the repository carries comps. */
  core: string[]
  /** The same repository in the vault, by the point release its .treeinfo names. */
  vault?: string
}

/**
 * The point release a tree is (`9.4`), from its .treeinfo's [release] section (productmd's
 * format). Unsigned, and trusted for nothing but a place to look: what is fetched from there
 * is checked against the pin all the same.
 */
export function treeRelease(text: string | undefined): string | undefined {
  const section = /^\[release\]$([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(text ?? '')?.[1] ?? ''
  const v = /^version\s*=\s*(\d+\.\d+)\s*$/m.exec(section)?.[1]
  return v
}

interface RepomdEntry {
  href: string
  sha256: Sha256
  size?: number
}

/**
 * One repository, read the way dnf reads it with repo_gpgcheck on: repodata/repomd.xml and
 * its detached signature repomd.xml.asc, checked with gpgv against the release's key (and
 * any the user adds); then primary.xml (and comps, when listed) downloaded against the
 * sha256 and size the signed repomd gives, unpacked as its name says (gz, xz, zst, bz2)
 * and parsed as it streams. Nothing from the repository is parsed before its signature or
 * hash holds.
 */
export async function readRepo(release: RpmRelease, repo: RpmRepo, arch: Arch, o: DnfOptions): Promise<RepoIndex> {
  const base = repo.url(arch).replace(/\/$/, '')
  const where = `${release.id} ${repo.name}`
  const get = (file: string) => fetchText(`${where} ${file}`, applyMirrors(`${base}/repodata/${file}`, o.mirrors), o.http)
  const [text, signature, treeinfo] = await Promise.all([
    get('repomd.xml'),
    get('repomd.xml.asc'),
    repo.vault ? fetchText(`${where} .treeinfo`, applyMirrors(`${base}/.treeinfo`, o.mirrors), o.http) : undefined,
  ])
  const minor = treeRelease(treeinfo)
  if (text === undefined) throw new KaError('EFETCH', `${where}: no repodata/repomd.xml at ${base}; check the release table and --mirror`)
  if (signature === undefined) throw new KaError('ESIGNATURE', `${where}: repomd.xml is not signed (no repomd.xml.asc); refusing unsigned repodata`)
  const repomd = await gpgv(where, 'repomd.xml', o, text, signature)
  const data = repomdData(repomd, where)
  const primary = data.get('primary')
  if (!primary) throw new KaError('EFETCH', `${where}: the signed repomd.xml lists no primary metadata; is this an RPM repository?`)
  const packages: RpmPackage[] = []
  await fetchChecked(where, base, primary, o, (stream) => primaryPackages(stream, base, rpmArch(arch), packages, where))
  const group = data.get('group_gz') ?? data.get('group_xz') ?? data.get('group_zst') ?? data.get('group')
  let core: string[] = []
  if (group)
    await fetchChecked(where, base, group, o, async (stream) => {
      core = coreGroup(await textOf(stream))
    })
  const modular = data.get('modules')
  let modules: DefaultStreams | undefined
  if (modular)
    await fetchChecked(where, base, modular, o, async (stream) => {
      const text = await textOf(stream)
      try {
        modules = defaultStreams(yaml.loadAll(text), rpmArch(arch))
      } catch (e) {
        throw new KaError('EFETCH', `${where}: ${modular.href} is not YAML modulemd (${(e as Error).message.split('\n')[0]})`)
      }
    })
  return { base, packages, core, ...(modules ? { modules } : {}), ...(minor && repo.vault ? { vault: repo.vault(minor, arch).replace(/\/$/, '') } : {}) }
}

/** A (small, checked) metadata file as text. */
async function textOf(stream: Readable): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/** repomd.xml's data entries by type; a checksum other than sha256 is refused (a weaker pin than the rest of the lock). */
export function repomdData(xml: string, where: string): Map<string, RepomdEntry> {
  const out = new Map<string, RepomdEntry>()
  for (const m of xml.matchAll(/<data type="([^"]+)">([\s\S]*?)<\/data>/g)) {
    const body = m[2]!
    const sum = /<checksum type="([^"]+)">([0-9a-f]+)<\/checksum>/.exec(body)
    const href = /<location href="([^"]+)"/.exec(body)?.[1]
    if (!sum || !href) continue
    if (sum[1] !== 'sha256')
      throw new KaError(
        'EFETCH',
        `${where}: repomd.xml gives ${m[1]} a ${sum[1]} checksum; only sha256 repodata can be pinned (createrepo_c --checksum sha256)`,
      )
    const size = /<size>(\d+)<\/size>/.exec(body)?.[1]
    out.set(m[1]!, { href, sha256: Sha256.fromHex(sum[2]!), ...(size ? { size: Number(size) } : {}) })
  }
  return out
}

/** Downloads one metadata file against its signed sha256, then hands its unpacked bytes to `use` as a stream. */
async function fetchChecked(where: string, base: string, entry: RepomdEntry, o: DnfOptions, use: (stream: Readable) => Promise<void>): Promise<void> {
  const partial = o.cache.partialPath(`repodata-${randomBytes(8).toString('hex')}`)
  try {
    await download(
      {
        what: `${where} ${entry.href} (against the signed repomd.xml)`,
        url: applyMirrors(`${base}/${entry.href}`, o.mirrors),
        partial,
        expected: entry.sha256,
        ...(entry.size !== undefined ? { size: entry.size } : {}),
      },
      o.http,
    )
    const program = entry.href.endsWith('.xz') ? o.xz : entry.href.endsWith('.zst') ? o.zstd : entry.href.endsWith('.bz2') ? o.bzip2 : undefined
    if (entry.href.endsWith('.gz')) return await use(createReadStream(partial).pipe(createGunzip()))
    if (!program) return await use(createReadStream(partial))
    const child = spawn(program, ['-dc', partial], { stdio: ['ignore', 'pipe', 'pipe'] })
    const failed = new Promise<never>((_, reject) =>
      child.on('error', (e: NodeJS.ErrnoException) =>
        reject(e.code === 'ENOENT' ? new KaError('EUSAGE', `${program} is not installed: the build machine needs it to unpack ${entry.href}`) : e),
      ),
    )
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const closed = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1)))
    await Promise.race([use(child.stdout), failed]).catch((e: unknown) => {
      child.kill()
      throw e
    })
    if ((await closed) !== 0) throw new KaError('EFETCH', `${where}: ${program} could not unpack ${entry.href} (${stderr.trim()})`)
  } finally {
    await rm(partial, { force: true })
  }
}

/** The largest `<package>` entry primary.xml may hold: real ones are a few KiB (a few hundred with many files listed). */
export const PACKAGE_ENTRY_CAP = 4 << 20
const END = '</package>'

/**
 * primary.xml split at each package's end as it streams, keeping this architecture's and
 * noarch: the whole file is never held at once, each byte is searched once, and an entry
 * larger than PACKAGE_ENTRY_CAP (a broken or hostile mirror) ends it in one line.
 */
export async function primaryPackages(stream: Readable, base: string, arch: string, into: RpmPackage[], where: string): Promise<void> {
  let buffered = ''
  let from = 0
  stream.setEncoding('utf8')
  for await (const chunk of stream) {
    buffered += chunk as string
    for (let end = buffered.indexOf(END, from); end >= 0; end = buffered.indexOf(END)) {
      const p = parsePrimaryPackage(buffered.slice(0, end), base)
      if (p && (p.arch === arch || p.arch === 'noarch')) into.push(p)
      buffered = buffered.slice(end + END.length)
    }
    if (buffered.length > PACKAGE_ENTRY_CAP)
      throw new KaError(
        'EFETCH',
        `${where}: primary.xml has a package entry over ${PACKAGE_ENTRY_CAP >> 20} MiB, which no real repository has; the mirror is broken or hostile: use another`,
      )
    // The end tag may straddle the next chunk: search again only from where it could start.
    from = Math.max(0, buffered.length - END.length + 1)
  }
}
