import { KaError } from '../../bundle/errors.js'
import { writeAtomic } from '../../bundle/atomic.js'
import { SBOM_FILE } from '../../bundle/layout.js'
import { type Io, printJson as writeJson } from '../../bundle/report.js'
import { publicKeyOnly } from '../../bundle/signing.js'
import { formatBytes } from '../../bundle/text.js'
import { readLock } from '../build.js'
import { inspectBundle, previewLock, readBundleFile } from '../inspect.js'
import { readKey } from './common.js'

/** `bundle inspect PATH`: what a bundle holds (or what a lock would build); --sbom prints its SBOM. */
export async function inspectCommand(path: string, opts: { json?: boolean; sbom?: boolean; out?: string; publicKey?: string }, io: Io): Promise<void> {
  const out = (s: string) => io.out(s)
  const printJson = (value: unknown) => writeJson(io, value)
  if (opts.out && !opts.sbom)
    throw new KaError('EUSAGE', `--out ${opts.out} writes the SBOM: give --sbom with it (bundle inspect ${path} --sbom --out ${opts.out})`)
  if (opts.sbom) {
    const sbom = await readBundleFile(path, SBOM_FILE)
    if (opts.out) await writeAtomic(opts.out, sbom)
    else out(sbom)
    return
  }
  // A lock is a preview of the bundles it builds: nothing is downloaded.
  if (/\.json$/.test(path)) {
    const preview = previewLock(path, await readLock(path))
    if (opts.json) return printJson({ ok: true, ...preview })
    const rows = preview.platforms.map((p) => [p.platform, `${p.files} files`, `${p.packages} OS packages`, `${formatBytes(p.knownBytes)} known in advance`])
    out(
      `${path}: a lock, Kubernetes ${preview.kubernetes}; each bundle adds ${preview.images} images (their size is known once their manifests are read)\n${table(rows)}hosts: ${preview.hosts.join(', ')}\n`,
    )
    return
  }
  const info = await inspectBundle(path, opts.publicKey ? { publicKeyPem: publicKeyOnly(await readKey(opts.publicKey), `--public-key ${opts.publicKey}`) } : {})
  if (opts.json) return printJson({ ok: true, ...info })
  const signature = info.signature.signedBy
    ? `signed by ${info.signature.signedBy}`
    : info.signature.signed
      ? 'signed (give --public-key to see by whom)'
      : 'not signed'
  const lines = [`${info.name}  Kubernetes ${info.kubernetes}, ${info.platform}, ${formatBytes(info.size)}, ${signature}`]
  if (info.delta)
    lines.push(
      `a delta from ${info.delta.base}: ${info.delta.files} files (${formatBytes(info.delta.bytes)}) are left to it, marked "in ${info.delta.base}" below`,
    )
  lines.push('files:')
  lines.push(
    table(info.files.map((f) => [f.name, f.version, f.size !== undefined ? formatBytes(f.size) : '?', f.base ? `${f.path} (in ${f.base})` : f.path])).trimEnd(),
  )
  if (info.packages.length) {
    lines.push('OS packages:')
    lines.push(
      table(
        info.packages.map((p) => [p.release, `${p.count} packages${p.controller ? ` (${p.controller} for the controller)` : ''}`, formatBytes(p.bytes)]),
      ).trimEnd(),
    )
  }
  lines.push(`images: ${info.images.length}${info.imageBytes ? `, ${formatBytes(info.imageBytes)} (each shared layer once)` : ''}`)
  lines.push(
    table(
      info.images.map((im) => [
        im.ref,
        im.manifest ? `${info.platform} manifest ${im.manifest.slice(0, 19)}` : '',
        im.digest ? `pinned ${im.digest.slice(0, 19)}` : '(digest resolved at build)',
      ]),
    ).trimEnd(),
  )
  out(`${lines.join('\n')}\n`)
}

/** Rows as aligned columns, two spaces apart, each line indented by two. */
function table(rows: string[][]): string {
  const widths = rows.reduce<number[]>((w, r) => r.map((c, i) => Math.max(w[i] ?? 0, c.length)), [])
  return rows.map((r) => `  ${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}\n`).join('')
}
