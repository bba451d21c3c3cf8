import { lstat, realpath, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { type Delta, parseDelta } from './delta.js'
import { Sha256 } from './digest.js'
import { KaError } from './errors.js'
import { DELTA_FILE, SUMS_FILE } from './layout.js'
import { formatBytes } from './text.js'
import type { DeltaReport, Problem, VerifyReport } from './verify.js'
import type { Scan } from './scan.js'
/** A delta bundle's side of verification: its files in the old bundle, found and hashed there, and what is said about them. */

/** What a delta takes from its old bundle, as found there. */
export interface BaseScan {
  delta: Delta
  dir?: string
  found: Map<string, { digest: Sha256; size: number }>
}

/**
 * A delta's files in its base (the old bundle DELTA.json names): `base` is that bundle's
 * folder (--base), or (`beside`) the folder the delta sits in, where the base is looked for
 * under the name DELTA.json gives. Each file is hashed there; judge compares them with DELTA.json once SHA256SUMS
 * has proved DELTA.json itself. A link, a device, or a file reached through a linked folder
 * outside the old bundle is not taken (it counts as not found).
 */
export async function scanBase(scan: Scan, base: string | undefined, beside: boolean): Promise<BaseScan | undefined> {
  const text = scan.small.get(DELTA_FILE)
  if (!text) return undefined
  let delta: Delta
  try {
    delta = parseDelta(text.toString('utf8'))
  } catch {
    return undefined // judge names the problem
  }
  const dir = base && resolve(beside ? join(base, delta.base) : base)
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

/**
 * Every file the bundle pins, by path: SHA256SUMS, and for a delta the files DELTA.json takes
 * from the old bundle. Those found there (by scanBase) are checked and join the digests, as
 * if the delta held them; those not found are reported missing, not as damage: a delta alone
 * is whole, just not installable.
 */
export function deltaFiles(scan: Scan, sums: Map<string, Sha256>, problems: Problem[], base?: BaseScan): { pinned: Map<string, Sha256>; delta?: DeltaReport } {
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

export function deltaNote(d: DeltaReport): string {
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
