import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import type { Readable } from 'node:stream'
import { type BaseFile, type Delta, parseDelta } from './delta.js'
import { Sha256 } from './digest.js'
import { KaError } from './errors.js'
import {
  DELTA_FILE,
  filePath,
  IMAGE_INDEX,
  isSafeRelativePath,
  JOIN_DIR,
  LOCK_FILE,
  packagePath,
  RUNTIME_COMPONENT,
  RUNTIME_NODE,
  SIGNATURE_FILE,
  STATEMENT_FILE,
  SUMS_FILE,
  tarSumName,
  TOP_LEVEL_FILES,
} from './layout.js'
import { checkSignature, keyFingerprint } from './signing.js'
import { parseLock, type Lock } from './lock.js'
import { parseSums } from './sums.js'
import { isRegular, readTar } from './tar.js'
import { formatBytes, printableName } from './text.js'
import { ImageLayout, type LayoutImage } from './image-layout.js'

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
  /** Every file's sha256, as found (for a verification record). */
  digests: Map<string, Sha256>
  /** The key that signed it, when a public key was given and the signature holds. */
  signedBy?: string
  /** Whether the bundle carries a signature at all (checked only with a public key). */
  signed: boolean
  /** Join files in an unpacked folder: written on a node, not covered by SHA256SUMS or the signature. */
  joinFiles: string[]
  /** The operator's own files at the top of an unpacked folder (a cluster.yaml, a key): not part of the bundle, ignored. */
  ignored: string[]
  /** A delta bundle: the old bundle it takes files from, where they were found and checked, and which were not found. */
  delta?: DeltaReport
}

export interface DeltaReport {
  base: string
  kubernetes: string
  /** The files the delta takes from the old bundle, and their bytes where DELTA.json gives them. */
  paths: string[]
  bytes: number
  /** The old bundle's folder, when it was found: every file taken from it is in `digests`, checked. */
  dir?: string
  /** Files taken from the old bundle that were not found (no folder given or beside the delta): a delta alone is complete but not installable. */
  missing: BaseFile[]
}

export interface VerifyOptions {
  /** An Ed25519 public key (PEM): the bundle must be signed by it. */
  publicKeyPem?: string
  keySource?: string
  /** Refuse an unsigned bundle (with a key: signed by that key). */
  requireSignature?: boolean
  /** A delta bundle's old bundle folder (default: the folder DELTA.json names, beside an unpacked delta). */
  base?: string
}

/** What a scan of a folder or a tar saw: each regular file's digest, and what was wrong on the way. */
interface Scan {
  name: string
  /** An unpacked folder (where the operator may have put files of their own), not a tar. */
  folder: boolean
  digests: Map<string, Sha256>
  small: Map<string, Buffer>
  bytes: number
  problems: Problem[]
  joinFiles: string[]
  ignored: string[]
  /** Folders the tar makes (relative to the top folder); a folder scan checks them itself. */
  dirs: Set<string>
  /** Modes and owners no bundle has, by path: judged once the operator's own files are known (theirs are not the bundle's). */
  modes: Map<string, string>
}

/** The files verification reads as well as hashes, each at most SMALL_CAP bytes. */
const KEEP = new Set([SUMS_FILE, LOCK_FILE, STATEMENT_FILE, SIGNATURE_FILE, IMAGE_INDEX, DELTA_FILE])
const SMALL_CAP = 16 << 20
const tooBig = (p: string): Problem => ({ path: p, problem: `larger than ${SMALL_CAP >> 20} MiB, which no bundle's ${p} is; do not install it` })
/** Files a bundle may hold outside SHA256SUMS: the signature over it, and its statement. */
const OUTSIDE_SUMS = new Set([SUMS_FILE, STATEMENT_FILE, SIGNATURE_FILE])
/** Setuid, setgid, sticky, and write for group or others: no file or folder of a bundle has them. */
const UNSAFE_MODE = 0o7022
const UNSAFE = 'setuid, setgid, sticky or writable by others, which no file of a bundle is'
const CONTROL = /[\u0000-\u001f\u007f]/
/** The folders the files of `paths` sit in, and the bundle's own (''). */
const parentsOf = (paths: Iterable<string>): Set<string> => {
  const out = new Set([''])
  for (const p of paths) for (let i = p.lastIndexOf('/'); i > 0; i = p.lastIndexOf('/', i - 1)) out.add(p.slice(0, i))
  return out
}

/**
 * Proves a bundle, a tar or an unpacked folder, against its own SHA256SUMS and lock: every
 * listed file present with its hash, nothing unlisted, no path that escapes the bundle, no
 * link or device, and every locked file's hash the one the lock pins. Collects every
 * problem before failing, so the user sees all of them at once.
 */
export async function verifyBundle(path: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const st = await stat(path).catch(() => {
    throw new KaError('EUSAGE', `${path}: no such bundle; give a bundle .tar or an unpacked bundle folder`)
  })
  const folder = st.isDirectory()
  const scan = folder ? await scanFolder(path) : await scanTar(() => createReadStream(path, { highWaterMark: 1 << 20 }), path)
  return judge(scan, path, opts, await scanBase(scan, opts.base ?? (folder ? dirname(path) : undefined), !opts.base))
}

/** Verifies a tar given as a stream (the concatenation of split parts, say). */
export async function verifyTarStream(open: () => Readable, source: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const scan = await scanTar(open, source, false)
  return judge(scan, source, opts, await scanBase(scan, opts.base, false))
}

/** What a delta takes from its old bundle, as found there. */
interface BaseScan {
  delta: Delta
  dir?: string
  found: Map<string, { digest: Sha256; size: number }>
}

/**
 * A delta's files in its old bundle: `at` is the old bundle's folder, or (`beside`) the
 * folder the delta sits in, where the old bundle is looked for under the name DELTA.json
 * gives. Each file is hashed there; judge compares them with DELTA.json once SHA256SUMS
 * has proved DELTA.json itself. A link, a device, or a file reached through a linked folder
 * outside the old bundle is not taken (it counts as not found).
 */
async function scanBase(scan: Scan, at: string | undefined, beside: boolean): Promise<BaseScan | undefined> {
  const text = scan.small.get(DELTA_FILE)
  if (!text) return undefined
  let delta: Delta
  try {
    delta = parseDelta(text.toString('utf8'))
  } catch {
    return undefined // judge names the problem
  }
  const dir = at && resolve(beside ? join(at, delta.base) : at)
  const st = dir ? await stat(dir).catch(() => undefined) : undefined
  if (!dir || !st?.isDirectory()) {
    if (dir && !beside) throw new KaError('EUSAGE', `--base ${dir}: no such folder; give the unpacked ${delta.base} folder`)
    return { delta, found: new Map() }
  }
  const found = new Map<string, { digest: Sha256; size: number }>()
  const inside = `${await realpath(dir)}/`
  for (const f of delta.files) {
    const full = join(dir, f.path)
    // A regular file, and inside the old bundle (no folder on the way that is a link out of it).
    if (!(await lstat(full).catch(() => undefined))?.isFile() || !(await realpath(full)).startsWith(inside)) continue
    found.set(f.path, await Sha256.ofFile(full))
  }
  return { delta, dir, found }
}

function judge(scan: Scan, source: string, opts: VerifyOptions = {}, base?: BaseScan): VerifyReport {
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
  for (const p of [...scan.digests.keys()]) {
    if (OUTSIDE_SUMS.has(p) || sums.has(p)) continue
    // In a folder, a top-level file that is none of the bundle's own is the operator's: not damage, and never read.
    if (scan.folder && !p.includes('/') && !TOP_LEVEL_FILES.includes(p)) {
      scan.ignored.push(p)
      scan.digests.delete(p)
    } else problems.push({ path: p, problem: `not listed in ${SUMS_FILE}` })
  }
  for (const [p, problem] of scan.modes) if (!scan.ignored.includes(p)) problems.push({ path: p || `${scan.name}/`, problem })
  const folders = parentsOf(sums.keys())
  for (const d of scan.dirs) if (!folders.has(d)) problems.push({ path: `${d}/`, problem: 'a folder no file of the bundle is in, not part of what was built' })
  // A delta: what SHA256SUMS lists, and what DELTA.json (which SHA256SUMS covers) takes from the old bundle.
  const { pinned, delta } = deltaFiles(scan, sums, problems, base)

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
        if (!pinned.has(RUNTIME_NODE)) problems.push({ path: RUNTIME_NODE, problem: `the runtime (from ${f.name} ${f.version}) is not in ${SUMS_FILE}` })
        continue
      }
      const p = filePath(f.file)
      const listed = pinned.get(p)
      if (!listed) problems.push({ path: p, problem: `pinned by the lock (${f.name} ${f.version}) but not in ${SUMS_FILE}` })
      else if (!listed.equals(f.integrity)) problems.push({ path: p, problem: `${SUMS_FILE} says sha256 ${listed.hex}, the lock pins ${f.integrity.hex}` })
    }
  }
  if (lock) problems.push(...imageProblems(lock, scan.small.get(IMAGE_INDEX), sums.has(IMAGE_INDEX)))
  for (const pk of lock?.packages ?? []) {
    const p = packagePath(pk.release, pk.file)
    const listed = pinned.get(p)
    if (!listed) problems.push({ path: p, problem: `pinned by the lock (${pk.name} ${pk.version}) but not in ${SUMS_FILE}` })
    else if (!listed.equals(pk.integrity)) problems.push({ path: p, problem: `${SUMS_FILE} says sha256 ${listed.hex}, the lock pins ${pk.integrity.hex}` })
  }
  // Under a required signature, a file that differs from what was signed is a signature failure.
  if (problems.length > 0 && opts.publicKeyPem) {
    const first = problems[0]!
    throw new KaError(
      'ESIGNATURE',
      `${scan.name}: ${first.path}: ${first.problem}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}: not what was signed; do not install it`,
      { problems },
    )
  }
  if (problems.length > 0 || !lock) fail(source, problems)
  let signedBy: string | undefined
  const statement = scan.small.get(STATEMENT_FILE)
  const signature = scan.small.get(SIGNATURE_FILE)
  if (opts.publicKeyPem) {
    checkSignature({
      statement,
      signature,
      sums: sumsText,
      lock: lockText!,
      publicKeyPem: opts.publicKeyPem,
      keySource: opts.keySource ?? 'the public key',
      name: scan.name,
    })
    signedBy = keyFingerprint(opts.publicKeyPem)
  } else if (opts.requireSignature) {
    throw new KaError(
      'ESIGNATURE',
      `${scan.name}: ${statement && signature ? 'a signature is required but no public key was given (--public-key FILE)' : 'the bundle is not signed'}; do not install it unsigned`,
    )
  }
  return {
    name: scan.name,
    lock,
    files: scan.digests.size,
    bytes: scan.bytes,
    digests: scan.digests,
    ...(signedBy ? { signedBy } : {}),
    signed: !!(statement && signature),
    joinFiles: scan.joinFiles,
    ignored: scan.ignored,
    ...(delta ? { delta } : {}),
  }
}

/**
 * Every file the bundle pins, by path: SHA256SUMS, and for a delta the files DELTA.json takes
 * from the old bundle. Those found there (by scanBase) are checked and join the digests, as
 * if the delta held them; those not found are reported missing, not as damage: a delta alone
 * is whole, just not installable.
 */
function deltaFiles(scan: Scan, sums: Map<string, Sha256>, problems: Problem[], base?: BaseScan): { pinned: Map<string, Sha256>; delta?: DeltaReport } {
  const pinned = new Map(sums)
  const text = scan.small.get(DELTA_FILE)
  const listed = sums.get(DELTA_FILE)
  // Not listed, missing or changed: reported above, as for any file.
  if (!text || !listed?.equals(Sha256.of(text))) return { pinned }
  let d: Delta
  try {
    d = base?.delta ?? parseDelta(text.toString('utf8'))
  } catch (e) {
    problems.push({ path: DELTA_FILE, problem: (e as Error).message })
    return { pinned }
  }
  const report: DeltaReport = {
    base: d.base,
    kubernetes: d.kubernetes,
    bytes: 0,
    paths: d.files.map((f) => f.path),
    missing: [],
    ...(base?.dir ? { dir: base.dir } : {}),
  }
  for (const f of d.files) {
    report.bytes += f.size ?? 0
    if (sums.has(f.path)) {
      problems.push({ path: f.path, problem: `listed in both ${SUMS_FILE} and ${DELTA_FILE}` })
      continue
    }
    pinned.set(f.path, f.sha256)
    const got = base?.found.get(f.path)
    if (!got) report.missing.push(f)
    else if (!got.digest.equals(f.sha256))
      problems.push({
        path: `${base!.dir}/${f.path}`,
        problem: `changed in the old bundle: ${DELTA_FILE} pins sha256 ${f.sha256.hex}, found ${got.digest.hex}`,
      })
    else {
      scan.digests.set(f.path, got.digest)
      scan.bytes += got.size
    }
  }
  return { pinned, delta: report }
}

/** A delta as `--json` and the verification record give it: the old bundle, where it was found, the files taken from it and those not found. */
export const deltaSummary = (d: DeltaReport) => ({ base: d.base, dir: d.dir ?? null, files: d.paths.length, missing: d.missing.map((f) => f.path) })

/** What a verified folder holds beside the bundle: join files (made on a node) and the operator's own files; for a delta, where its old bundle is. One line each. */
export function verifyNotes(v: Pick<VerifyReport, 'joinFiles' | 'ignored' | 'delta'>): string[] {
  return [
    ...(v.delta ? [deltaNote(v.delta)] : []),
    ...v.joinFiles.map((j) => `note  ${j}: written on a node, not covered by the bundle's signature`),
    ...v.ignored.map((f) => `note  ${f}: not part of the bundle (your own file beside it?): ignored, never read as part of the bundle`),
  ]
}

function deltaNote(d: DeltaReport): string {
  const what = `a delta from ${d.base}: ${d.paths.length} files (${formatBytes(d.bytes)}) come from it`
  if (d.missing.length === 0) return `note  ${what}, found in ${d.dir} as ${DELTA_FILE} pins them`
  return `note  ${what}; ${d.missing.length} not found${d.dir ? ` in ${d.dir}` : ''}: to install, put the unpacked ${d.base} beside this folder or give --base DIR`
}

/**
 * A delta whose old bundle was not found cannot be installed from: one line saying where
 * to put it (what verification proved stands, but the files are not there to use).
 */
export function requireWholeDelta(v: Pick<VerifyReport, 'delta' | 'name'>): void {
  const d = v.delta
  if (!d || d.missing.length === 0) return
  throw new KaError(
    'EUSAGE',
    `${v.name} is a delta from ${d.base} and ${d.missing.length} of the files it takes from it (${d.missing[0]!.path} first) are not ${d.dir ? `in ${d.dir}` : 'found'}: put the unpacked ${d.base} folder beside this one, or give it with --base DIR`,
    { missing: d.missing.map((f) => f.path) },
  )
}

/**
 * The images the node will import are exactly the ones the lock pins: images/index.json
 * names every locked image once, with the platform manifest the bundle's lock records for
 * it, and nothing else.
 */
function imageProblems(lock: Lock, indexText: Buffer | undefined, listed: boolean): Problem[] {
  if (lock.images.length === 0 && !listed) return []
  if (!indexText) return [{ path: IMAGE_INDEX, problem: 'missing' }]
  let entries: LayoutImage[]
  try {
    entries = ImageLayout.parseIndex(indexText)
  } catch {
    return [{ path: IMAGE_INDEX, problem: 'not an OCI image index' }]
  }
  const problems: Problem[] = []
  const pinned = new Map(lock.images.map((im) => [im.ref, im]))
  const seen = new Set<string>()
  for (const e of entries) {
    const im = pinned.get(e.name)
    if (!im) problems.push({ path: IMAGE_INDEX, problem: `names ${JSON.stringify(e.name)}, which the lock does not pin` })
    else if (seen.has(e.name)) problems.push({ path: IMAGE_INDEX, problem: `names ${e.name} twice` })
    else if (!im.manifest)
      problems.push({ path: LOCK_FILE, problem: `records no platform manifest for ${e.name}: build the bundle again with this kube-airgap` })
    else if (!im.manifest.equals(e.manifest))
      problems.push({ path: IMAGE_INDEX, problem: `names ${e.name} as ${e.manifest.oci}, the lock records ${im.manifest.oci}` })
    seen.add(e.name)
  }
  for (const ref of pinned.keys()) if (!seen.has(ref)) problems.push({ path: IMAGE_INDEX, problem: `lacks ${ref}, which the lock pins` })
  return problems
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

const newScan = (name: string, folder: boolean): Scan => ({
  name,
  folder,
  digests: new Map(),
  small: new Map(),
  bytes: 0,
  problems: [],
  joinFiles: [],
  ignored: [],
  dirs: new Set(),
  modes: new Map(),
})

async function scanFolder(dir: string): Promise<Scan> {
  const scan = newScan(basename(dir), true)
  const files: string[] = []
  const uid = process.geteuid?.() ?? 0
  // Modes and owners as the node will use them: nothing the bundle runs may be changed by
  // another user after it was checked, or run with someone else's rights.
  const judgeMode = async (p: string) => {
    const st = await lstat(join(dir, p))
    if ((st.mode & UNSAFE_MODE) === 0 && (st.uid === 0 || st.uid === uid) && (st.isDirectory() || st.nlink === 1)) return
    scan.modes.set(
      p,
      `mode ${(st.mode & 0o7777).toString(8)}, owner ${st.uid}, ${st.nlink} names: ${UNSAFE}, owned by someone else or linked twice; unpack it as root with kube-airgap-verify --extract`,
    )
  }
  await judgeMode('')
  const walk = async (rel: string): Promise<void> => {
    const entries = await readdir(join(dir, rel), { withFileTypes: true })
    for (const e of entries) {
      const p = rel ? `${rel}/${e.name}` : e.name
      if (CONTROL.test(p)) {
        scan.problems.push({ path: printableName(p), problem: 'a name with a control character (a newline, say), which no bundle has' })
        continue
      }
      if (e.isDirectory() || e.isFile()) await judgeMode(p)
      if (e.isDirectory()) await walk(p)
      else if (e.isFile() && p.startsWith(`${JOIN_DIR}/`)) scan.joinFiles.push(p)
      else if (e.isFile()) files.push(p)
      else scan.problems.push({ path: printableName(p), problem: 'not a regular file (links and devices are never part of a bundle)' })
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
      const st = await lstat(full)
      if (!st.isFile()) continue
      if (KEEP.has(p) && st.size > SMALL_CAP) scan.problems.push(tooBig(p))
      else if (KEEP.has(p)) scan.small.set(p, await readFile(full))
      const { digest, size } = await Sha256.ofFile(full)
      scan.digests.set(p, digest)
      scan.bytes += size
    }
  }
  await Promise.all([worker(), worker(), worker()])
  return scan
}

async function scanTar(open: () => Readable, tarPath: string, sidecar = true): Promise<Scan> {
  const scan = newScan('', false)
  const seen = new Set<string>()
  const whole = createHash('sha256')
  const input = open()
  input.on('data', (c: Buffer) => whole.update(c))
  const onWarn = (message: string) => void scan.problems.push({ path: basename(tarPath), problem: `tar: ${message}` })
  await readTar(
    input,
    (entry) => {
      const raw = entry.path
      const top = raw.split('/')[0] ?? ''
      if (!isSafeRelativePath(raw)) {
        scan.problems.push({ path: printableName(raw), problem: 'unsafe path (absolute or with ..): do not unpack this tar' })
        return void entry.body.resume()
      }
      if (!scan.name) scan.name = top
      if (top !== scan.name) {
        scan.problems.push({ path: printableName(raw), problem: `outside the bundle's one top folder ${scan.name}/` })
        return void entry.body.resume()
      }
      const rel = raw.slice(top.length + 1)
      // GNU tar makes "x/" and "x" the same path: the second would replace the first.
      if (seen.has(rel)) scan.problems.push({ path: rel, problem: 'appears twice in the tar' })
      seen.add(rel)
      // Owned by root, with no setuid, setgid, sticky or group/other-write bit: what root's tar -xf keeps.
      const unsafe =
        entry.uid !== 0 || entry.gid !== 0
          ? `owned by ${entry.uid}/${entry.gid}, not by root as every file of a bundle is`
          : entry.mode & UNSAFE_MODE
            ? `mode ${entry.mode.toString(8)}: ${UNSAFE}`
            : undefined
      if (unsafe && (entry.type === 'Directory' || isRegular(entry))) scan.modes.set(rel, unsafe)
      if (entry.type === 'Directory') {
        scan.dirs.add(rel)
        return void entry.body.resume()
      }
      if (!isRegular(entry)) {
        scan.problems.push({ path: printableName(raw), problem: `a ${entry.type} entry (links and devices are never part of a bundle)` })
        return void entry.body.resume()
      }
      if (rel === '') return void entry.body.resume()
      if (rel.startsWith(`${JOIN_DIR}/`))
        scan.problems.push({ path: rel, problem: `a bundle tar never holds ${JOIN_DIR}/ (join files are made on a node, after the build); do not install it` })
      const hash = createHash('sha256')
      let chunks: Buffer[] | undefined = KEEP.has(rel) ? [] : undefined
      let kept = 0
      entry.body.on('data', (c: Buffer) => {
        hash.update(c)
        scan.bytes += c.length
        if (!chunks) return
        kept += c.length
        if (kept > SMALL_CAP) {
          chunks = undefined
          scan.problems.push(tooBig(rel))
        } else chunks.push(c)
      })
      entry.body.on('end', () => {
        scan.digests.set(rel, Sha256.ofHash(hash))
        if (chunks) scan.small.set(rel, Buffer.concat(chunks))
      })
    },
    { onWarn },
  )
  // A `.tar.sha256` beside the tar is checked too: it is what people compare by hand.
  const sidecarPath = join(tarPath, '..', tarSumName(basename(tarPath)))
  const sideText = sidecar ? await readFile(sidecarPath, 'utf8').catch(() => undefined) : undefined
  if (sideText !== undefined) {
    const want = /^([0-9a-f]{64})\s/.exec(sideText)?.[1]
    const got = Sha256.ofHash(whole)
    if (!want || want !== got.hex)
      scan.problems.push({ path: basename(sidecarPath), problem: `the tar's sha256 is ${got.hex}, the .sha256 file says ${want ?? 'nothing readable'}` })
  }
  return scan
}

/**
 * A tar's regular files with their sizes, and the bytes of the few small ones asked for, read
 * with the same parser as verification (PAX headers included, so inspect never shows a file
 * other than the one verify checked). Junk is one EVERIFY line, never a throw from the parser.
 */
export async function listTar(path: string, want: readonly string[]): Promise<{ top: string; sizes: Map<string, number>; small: Map<string, Buffer> }> {
  const sizes = new Map<string, number>()
  const small = new Map<string, Buffer>()
  let top = ''
  let broken: string | undefined
  try {
    await readTar(
      createReadStream(path, { highWaterMark: 1 << 20 }),
      (entry) => {
        const raw = entry.path
        const first = raw.split('/')[0] ?? ''
        top ||= first
        const rel = raw.slice(first.length + 1)
        if (!isRegular(entry) || !rel || first !== top) return void entry.body.resume()
        sizes.set(rel, entry.size)
        if (!want.includes(rel) || entry.size > SMALL_CAP) return void entry.body.resume()
        const chunks: Buffer[] = []
        entry.body.on('data', (c: Buffer) => chunks.push(c))
        entry.body.on('end', () => small.set(rel, Buffer.concat(chunks)))
      },
      {
        onWarn: (message) => {
          broken ??= message
        },
      },
    )
  } catch (e) {
    broken ??= (e as Error).message
  }
  if (!top || (broken && sizes.size === 0))
    throw new KaError('EVERIFY', `${path}: not a tar${broken ? ` (${broken})` : ''}; give a bundle .tar or an unpacked bundle folder`)
  return { top, sizes, small }
}
