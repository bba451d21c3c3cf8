import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { appendFile, mkdtemp, readdir, readlink, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PrefixHash } from '../../bundle/hasher.js'
import { REPO } from '../support/fake-upstream.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-hasher-'))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
/** How many of this process's descriptors (the worker's among them) are open on `path`. */
const openOn = async (path: string) => {
  let n = 0
  for (const fd of await readdir('/proc/self/fd')) if ((await readlink(`/proc/self/fd/${fd}`).catch(() => '')) === path) n++
  return n
}

describe('PrefixHash', () => {
  it('hashes a file written in many small pieces, peeks part-way, and lets go of the file at the end', async () => {
    const path = join(dir, 'growing')
    const bytes = randomBytes(3 * (1 << 20) + 12_345)
    await writeFile(path, '')
    const prefix = new PrefixHash(path)
    const half = bytes.length >> 1
    for (let at = 0; at < bytes.length; at += 16_384) {
      const piece = bytes.subarray(at, at + 16_384)
      await appendFile(path, piece)
      prefix.grow(at + piece.length)
      if (at < half && at + piece.length >= half) {
        // A peek sees every byte grown so far, however small the steps.
        const sofar = await prefix.peek()
        expect(sofar.size).toBe(at + piece.length)
        expect(sofar.digest.hex).toBe(sha(bytes.subarray(0, at + piece.length)))
      }
    }
    const { digest, size } = await prefix.digest()
    expect(size).toBe(bytes.length)
    expect(digest.hex).toBe(sha(bytes))
    expect(await openOn(path)).toBe(0)
  })

  it('closes the file when forgotten part-way', async () => {
    const path = join(dir, 'dropped')
    await writeFile(path, randomBytes(2 << 20))
    const prefix = new PrefixHash(path)
    prefix.grow(2 << 20)
    await prefix.peek()
    expect(await openOn(path)).toBe(1)
    prefix.forget()
    // The worker takes requests in order: a later one answered means the forget was done.
    const other = new PrefixHash(path)
    await other.digest()
    expect(await openOn(path)).toBe(0)
  })
})

describe('warmHasher', () => {
  it('starts the worker ahead of the first hash, and an idle one keeps no process alive', async () => {
    // The module, made plain JavaScript by esbuild (the unit tier runs without `npm run build`),
    // in a process of its own: the worker's thread shows in /proc, and the process ends by
    // itself once its work is done (a worker that held it would hang it).
    const { build } = await import('esbuild')
    const hasher = join(dir, 'hasher.mjs')
    await build({
      entryPoints: [join(REPO, 'bundle', 'hasher.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      outfile: hasher,
      logLevel: 'warning',
    })
    const program = `
      const { readdirSync } = require('node:fs')
      const threads = () => readdirSync('/proc/self/task').length
      import(${JSON.stringify(hasher)}).then(async (m) => {
        const before = threads()
        m.warmHasher()
        for (let i = 0; i < 200 && threads() === before; i++) await new Promise((r) => setTimeout(r, 10))
        console.log(threads() > before ? 'started' : 'not started')
      })`
    const run = spawnSync(process.execPath, ['-e', program], { encoding: 'utf8', timeout: 20_000 })
    expect(run.stderr).toBe('')
    expect(run.stdout.trim()).toBe('started')
    expect(run.signal).toBeNull()
    expect(run.status).toBe(0)
  })
})
