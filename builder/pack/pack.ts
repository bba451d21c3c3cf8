import { readFileSync } from 'node:fs'
import { mkdir, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { tempPrefix, writeAtomic } from '../../bundle/atomic.js'
import { Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import { FILE_MODE, LOCK_FILE, SIGNATURE_FILE, STATEMENT_FILE, SUMS_FILE, tarSumName } from '../../bundle/layout.js'
import type { Platform } from '../../bundle/platform.js'
import { signStatement, statementBytes } from '../../bundle/signing.js'
import { formatSums } from '../../bundle/sums.js'
import { TarWriter } from '../../bundle/tar.js'
import { type Fetcher, type Growing, type Item, StartedOver } from '../download/fetcher.js'
import type { Progress } from '../progress.js'

/** Files made at build time and carried from memory (the lock, the image index, the installer, ...). */
export type DataFiles = Map<string, { bytes: Buffer; mode: number }>

/** What names a bundle: its top folder, the tar's name, and what the signed statement states. */
export interface BundleId {
  name: string
  tarName: string
  kubernetes: string
  platform: Platform
}

export interface PackOptions {
  outDir: string
  progress: Progress
  /** An Ed25519 private key (PEM) to sign the bundle with. */
  signingKeyPem?: string
}

/** A cache entry whose bytes no longer match its address, found while packing. */
class CorruptEntry extends Error {
  constructor(readonly item: Item) {
    super(`cache entry for ${item.label} is corrupt`)
  }
}

/**
 * The last stage: SHA256SUMS, the signed statement and the tar, written atomically with its
 * `.sha256` beside it. Packing starts at once and copies each item in tar order as its bytes
 * come: an item still downloading is followed as it grows, so the tar is done moments after
 * the last byte, and it is named only once every item's download committed, checked against
 * its pin. A cache entry found damaged on the way is evicted, fetched again, and the pack
 * starts over (twice at most); so does a pack whose followed download started over.
 */
export async function packBundle(o: PackOptions, fetcher: Fetcher, items: Item[], data: DataFiles, id: BundleId): Promise<{ sha256: Sha256; size: number }> {
  await mkdir(o.outDir, { recursive: true })
  await removeStaleTemps(o.outDir, id.tarName)
  for (const item of items) void fetcher.ensure(item).catch(() => {})
  for (let attempt = 0; ; attempt++) {
    try {
      const result = await writeBundle(o, items, data, id, fetcher)
      await Promise.all(items.map((i) => fetcher.ensure(i)))
      return result
    } catch (e) {
      if (e instanceof CorruptEntry && attempt < 2) {
        o.progress.note(`corrupt  cache entry for ${e.item.label}: fetching it again`)
        await fetcher.evict(e.item)
        continue
      }
      if (e instanceof StartedOver && attempt < 2) continue
      // Surface the first real failure, not the cancellations it caused.
      const first = await fetcher.stop(e)
      throw first && !(e instanceof KaError) ? first : e
    }
  }
}

async function writeBundle(o: PackOptions, items: Item[], data: DataFiles, id: BundleId, fetcher: Fetcher): Promise<{ sha256: Sha256; size: number }> {
  const { name, tarName } = id
  const sums = new Map<string, Sha256>()
  for (const [rel, d] of data) sums.set(rel, Sha256.of(d.bytes))
  for (const i of items) sums.set(i.rel, i.digest)
  const sumsText = Buffer.from(formatSums(sums))

  type Entry = { rel: string; dir?: true; data?: Buffer; mode?: number; item?: Item }
  const entries: Entry[] = [
    { rel: SUMS_FILE, data: sumsText },
    ...[...data].map(([rel, d]) => ({ rel, data: d.bytes, mode: d.mode })),
    ...items.map((item) => ({ rel: item.rel, item })),
  ]
  if (o.signingKeyPem) {
    // Ed25519 signatures are deterministic: a signed bundle is still the same bytes every build.
    const statement = statementBytes({
      bundle: name,
      kubernetes: id.kubernetes,
      platform: id.platform,
      sha256sums: Sha256.of(sumsText).oci,
      lock: Sha256.of(data.get(LOCK_FILE)!.bytes).oci,
    })
    entries.push({ rel: STATEMENT_FILE, data: statement }, { rel: SIGNATURE_FILE, data: signStatement(statement, o.signingKeyPem) })
  }
  const dirs = new Set<string>([''])
  for (const e of entries) {
    const parts = e.rel.split('/')
    for (let k = 1; k < parts.length; k++) dirs.add(`${parts.slice(0, k).join('/')}/`)
  }
  entries.push(...[...dirs].map((rel): Entry => ({ rel, dir: true })))
  entries.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0))

  const final = join(o.outDir, tarName)
  const sidecar = join(o.outDir, tarSumName(tarName))
  let size = 0
  const sha256 = await writeAtomic(
    final,
    async (sink) => {
      const tar = new TarWriter(sink)
      for (const e of entries) {
        const path = `${name}/${e.rel}`
        if (e.dir) await tar.directory(path)
        else if (e.data) await tar.data(path, e.mode ?? FILE_MODE, e.data)
        else await copyItem(tar, path, e.item!, fetcher)
      }
      await tar.end()
      size = tar.bytes
      for (const i of items) {
        const checked = await fetcher.check(i)
        if (checked && !checked.equals(i.digest)) throw new CorruptEntry(i)
      }
    },
    // A tar with the same bytes is left as it is (its mtime too: rsync and make see no change).
    // Otherwise the old checksum goes first: never a new tar beside an old .sha256.
    { keepSame: true, direct: true, beforeRename: () => rm(sidecar, { force: true }) },
  )
  await writeAtomic(sidecar, `${sha256.hex}  ${tarName}\n`, { keepSame: true })
  return { sha256, size }
}

/** An item into the tar: followed while it downloads (once its size is known), else from the cache once it is there. */
async function copyItem(tar: TarWriter, path: string, i: Item, fetcher: Fetcher): Promise<void> {
  const mode = i.mode ?? FILE_MODE
  const growing = fetcher.following(i)
  const size = await growing?.size()
  if (growing && size !== undefined && (await followed(tar, path, size, mode, growing))) {
    await fetcher.ensure(i)
    // Committed, but from bytes that came after the ones copied.
    if (growing.void) throw new StartedOver()
    return
  }
  await fetcher.ensure(i)
  const blob = fetcher.pathOf(i)
  await tar.file(path, (await stat(blob)).size, mode, blob)
}

/** Copies a download's partial file as it grows; false when it was committed (renamed into the cache) before the copy opened it. */
async function followed(tar: TarWriter, path: string, size: number, mode: number, growing: Growing): Promise<boolean> {
  try {
    // Once its first byte is in, the partial file is there.
    await growing.reach(Math.min(1, size))
    await tar.file(path, size, mode, growing)
    return true
  } catch (e) {
    // The file shrank under the copy: its download started over.
    if (growing.void) throw new StartedOver()
    // Renamed into the cache first: nothing was added to the tar.
    if (growing.ended && (e as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw e
  }
}

async function removeStaleTemps(dir: string, tarName: string): Promise<void> {
  const prefix = tempPrefix(tarName)
  for (const n of await readdir(dir)) {
    if (!n.startsWith(prefix)) continue
    const pid = Number(n.slice(prefix.length).split('-')[0])
    if (Number.isInteger(pid) && pid !== process.pid && !alive(pid)) await rm(join(dir, n), { force: true })
  }
}

/** Whether a build that left a temp tar may still be writing it: a zombie (killed, not yet reaped) is not. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ...": the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat[stat.lastIndexOf(')') + 2] !== 'Z'
  } catch {
    return true
  }
}
