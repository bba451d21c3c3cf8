import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { lstat, readdir, readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { Readable } from 'node:stream'
import { Sha256 } from './digest.js'
import { hashFile, warmHasher } from './hasher.js'
import { KaError } from './errors.js'
import { DELTA_FILE, IMAGE_INDEX, isSafeRelativePath, JOIN_DIR, LOCK_FILE, SIGNATURE_FILE, STATEMENT_FILE, SUMS_FILE, tarSumName } from './layout.js'
import { isRegular, readTar } from './tar.js'
import { printableName } from './text.js'
import type { Problem } from './verify.js'
/** Scanning a bundle, a folder or a tar, once: each regular file's digest, the small files verification reads, and what no bundle holds. */

/** What a scan of a folder or a tar saw: each regular file's digest, and what was wrong on the way. */
export interface Scan {
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
/** Setuid, setgid, sticky, and write for group or others: no file or folder of a bundle has them. */
const UNSAFE_MODE = 0o7022
const UNSAFE = 'setuid, setgid, sticky or writable by others, which no file of a bundle is'
const CONTROL = /[\u0000-\u001f\u007f]/
export const newScan = (name: string, folder: boolean): Scan => ({
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

export async function scanFolder(dir: string): Promise<Scan> {
  const scan = newScan(basename(dir), true)
  const files: string[] = []
  const uid = process.geteuid?.() ?? 0
  // Modes and owners as the node will use them: nothing the bundle runs may be changed by
  // another user after it was checked, or run with someone else's rights.
  const sizes = new Map<string, number>()
  const judgeMode = async (p: string) => {
    const st = await lstat(join(dir, p))
    sizes.set(p, st.size)
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
  warmHasher()
  await walk('')
  // Hashed on both cores, largest files first: two lanes on this thread, two queued on the
  // hash worker's (so it never waits for its next file). Reads overlap with hashing, and a
  // folder on a USB stick is read as fast as it can be.
  files.sort((a, b) => sizes.get(b)! - sizes.get(a)! || (a < b ? -1 : 1))
  let next = 0
  const lane = async (hash: (path: string) => Promise<Sha256>): Promise<void> => {
    while (next < files.length) {
      const p = files[next++]!
      const full = join(dir, p)
      const st = await lstat(full)
      if (!st.isFile()) continue
      if (KEEP.has(p) && st.size > SMALL_CAP) scan.problems.push(tooBig(p))
      else if (KEEP.has(p)) {
        // Read once: the bytes verification reads are the bytes hashed.
        const bytes = await readFile(full)
        scan.small.set(p, bytes)
        scan.digests.set(p, Sha256.of(bytes))
        scan.bytes += bytes.length
        continue
      }
      scan.digests.set(p, await hash(full))
      scan.bytes += st.size
    }
  }
  const here = async (path: string) => (await Sha256.ofFile(path)).digest
  await Promise.all([lane(here), lane(here), lane(hashFile), lane(hashFile)])
  return scan
}

export async function scanTar(open: () => Readable, tarPath: string, sidecar = true): Promise<Scan> {
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
