import { createReadStream } from 'node:fs'
import { open, stat } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Readable } from 'node:stream'
import type { BaseFile } from './delta.js'
import type { Sha256 } from './digest.js'
import { KaError } from './errors.js'
import {
  filePath,
  IMAGE_INDEX,
  LOCK_FILE,
  packagePath,
  RUNTIME_COMPONENT,
  RUNTIME_NODE,
  SIGNATURE_FILE,
  STATEMENT_FILE,
  SUMS_FILE,
  TOP_LEVEL_FILES,
} from './layout.js'
import { checkSignature, keyFingerprint } from './signing.js'
import { parseLock, type Lock } from './lock.js'
import { parseSums } from './sums.js'
import { ImageLayout, type LayoutImage } from './image-layout.js'
import { type Scan, scanFolder, scanTar } from './scan.js'
import { type BaseScan, deltaFiles, deltaNote, scanBase } from './verify-delta.js'

/**
 * Verification of a bundle (a folder, a tar, or a tar's parts as one stream): scanned once
 * (scan.ts), a delta's files found in its old bundle (verify-delta.ts), then judged here
 * against SHA256SUMS, the lock, the image index and the signature, every problem named.
 */

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

/** Files a bundle may hold outside SHA256SUMS: the signature over it, and its statement. */
const OUTSIDE_SUMS = new Set([SUMS_FILE, STATEMENT_FILE, SIGNATURE_FILE])
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
  if (!folder && (await startsLikeJson(path)))
    throw new KaError(
      'EUSAGE',
      `${path}: a lock (JSON), not a bundle; verify the bundle .tar built from it, its parts, or an unpacked bundle folder (bundle inspect ${path} previews what it builds)`,
    )
  const scan = folder ? await scanFolder(path) : await scanTar(() => createReadStream(path, { highWaterMark: 1 << 20 }), path)
  return judge(scan, path, opts, await scanBase(scan, opts.base ?? (folder ? dirname(path) : undefined), !opts.base))
}

/** A file whose first byte (past white space) is `{`: JSON, which no tar starts with (a tar's first bytes are a file name). */
async function startsLikeJson(path: string): Promise<boolean> {
  const fh = await open(path, 'r')
  try {
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(64), 0, 64, 0)
    return buffer.subarray(0, bytesRead).toString('latin1').trimStart().startsWith('{')
  } finally {
    await fh.close()
  }
}

/** Verifies a tar given as a stream (the concatenation of split parts, say). */
export async function verifyTarStream(open: () => Readable, source: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const scan = await scanTar(open, source, false)
  return judge(scan, source, opts, await scanBase(scan, opts.base, false))
}

/**
 * The gate: a scan judged against its SHA256SUMS, its lock and its signature. Every problem is
 * collected, then one error names them; a bundle that passes comes back as its report.
 */
export function judge(scan: Scan, source: string, opts: VerifyOptions = {}, base?: BaseScan): VerifyReport {
  const problems = [...scan.problems]
  const sumsText = scan.small.get(SUMS_FILE)
  const lockText = scan.small.get(LOCK_FILE)
  if (!sumsText) fail(source, [{ path: SUMS_FILE, problem: 'missing' }, ...problems])
  const sums = parseSums(sumsText.toString('utf8'), `${source}: ${SUMS_FILE}`)
  sumsProblems(scan, sums, problems)
  // A delta: what SHA256SUMS lists, and what DELTA.json (which SHA256SUMS covers) takes from the old bundle.
  const { pinned, delta } = deltaFiles(scan, sums, problems, base)
  const lock = lockProblems(scan, source, sums, pinned, problems)
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
  const statement = scan.small.get(STATEMENT_FILE)
  const signature = scan.small.get(SIGNATURE_FILE)
  const signedBy = signer(scan, opts, { statement, signature, sums: sumsText, lock: lockText! })
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

/** Every file against SHA256SUMS: missing, changed, unlisted; modes and folders no bundle has. The operator's own top-level files are set aside. */
function sumsProblems(scan: Scan, sums: Map<string, Sha256>, problems: Problem[]): void {
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
}

/** The lock read, and every file, image and package it pins found under that digest in what SHA256SUMS lists (a delta's old bundle included). */
function lockProblems(scan: Scan, source: string, sums: Map<string, Sha256>, pinned: Map<string, Sha256>, problems: Problem[]): Lock | undefined {
  const lockText = scan.small.get(LOCK_FILE)
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
  return lock
}

/** The signature checked against the key given: its fingerprint; none asked for: undefined, unless one is required. */
function signer(
  scan: Scan,
  opts: VerifyOptions,
  signed: { statement: Buffer | undefined; signature: Buffer | undefined; sums: Buffer; lock: Buffer },
): string | undefined {
  if (opts.publicKeyPem) {
    checkSignature({ ...signed, publicKeyPem: opts.publicKeyPem, keySource: opts.keySource ?? 'the public key', name: scan.name })
    return keyFingerprint(opts.publicKeyPem)
  }
  if (opts.requireSignature)
    throw new KaError(
      'ESIGNATURE',
      `${scan.name}: ${signed.statement && signed.signature ? 'a signature is required but no public key was given (--public-key FILE)' : 'the bundle is not signed'}; do not install it unsigned`,
    )
  return undefined
}

/** What a verified folder holds beside the bundle: join files (made on a node) and the operator's own files; for a delta, where its old bundle is. One line each. */
export function verifyNotes(v: Pick<VerifyReport, 'joinFiles' | 'ignored' | 'delta'>): string[] {
  return [
    ...(v.delta ? [deltaNote(v.delta)] : []),
    ...v.joinFiles.map((j) => `note  ${j}: written on a node, not covered by the bundle's signature`),
    ...v.ignored.map((f) => `note  ${f}: not part of the bundle (your own file beside it?): ignored, never read as part of the bundle`),
  ]
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
