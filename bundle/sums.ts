import { Sha256 } from './digest.js'
import { KaError } from './errors.js'
import { isSafeRelativePath } from './layout.js'

/**
 * SHA256SUMS in the format `sha256sum -c` reads: `<hex>  <path>`, one line a file, sorted by
 * path, so the node can check a bundle with coreutils alone.
 */
export function formatSums(entries: ReadonlyMap<string, Sha256>): string {
  return [...entries.keys()]
    .sort()
    .map((p) => `${entries.get(p)!.hex}  ${p}\n`)
    .join('')
}

export function parseSums(text: string, source: string): Map<string, Sha256> {
  const out = new Map<string, Sha256>()
  text.split('\n').forEach((line, i) => {
    if (line === '') return
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line)
    if (!m?.[1] || !m[2]) throw new KaError('EVERIFY', `${source}: line ${i + 1} is not "<sha256>  <path>"; the bundle is damaged: copy it again`)
    if (!isSafeRelativePath(m[2]))
      throw new KaError('EVERIFY', `${source}: line ${i + 1} names an unsafe path ${JSON.stringify(m[2])}; do not install this bundle`)
    if (out.has(m[2])) throw new KaError('EVERIFY', `${source}: ${m[2]} is listed twice; the bundle is damaged: copy it again`)
    out.set(m[2], Sha256.fromHex(m[1]))
  })
  return out
}
