import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { lstat, readdir, readFile, stat } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { Writable } from 'node:stream'
import { Parser, type ReadEntry } from 'tar'
import { Sha256 } from './digest.js'
import { KaError } from './errors.js'
import { filePath, isSafeRelativePath, JOIN_DIR, LOCK_FILE, packagePath, RUNTIME_COMPONENT, RUNTIME_NODE, SUMS_FILE, tarSumName } from './layout.js'
import { parseLock, type Lock } from './lock.js'
import { parseSums } from './sums.js'

export interface Problem {
  path: string
  problem: string
}

export interface VerifyReport {
  /** The bundle's top folder name. */
  name: string
  lock: Lock
  files: number
  bytes: number
}

/** What a scan of a folder or a tar saw: each regular file's digest, and what was wrong on the way. */
interface Scan {
  name: string
  digests: Map<string, Sha256>
  small: Map<string, Buffer>
  bytes: number
  problems: Problem[]
}

const KEEP = new Set([SUMS_FILE, LOCK_FILE])

/**
 * Proves a bundle, a tar or an unpacked folder, against its own SHA256SUMS and lock: every
 * listed file present with its hash, nothing unlisted, no path that escapes the bundle, no
 * link or device, and every locked file's hash the one the lock pins. Collects every
 * problem before failing, so the user sees all of them at once.
 */
export async function verifyBundle(path: string): Promise<VerifyReport> {
  const st = await stat(path).catch(() => {
    throw new KaError('EUSAGE', `${path}: no such bundle; give a bundle .tar or an unpacked bundle folder`)
  })
  const scan = st.isDirectory() ? await scanFolder(path) : await scanTar(path)
  return judge(scan, path)
}

function judge(scan: Scan, source: string): VerifyReport {
  const problems = [...scan.problems]
  const sumsText = scan.small.get(SUMS_FILE)
  const lockText = scan.small.get(LOCK_FILE)
  if (!sumsText) fail(source, [{ path: SUMS_FILE, problem: 'missing' }, ...problems])
  const sums = parseSums(sumsText.toString('utf8'), `${source}: ${SUMS_FILE}`)

  for (const [p, want] of sums) {
    const got = scan.digests.get(p)
    if (!got) problems.push({ path: p, problem: 'missing' })
    else if (!got.equals(want)) problems.push({ path: p, problem: `changed: expected sha256 ${want.hex}, found ${got.hex}` })
  }
  for (const p of scan.digests.keys()) {
    if (p !== SUMS_FILE && !sums.has(p) && !p.startsWith(`${JOIN_DIR}/`)) problems.push({ path: p, problem: `not listed in ${SUMS_FILE}` })
  }

  let lock: Lock | undefined
  if (!lockText) problems.push({ path: LOCK_FILE, problem: 'missing' })
  else {
    try {
      lock = parseLock(lockText.toString('utf8'), `${source}: ${LOCK_FILE}`)
    } catch (e) {
      problems.push({ path: LOCK_FILE, problem: (e as Error).message })
    }
  }
  if (lock) {
    if (lock.platforms.length !== 1) problems.push({ path: LOCK_FILE, problem: `names ${lock.platforms.length} platforms; a bundle's lock names exactly one` })
    for (const f of lock.files) {
      if (f.name === RUNTIME_COMPONENT) {
        if (!sums.has(RUNTIME_NODE)) problems.push({ path: RUNTIME_NODE, problem: `the runtime (from ${f.name} ${f.version}) is not in ${SUMS_FILE}` })
        continue
      }
      const p = filePath(f.file)
      const listed = sums.get(p)
      if (!listed) problems.push({ path: p, problem: `pinned by the lock (${f.name} ${f.version}) but not in ${SUMS_FILE}` })
      else if (!listed.equals(f.integrity)) problems.push({ path: p, problem: `${SUMS_FILE} says sha256 ${listed.hex}, the lock pins ${f.integrity.hex}` })
    }
  }
  for (const pk of lock?.packages ?? []) {
    const p = packagePath(pk.release, pk.file)
    const listed = sums.get(p)
    if (!listed) problems.push({ path: p, problem: `pinned by the lock (${pk.name} ${pk.version}) but not in ${SUMS_FILE}` })
    else if (!listed.equals(pk.integrity)) problems.push({ path: p, problem: `${SUMS_FILE} says sha256 ${listed.hex}, the lock pins ${pk.integrity.hex}` })
  }
  if (problems.length > 0 || !lock) fail(source, problems)
  return { name: scan.name, lock, files: scan.digests.size, bytes: scan.bytes }
}

function fail(source: string, problems: Problem[]): never {
  const first = problems[0]
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''
  throw new KaError(
    'EVERIFY',
    `${source} failed verification: ${first ? `${first.path}: ${first.problem}` : 'no files'}${more}; do not install it: copy or build the bundle again`,
    { problems },
  )
}

async function scanFolder(dir: string): Promise<Scan> {
  const scan: Scan = { name: basename(dir), digests: new Map(), small: new Map(), bytes: 0, problems: [] }
  const files: string[] = []
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(join(dir, rel), { withFileTypes: true })
    for (const e of entries) {
      const p = rel ? `${rel}/${e.name}` : e.name
      if (e.isDirectory()) await walk(p)
      else if (e.isFile()) files.push(p)
      else scan.problems.push({ path: p, problem: 'not a regular file (links and devices are never part of a bundle)' })
    }
  }
  await walk('')
  // Hash a few files at once: reads overlap with hashing, and a folder on a USB stick
  // is read as fast as it can be.
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < files.length) {
      const p = files[next++]!
      const full = join(dir, p)
      if (!(await lstat(full)).isFile()) continue
      if (KEEP.has(p)) scan.small.set(p, await readFile(full))
      const { digest, size } = await Sha256.ofFile(full)
      scan.digests.set(p, digest)
      scan.bytes += size
    }
  }
  await Promise.all([worker(), worker(), worker()])
  return scan
}

async function scanTar(tarPath: string): Promise<Scan> {
  const scan: Scan = { name: '', digests: new Map(), small: new Map(), bytes: 0, problems: [] }
  const whole = createHash('sha256')
  const parser = new Parser({
    strict: false,
    onwarn: (_code, message) => scan.problems.push({ path: basename(tarPath), problem: `tar: ${message}` }),
    onReadEntry: (entry: ReadEntry) => {
      const raw = entry.path.replace(/\/$/, '')
      const top = raw.split('/')[0] ?? ''
      if (!isSafeRelativePath(raw)) {
        scan.problems.push({ path: raw, problem: 'unsafe path (absolute or with ..): do not unpack this tar' })
        return entry.resume()
      }
      if (!scan.name) scan.name = top
      if (top !== scan.name) {
        scan.problems.push({ path: raw, problem: `outside the bundle's one top folder ${scan.name}/` })
        return entry.resume()
      }
      if (entry.type === 'Directory') return entry.resume()
      if (entry.type !== 'File' && entry.type !== 'OldFile') {
        scan.problems.push({ path: raw, problem: `a ${entry.type} entry (links and devices are never part of a bundle)` })
        return entry.resume()
      }
      const rel = raw.slice(top.length + 1)
      if (rel === '') return entry.resume()
      const hash = createHash('sha256')
      const chunks: Buffer[] | undefined = KEEP.has(rel) ? [] : undefined
      entry.on('data', (c: Buffer) => {
        hash.update(c)
        chunks?.push(c)
        scan.bytes += c.length
      })
      entry.on('end', () => {
        if (scan.digests.has(rel)) scan.problems.push({ path: rel, problem: 'appears twice in the tar' })
        scan.digests.set(rel, Sha256.ofHash(hash))
        if (chunks) scan.small.set(rel, Buffer.concat(chunks))
      })
    },
  })
  await pipeline(
    createReadStream(tarPath, { highWaterMark: 1 << 20 }),
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        whole.update(chunk)
        if (parser.write(chunk)) cb()
        else parser.once('drain', () => cb())
      },
      final(cb) {
        parser.end(() => cb())
      },
    }),
  )
  // A `.tar.sha256` beside the tar is checked too: it is what people compare by hand.
  const sidecar = join(tarPath, '..', tarSumName(basename(tarPath)))
  const sideText = await readFile(sidecar, 'utf8').catch(() => undefined)
  if (sideText !== undefined) {
    const want = /^([0-9a-f]{64})\s/.exec(sideText)?.[1]
    const got = Sha256.ofHash(whole)
    if (!want || want !== got.hex) scan.problems.push({ path: basename(sidecar), problem: `the tar's sha256 is ${got.hex}, the .sha256 file says ${want ?? 'nothing readable'}` })
  }
  return scan
}
