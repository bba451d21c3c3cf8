import { readFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { urlBaseName } from '../../builder/lock/components.js'
import { wantsOf, type Want } from '../../builder/lock/lock.js'
import { parseManifest, type Manifest } from '../../builder/lock/manifest.js'
import { startUpstream, writeRandomFile, writeText, type Upstream } from './upstream.js'

/** The repository root, from the TypeScript sources (vitest) or their compiled copy under lib/ (bench). */
const here = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '')
export const REPO = basename(here) === 'lib' ? dirname(here) : here
export const DEFAULT_MANIFEST = join(REPO, 'manifests', 'default.yaml')

/**
 * The default manifest without its OS packages section (the last one): tests serve their
 * own archives (packages.test.ts) and never reach the distributions' from here.
 */
export const withoutPackages = (text: string): string => text.replace(/\npackages:\n[\s\S]*$/, '\n')

export interface Artifact {
  want: Want
  /** Path on the fake upstream (`/github.com/...`). */
  path: string
  sha256: string
  size: number
}

export interface FakeUpstream {
  up: Upstream
  manifest: Manifest
  /** `--mirror` specs that send every canonical host to the fake upstream. */
  mirrors: string[]
  artifacts: Artifact[]
  artifact(name: string, platform?: string): Artifact
  close(): Promise<void>
}

export interface FakeOptions {
  manifestText?: string
  /** Bytes of generated content for a want (default: a few KiB, different per file). */
  size?: (w: Want) => number
  /** Real content for a want, when the test has it (the reference calico.yaml, say). */
  content?: (w: Want) => Promise<Buffer | undefined>
  /** What the checksum file claims for a want (default: the generated content's hash). */
  claim?: (w: Want) => string | undefined
}

/** `https://github.com/x` -> `/github.com/x`: where the fake upstream serves a canonical URL. */
export const pathOf = (url: string): string => {
  const u = new URL(url)
  return `/${u.host}${u.pathname}`
}

/**
 * Generates a fake upstream for a manifest, at the canonical paths the production
 * component table computes, with checksum files in the formats upstream publishes
 * (bare hex on dl.k8s.io, `<hex>  <name>` elsewhere, one file for many in runc,
 * Calico and Node.js), and starts it on loopback.
 */
export async function fakeUpstream(dir: string, opts: FakeOptions = {}): Promise<FakeUpstream> {
  const manifest = parseManifest(opts.manifestText ?? withoutPackages(await readFile(DEFAULT_MANIFEST, 'utf8')), 'manifest')
  const wants = wantsOf(manifest)
  const artifacts: Artifact[] = []
  const sums = new Map<string, string[]>()
  let i = 0
  for (const w of wants) {
    const path = pathOf(w.url)
    const real = await opts.content?.(w)
    let sha256: string
    let size: number
    if (real) {
      await writeText(join(dir, path), real)
      sha256 = createHash('sha256').update(real).digest('hex')
      size = real.length
    } else {
      size = opts.size?.(w) ?? 4096 + 977 * i++
      sha256 = await writeRandomFile(join(dir, path), size, w.url)
    }
    artifacts.push({ want: w, path, sha256, size })
    if (w.checksumUrl) {
      const claim = opts.claim?.(w) ?? sha256
      sums.set(w.checksumUrl, [...(sums.get(w.checksumUrl) ?? []), `${claim}  ${urlBaseName(w.url)}`])
    }
  }
  for (const [url, lines] of sums) {
    const bare = new URL(url).host === 'dl.k8s.io' && lines.length === 1
    await writeText(join(dir, pathOf(url)), bare ? `${lines[0]!.split(' ')[0]}\n` : `${lines.join('\n')}\n`)
  }
  const up = await startUpstream(dir)
  const hosts = [...new Set(wants.map((w) => new URL(w.url).host))]
  return {
    up,
    manifest,
    mirrors: hosts.map((h) => `https://${h}=${up.url}/${h}`),
    artifacts,
    artifact: (name, platform) => {
      const a = artifacts.find((x) => x.want.name === name && (platform === undefined || x.want.platform === platform))
      if (!a) throw new Error(`no fake artifact ${name} ${platform ?? ''}`)
      return a
    },
    close: () => up.close(),
  }
}
