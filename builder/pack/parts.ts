import { createReadStream } from 'node:fs'
import { lstat, open, readFile, rm, stat } from 'node:fs/promises'
import { writeAtomic } from '../../bundle/atomic.js'
import { basename, dirname, join } from 'node:path'
import { PassThrough, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import { partName, partsSumName } from '../../bundle/layout.js'
import type { Problem } from '../../bundle/verify.js'

/** `3900M`, `1G`, `64K`, bytes: binary units. */
export function parseSize(text: string): number {
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(text.trim())
  const n = m ? Number(m[1]) * 1024 ** ['', 'K', 'M', 'G'].indexOf(m[2]!.toUpperCase()) : NaN
  if (!Number.isSafeInteger(n) || n < 512)
    throw new KaError('EUSAGE', `--split ${JSON.stringify(text)}: give a size like 3900M, 1G or 64K (at least 512 bytes)`)
  return n
}

/** A bundle tar's name, as the builder writes it (kube-airgap-v1.29.3-linux-amd64.tar). */
const TAR_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]*\.tar$/

/** FAT32 holds files up to 4 GiB - 1 byte: parts of 4095 MiB fit. */
export const FAT32_PART = 4095 * 1024 * 1024

/**
 * Cuts a built tar into NAME.tar.000, .001, ... and writes NAME.parts.sha256 (each part's
 * sha256, and the whole tar's last), then removes the whole tar: each part can be checked,
 * and copied again, on its own.
 */
export async function splitTar(tarPath: string, size: number, whole: Sha256): Promise<string[]> {
  const total = (await stat(tarPath)).size
  const dir = dirname(tarPath)
  const tarName = basename(tarPath)
  const lines: string[] = []
  const parts: string[] = []
  const src = await open(tarPath, 'r')
  try {
    const buf = Buffer.allocUnsafe(1 << 20)
    for (let i = 0, pos = 0; pos < total || i === 0; i++) {
      const name = partName(tarName, i)
      const end = Math.min(total, pos + size)
      const digest = await writeAtomic(
        join(dir, name),
        async (sink) => {
          while (pos < end) {
            const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, end - pos), pos)
            await sink(buf.subarray(0, bytesRead))
            pos += bytesRead
          }
        },
        { keepSame: true, direct: true },
      )
      lines.push(`${digest.hex}  ${name}`)
      parts.push(join(dir, name))
    }
  } finally {
    await src.close()
  }
  lines.push(`${whole.hex}  ${tarName}`)
  const sums = join(dir, partsSumName(tarName))
  await writeAtomic(sums, `${lines.join('\n')}\n`, { keepSame: true })
  await rm(tarPath, { force: true })
  await rm(`${tarPath}.sha256`, { force: true })
  return parts
}

export interface PartsCheck {
  tarName: string
  parts: string[]
  whole: Sha256
  problems: Problem[]
}

/** Finds the parts file for a path given as NAME.parts.sha256, NAME.tar.000 or NAME.tar. */
export function partsFileFor(path: string): string | undefined {
  if (path.endsWith('.parts.sha256')) return path
  const m = /^(.*\.tar)(\.\d{3})?$/.exec(path)
  return m ? join(dirname(path), partsSumName(basename(m[1]!))) : undefined
}

/** Each part against NAME.parts.sha256: a bad or missing part is named, the others are not blamed. */
export async function checkParts(partsFile: string): Promise<PartsCheck> {
  const text = await readFile(partsFile, 'utf8').catch(() => {
    throw new KaError('EUSAGE', `${partsFile}: no such parts file; give NAME.parts.sha256 from a split build`)
  })
  const entries = text
    .trim()
    .split('\n')
    .map((l) => /^([0-9a-f]{64}) {2}(\S+)$/.exec(l))
    .filter((m): m is RegExpExecArray => !!m)
  const wholeLine = entries.pop()
  if (!wholeLine || entries.length === 0) throw new KaError('EVERIFY', `${partsFile}: not a parts file; copy it again`)
  // Only the names the builder writes, as plain names in the parts file's own folder: never
  // a path (../../x.tar) nor a device (/dev/zero).
  const tarName = wholeLine[2]!
  if (!TAR_NAME.test(tarName))
    throw new KaError('EVERIFY', `${partsFile}: names ${JSON.stringify(tarName)}, which is not a bundle tar's name; copy the parts file again`)
  entries.forEach(([, , name], i) => {
    if (name !== partName(tarName, i))
      throw new KaError('EVERIFY', `${partsFile}: names ${JSON.stringify(name)} where part ${partName(tarName, i)} belongs; copy the parts file again`)
  })
  const dir = dirname(partsFile)
  const problems: Problem[] = []
  for (const [, hex, name] of entries) {
    const path = join(dir, name!)
    const st = await lstat(path).catch(() => undefined)
    if (st && !st.isFile()) {
      problems.push({ path: name!, problem: 'not a regular file: copy this part again' })
      continue
    }
    const got = st ? await Sha256.ofFile(path).catch(() => undefined) : undefined
    if (!got) problems.push({ path: name!, problem: 'missing: copy this part again' })
    else if (got.digest.hex !== hex) problems.push({ path: name!, problem: `changed: expected sha256 ${hex}, found ${got.digest.hex}; copy this part again` })
  }
  return { tarName: wholeLine[2]!, parts: entries.map(([, , n]) => join(dir, n!)), whole: Sha256.fromHex(wholeLine[1]!), problems }
}

/** The parts, one after another, as one stream (what `cat NAME.tar.*` gives). */
export function concatParts(parts: readonly string[]): Readable {
  const out = new PassThrough({ highWaterMark: 1 << 20 })
  void (async () => {
    for (const p of parts) await pipeline(createReadStream(p, { highWaterMark: 1 << 20 }), out, { end: false })
    out.end()
  })().catch((e: unknown) => out.destroy(e as Error))
  return out
}

/** Joins verified parts into NAME.tar (one atomic write), checking the whole tar's sha256. */
export async function joinParts(check: PartsCheck, outPath: string): Promise<void> {
  await writeAtomic(outPath, concatParts(check.parts), { expected: check.whole }).catch((e: unknown) => {
    if ((e as KaError).code !== 'EINTEGRITY') throw e
    throw new KaError('EVERIFY', `the joined parts do not give the tar ${check.tarName} was split from; copy the parts and the parts file again`)
  })
}
