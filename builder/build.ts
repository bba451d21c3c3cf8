import { randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import pLimit from 'p-limit'
import { Sha256 } from '../installer/core/digest.js'
import { KaError } from '../installer/core/errors.js'
import { bundleName, bundleTarName, EXEC_MODE, FILE_MODE, filePath, FILES_DIR, LOCK_FILE, SUMS_FILE, tarSumName } from '../installer/core/layout.js'
import { filesFor, parseLock, reduceLock, serializeLock, type Lock, type LockedFile } from '../installer/core/lock.js'
import { archOf, type Platform } from '../installer/core/platform.js'
import { formatSums } from '../installer/core/sums.js'
import { Cache } from './cache.js'
import { FileHasher } from './hasher.js'
import { applyMirrors, download, httpDefaults, type HttpOptions, type Mirror } from './http.js'
import { silentProgress, type Progress } from './progress.js'
import { TarWriter } from './tar.js'

export interface BuildOptions {
  lockPath: string
  platform: Platform
  outDir: string
  cache: Cache
  http: HttpOptions
  mirrors: readonly Mirror[]
  concurrency: number
  progress: Progress
}

export interface BuiltFile {
  name: string
  version: string
  path: string
  size: number
  from: 'cache' | 'download'
}

export interface BuildResult {
  bundle: string
  sha256: string
  name: string
  platform: Platform
  size: number
  files: BuiltFile[]
  downloadedBytes: number
}

export function buildDefaults(over: Partial<BuildOptions> = {}): BuildOptions {
  return {
    lockPath: 'bundle.lock.json',
    platform: 'linux/amd64',
    outDir: 'dist',
    cache: over.cache ?? new Cache(Cache.defaultRoot()),
    http: over.http ?? httpDefaults(),
    mirrors: [],
    concurrency: 8,
    progress: silentProgress,
    ...over,
  }
}

/** A cache entry whose bytes no longer match its address, found while packing. */
class CorruptEntry extends Error {
  constructor(readonly file: LockedFile) {
    super(`cache entry for ${file.name} is corrupt`)
  }
}

export async function readLock(path: string): Promise<Lock> {
  const text = await readFile(path, 'utf8').catch(() => {
    throw new KaError('EUSAGE', `${path}: cannot read the lock; give one with --lock or make one with \`bundle lock\``)
  })
  return parseLock(text, path)
}

/**
 * Builds the bundle for one platform: every pinned file fetched (or found in the cache),
 * checked against its pin, and packed with the reduced lock and SHA256SUMS into one
 * deterministic tar. The tar is written under a temp name and renamed only when complete,
 * so a crash never leaves a bundle that looks finished.
 */
export async function buildBundle(options: Partial<BuildOptions> = {}): Promise<BuildResult> {
  const o = buildDefaults(options)
  const lock = await readLock(o.lockPath)
  if (!lock.platforms.includes(o.platform)) {
    throw new KaError('EUSAGE', `${o.lockPath} has no ${o.platform} files (it locks ${lock.platforms.join(', ')}); add the platform to the manifest and run \`bundle lock\``)
  }
  const files = filesFor(lock, o.platform)
  const name = bundleName(lock.kubernetes, archOf(o.platform))
  const tarName = bundleTarName(name)
  await mkdir(o.outDir, { recursive: true })
  await removeStaleTemps(o.outDir, tarName)

  const fetched = new Map<string, BuiltFile>()
  /** Cache entries found, not fetched: their hash, computed on the hasher's thread. */
  const checking = new Map<string, Promise<Sha256>>()
  const hasher = new FileHasher()
  let downloadedBytes = 0
  const limit = pLimit(o.concurrency)
  // The first failure stops the others: the user sees its error last, at once. What the
  // others had downloaded stays in the cache's partial files, to be resumed next time.
  const abort = new AbortController()
  const ensure = async (f: LockedFile): Promise<void> => {
    if (abort.signal.aborted) throw abort.signal.reason
    const label = `${f.name} ${f.version}`
    const blob = o.cache.blobPath(f.integrity)
    const have = await stat(blob).catch(() => undefined)
    if (have && (f.size === undefined || have.size === f.size)) {
      fetched.set(f.file, { name: f.name, version: f.version, path: filePath(f.file), size: have.size, from: 'cache' })
      checking.set(f.file, hasher.hash(blob))
      o.progress.note(`cached   ${label}`)
      return
    }
    if (have) await o.cache.evict(f.integrity)
    o.progress.start(f.file, label, f.size)
    const got = await download(
      {
        what: `${label} (${filePath(f.file)})`,
        url: applyMirrors(f.url, o.mirrors),
        partial: o.cache.partialPath(f.integrity.hex),
        expected: f.integrity,
        ...(f.size !== undefined ? { size: f.size } : {}),
        onBytes: (n) => o.progress.advance(f.file, n),
        signal: abort.signal,
      },
      o.http,
    )
    await o.cache.commit(o.cache.partialPath(f.integrity.hex), got.digest)
    downloadedBytes += got.size
    fetched.set(f.file, { name: f.name, version: f.version, path: filePath(f.file), size: got.size, from: 'download' })
    o.progress.done(f.file, 'fetched')
  }

  // Packing starts at once and takes each file as soon as it is in the cache, so writing
  // the tar overlaps with the downloads still running.
  let ready = new Map(files.map((f) => [f.file, limit(() => ensure(f))] as const))
  for (const p of ready.values()) p.catch(() => abort.abort(new Error('stopped: another download failed')))
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        const { sha256, size } = await pack(o, lock, files, name, tarName, {
          ready: (f) => ready.get(f.file)!,
          // A file this run downloaded was hashed on its way into the cache a moment ago;
          // one found in the cache is hashed again (on the other thread) and must match.
          check: (f) => checking.get(f.file),
        })
        await Promise.all(ready.values())
        return { bundle: join(o.outDir, tarName), sha256: sha256.hex, name, platform: o.platform, size, files: files.map((f) => fetched.get(f.file)!), downloadedBytes }
      } catch (e) {
        if (!(e instanceof CorruptEntry) || attempt >= 2) {
          abort.abort(e)
          // Surface the first real failure, not the "stopped" of the ones it cancelled.
          const results = await Promise.allSettled(ready.values())
          const first = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !/^stopped:/.test(String((r.reason as Error)?.message)))
          throw first && !(e instanceof KaError) ? first.reason : e
        }
        o.progress.note(`corrupt  cache entry for ${e.file.name} ${e.file.version}: fetching it again`)
        await Promise.allSettled(ready.values())
        await o.cache.evict(e.file.integrity)
        checking.delete(e.file.file)
        ready = new Map(ready)
        const again = ensure(e.file)
        again.catch(() => {})
        ready.set(e.file.file, again)
      }
    }
  } finally {
    o.progress.close()
    await hasher.close()
  }
}

interface Entry {
  rel: string
  dir?: boolean
  mode: number
  size: number
  data?: Buffer
  from?: LockedFile
}

interface PackInputs {
  /** Resolves when the file is in the cache. */
  ready(f: LockedFile): Promise<void>
  /** The digest of a cache entry that was found rather than fetched, once computed. */
  check(f: LockedFile): Promise<Sha256> | undefined
}

async function pack(o: BuildOptions, lock: Lock, files: LockedFile[], name: string, tarName: string, inputs: PackInputs): Promise<{ sha256: Sha256; size: number }> {
  const lockText = Buffer.from(serializeLock(reduceLock(lock, o.platform)))
  const sums = new Map<string, Sha256>([[LOCK_FILE, Sha256.of(lockText)]])
  for (const f of files) sums.set(filePath(f.file), f.integrity)
  const sumsText = Buffer.from(formatSums(sums))

  const entries: Entry[] = [
    { rel: '', dir: true, mode: EXEC_MODE, size: 0 },
    { rel: SUMS_FILE, mode: FILE_MODE, size: sumsText.length, data: sumsText },
    { rel: LOCK_FILE, mode: FILE_MODE, size: lockText.length, data: lockText },
    { rel: `${FILES_DIR}/`, dir: true, mode: EXEC_MODE, size: 0 },
  ]
  for (const f of files) entries.push({ rel: filePath(f.file), mode: FILE_MODE, size: 0, from: f })
  entries.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0))

  const temp = join(o.outDir, `.${tarName}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
  const out = await open(temp, 'wx')
  const tar = new TarWriter(out)
  try {
    for (const e of entries) {
      const path = `${name}/${e.rel}`
      if (e.dir) await tar.directory(path)
      else if (e.data) await tar.data(path, e.mode, e.data)
      else {
        const f = e.from!
        await inputs.ready(f)
        const blob = o.cache.blobPath(f.integrity)
        const { size } = await stat(blob)
        await tar.file(path, size, e.mode, blob)
      }
    }
    await tar.end()
    for (const f of files) {
      const checked = await inputs.check(f)
      if (checked && !checked.equals(f.integrity)) throw new CorruptEntry(f)
    }
    await out.datasync()
    await out.close()
    const sha256 = Sha256.ofHash(tar.hash)
    const final = join(o.outDir, tarName)
    const sidecar = join(o.outDir, tarSumName(tarName))
    // The old checksum goes first: never a new tar beside an old .sha256.
    await rm(sidecar, { force: true })
    await rename(temp, final)
    await writeFile(`${sidecar}.tmp-${process.pid}`, `${sha256.hex}  ${tarName}\n`)
    await rename(`${sidecar}.tmp-${process.pid}`, sidecar)
    return { sha256, size: tar.bytes }
  } catch (e) {
    await out.close().catch(() => {})
    await rm(temp, { force: true })
    throw e
  }
}

async function removeStaleTemps(dir: string, tarName: string): Promise<void> {
  const prefix = `.${tarName}.tmp-`
  for (const n of await readdir(dir)) {
    if (!n.startsWith(prefix)) continue
    const pid = Number(n.slice(prefix.length).split('-')[0])
    if (Number.isInteger(pid) && pid !== process.pid && !alive(pid)) await rm(join(dir, n), { force: true })
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
