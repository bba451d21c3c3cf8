import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { dirname } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { Sha256 } from '../../bundle/digest.js'
import { writeAtomic } from '../../bundle/atomic.js'
import { KaError } from '../../bundle/errors.js'
import { readTar } from '../../bundle/tar.js'
import type { Cache } from '../download/cache.js'

/**
 * The Node.js binary out of the pinned `node-v*-linux-*.tar.xz`, extracted on the build
 * machine (Node's zlib has no xz decoder, and the air-gapped node should not need xz).
 * The binary goes into the cache by its own digest; `derived/runtime-<tarball>` remembers
 * which, so a warm build does not extract again. Returns the binary's digest and size.
 */
export async function extractRuntime(cache: Cache, tarball: Sha256, xz = 'xz'): Promise<{ digest: Sha256; size: number }> {
  const memo = cache.derivedPath(`runtime-${tarball.hex}`)
  const known = await readFile(memo, 'utf8').catch(() => undefined)
  if (known) {
    const [hex, size] = known.trim().split(' ')
    const digest = Sha256.fromHex(hex!)
    if (await cache.has(digest)) return { digest, size: Number(size) }
  }
  const partial = cache.partialPath(`runtime-${tarball.hex}`)
  await mkdir(dirname(partial), { recursive: true })
  const hash = createHash('sha256')
  let size = 0
  let found = false
  const child = spawn(xz, ['-dc', cache.blobPath(tarball)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<number>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'ENOENT'
          ? new KaError('EUSAGE', `${xz} is not installed: the build machine needs xz to unpack the Node.js runtime (apt-get install xz-utils)`)
          : e,
      ),
    )
    child.on('close', (code) => resolve(code ?? 1))
  })
  const unpacked = readTar(child.stdout, (e) => {
    if (found || e.type !== 'File' || !/^(\.\/)?node-v[^/]+\/bin\/node$/.test(e.path)) return void e.body.resume()
    found = true
    e.body.on('data', (c: Buffer) => {
      hash.update(c)
      size += c.length
    })
    return pipeline(e.body, createWriteStream(partial))
  })
  try {
    await Promise.all([
      unpacked,
      exited.then((code) =>
        code === 0 ? undefined : Promise.reject(new KaError('EINTEGRITY', `the Node.js runtime tarball did not unpack: ${stderr.trim()}`)),
      ),
    ])
    if (!found) throw new KaError('EINTEGRITY', 'the Node.js runtime tarball has no node-v*/bin/node')
    const digest = Sha256.ofHash(hash)
    await cache.commit(partial, digest)
    await mkdir(dirname(memo), { recursive: true })
    await writeAtomic(memo, `${digest.hex} ${size}\n`)
    return { digest, size }
  } finally {
    await rm(partial, { force: true })
  }
}
