import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { writeAtomic } from '../../bundle/atomic.js'
import { KaError } from '../../bundle/errors.js'
import { parseLock, serializeLock } from '../../bundle/lock.js'
import { type Io, printJson as writeJson } from '../../bundle/report.js'
import { Cache } from '../download/cache.js'
import { httpDefaults } from '../download/http.js'
import { createLock } from '../lock/lock.js'
import { readManifest } from '../lock/manifest.js'
import { resolveMirrors } from '../mirrors.js'
import { progressFor } from '../progress.js'
import { concurrency } from './common.js'

export interface LockFlags {
  manifest: string
  out: string
  mirror: string[]
  registryMirror: string[]
  mirrors?: string
  cache: string
  concurrency: string
  keyring: string[]
  json?: boolean
  /** commander's name for --no-kubeadm: false when given. */
  kubeadm?: boolean
  checkImages?: boolean
}

/** `bundle lock`: a manifest resolved into a lock, checked as `bundle build` will read it before it is written. */
export async function lockCommand(opts: LockFlags, io: Io): Promise<void> {
  const out = (s: string) => io.out(s)
  const printJson = (value: unknown) => writeJson(io, value)
  for (const k of opts.keyring) if (!existsSync(k)) throw new KaError('EUSAGE', `--keyring ${k}: no such file; give an OpenPGP keyring (gpg --export > FILE)`)
  const { mirrors, registryMirrors, mirrorsFile } = await resolveMirrors(opts)
  const manifest = await readManifest(opts.manifest)
  const progress = progressFor({ json: opts.json })
  let lock: Awaited<ReturnType<typeof createLock>>
  try {
    lock = await createLock(manifest, {
      cache: new Cache(opts.cache),
      http: httpDefaults(),
      mirrors,
      registryMirrors,
      ...(mirrorsFile ? { mirrorsFile } : {}),
      concurrency: concurrency(opts.concurrency),
      progress,
      keyrings: opts.keyring.map((k) => resolve(k)),
      ...(opts.kubeadm === false ? { runKubeadm: false } : {}),
      ...(opts.checkImages ? { checkImages: true } : {}),
    })
  } finally {
    progress.close()
  }
  // What `bundle build` will read back is checked before it is written: never a lock build rejects.
  const text = serializeLock(lock)
  parseLock(text, `the lock made from ${opts.manifest}`)
  await writeAtomic(opts.out, text)
  if (opts.json) printJson({ ok: true, lock: opts.out, files: lock.files.length, images: lock.images.length })
  else {
    out(`${opts.out}: ${lock.files.length} files, ${lock.images.length} images for ${lock.platforms.join(', ')}\n`)
  }
}
