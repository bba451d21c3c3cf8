import { createPrivateKey } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { KaError } from '../../bundle/errors.js'
import { parsePlatform } from '../../bundle/platform.js'
import { type Io, printJson as writeJson } from '../../bundle/report.js'
import { formatBytes } from '../../bundle/text.js'
import { type BuildResult, buildBundle } from '../build.js'
import { Cache } from '../download/cache.js'
import { resolveMirrors } from '../mirrors.js'
import { FAT32_PART, parseSize } from '../pack/parts.js'
import { progressFor } from '../progress.js'
import { concurrency } from './common.js'

export interface BuildFlags {
  upgradeFrom?: string
  imagesOnly?: boolean
  lock: string
  platform: string
  out: string
  cache: string
  mirror: string[]
  registryMirror: string[]
  mirrors?: string
  concurrency: string
  os?: string
  sign?: string
  split?: string
  media?: string
  json?: boolean
}

/** `bundle build`: everything the lock pins downloaded, checked and packed; what to do next on the nodes. */
export async function buildCommand(opts: BuildFlags, io: Io): Promise<void> {
  const out = (s: string) => io.out(s)
  const err = (s: string) => io.err(s)
  const printJson = (value: unknown) => writeJson(io, value)
  const signingKeyPem = opts.sign
    ? await readFile(opts.sign, 'utf8').catch(() => {
        throw new KaError('EUSAGE', `--sign ${opts.sign}: cannot read the private key; make one with \`bundle keygen --out DIR\``)
      })
    : undefined
  if (signingKeyPem) {
    try {
      if (createPrivateKey(signingKeyPem).asymmetricKeyType !== 'ed25519') throw new Error()
    } catch {
      throw new KaError('EUSAGE', `--sign ${opts.sign}: not an Ed25519 private key in PEM form; make one with \`bundle keygen --out DIR\``)
    }
  }
  const splitBytes = opts.split ? parseSize(opts.split) : opts.media === 'fat32' ? FAT32_PART : undefined
  const result = await buildBundle({
    ...(signingKeyPem ? { signingKeyPem } : {}),
    ...(splitBytes ? { splitBytes } : {}),
    ...(opts.upgradeFrom ? { upgradeFrom: opts.upgradeFrom } : {}),
    ...(opts.imagesOnly ? { imagesOnly: true } : {}),
    lockPath: opts.lock,
    platform: parsePlatform(opts.platform, '--platform'),
    outDir: opts.out,
    cache: new Cache(opts.cache),
    ...(await resolveMirrors(opts)),
    ...(opts.os
      ? {
          releases: opts.os
            .split(',')
            .map((r) => r.trim())
            .filter(Boolean),
        }
      : {}),
    concurrency: concurrency(opts.concurrency),
    progress: progressFor({ json: opts.json }),
  })
  if (opts.json) printJson({ ok: true, ...result })
  else {
    const fromCache = result.files.filter((f) => f.from === 'cache').length
    err(
      `built ${result.name}: ${result.files.length} files and ${result.images.length} images (${fromCache} files from cache, ${formatBytes(result.downloadedBytes)} downloaded), ${formatBytes(result.size)}\n`,
    )
    out(result.parts ? `${result.parts.join('\n')}\n${result.partsFile}\n` : `${result.bundle}\n`)
    err(nextSteps(result))
  }
}

/** What to do with a built bundle: what to copy, and the commands on the nodes. */
function nextSteps(r: BuildResult): string {
  const tar = r.bundle.split('/').pop()!
  const copy = r.parts ? `${r.parts.map((p) => p.split('/').pop()).join(' ')} and ${r.partsFile!.split('/').pop()}` : `${tar} and ${tar}.sha256`
  // Signed: only the verifier carried apart from the stick unpacks it. Unsigned: tar, never keeping the tar's owners or modes.
  const unpack = r.signedBy
    ? `kube-airgap-verify --extract . ${r.parts ? r.partsFile!.split('/').pop() : tar} && cd ${r.name}`
    : `${r.parts ? `cat ${tar}.??? > ${tar} && ` : `sha256sum -c ${tar}.sha256 && `}tar xf ${tar} --no-same-owner --no-same-permissions && cd ${r.name}`
  const facts = [
    r.signedBy ? `signed by ${r.signedBy}: check it with kube-airgap-verify (carried apart from the stick)` : 'not signed (bundle build --sign KEY to sign)',
    r.packages.length
      ? `${r.packages.reduce((n, p) => n + p.count, 0)} OS packages for ${r.packages.map((p) => p.release).join(', ')}`
      : 'no OS packages (the nodes need conntrack, socat, ... already)',
  ]
  if (!r.files.length)
    return [
      `        an image bundle: ${r.images.length} images; ${facts[0]}`,
      `next:   copy ${copy} to the stick; on each node that should have the images (any role, the cluster running):`,
      `        ${unpack.replace(/ && cd .*$/, '')}`,
      `        sudo ./install images ${r.name}   (from the cluster's own bundle folder)`,
      '',
    ].join('\n')
  if (r.delta)
    return [
      `        a delta: ${r.delta.files} files (${formatBytes(r.delta.bytes)}) left to ${r.delta.base}, which the nodes must still have; ${facts.join('; ')}`,
      `next:   copy ${copy} to the stick; on each node, beside ${r.delta.base}/:`,
      `        ${unpack}`,
      '        sudo ./install upgrade          (the first master, then the other masters, then the workers)',
      '',
    ].join('\n')
  return [
    `        ${facts.join('; ')}`,
    `next:   copy ${copy} to the stick; on each node:`,
    `        ${unpack}`,
    '        sudo ./install --role master        (the first master; then on the others:)',
    '        sudo ./install --role worker --join-file join/worker.yaml',
    '',
  ].join('\n')
}
