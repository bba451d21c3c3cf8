import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Sha256 } from '../../bundle/digest.js'
import { Cache } from '../../builder/download/cache.js'
import { download } from '../../builder/download/download.js'
import { Fetcher, type Item } from '../../builder/download/fetcher.js'
import { httpDefaults } from '../../builder/download/http.js'
import { packBundle } from '../../builder/pack/pack.js'
import { silentProgress } from '../../builder/progress.js'

const MiB = 1 << 20
const FOLLOW = randomBytes(4 * MiB)
const RESTART = randomBytes(3 * MiB)

/**
 * A real HTTP server on loopback that holds a body halfway until the test lets it go:
 * /follow sends 2 of its 4 MiB, /restart (asked with Range) 1 MiB of what is left.
 */
let server: Server
let base: string
const gets: string[] = []
let letGo: () => void = () => {}
let held = new Promise<void>((r) => (letGo = r))
const halfway = async (res: ServerResponse, body: Buffer, at: number) => {
  res.write(body.subarray(0, at))
  await held
  res.end(body.subarray(at))
}
beforeAll(async () => {
  server = createServer((req, res) => {
    gets.push(`${req.url} ${req.headers.range ?? ''}`.trim())
    const body = req.url === '/follow' ? FOLLOW : RESTART
    const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0)
    res.setHeader('accept-ranges', 'bytes')
    res.setHeader('content-length', body.length - from)
    if (from > 0) {
      res.statusCode = 206
      res.setHeader('content-range', `bytes ${from}-${body.length - 1}/${body.length}`)
    }
    if (req.url === '/follow') return void halfway(res, body, 2 * MiB)
    if (from > 0) return void halfway(res, body.subarray(from), MiB)
    res.end(body)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(async () => {
  letGo()
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
})

const http = httpDefaults({ backoffMs: 1, retries: 0 })
const item = (path: string, bytes: Buffer): Item => ({
  rel: `files${path}`,
  digest: Sha256.of(bytes),
  size: bytes.length,
  label: path,
  fetch: (partial, hooks) => download({ what: path, url: `${base}${path}`, partial, expected: Sha256.of(bytes), size: bytes.length, ...hooks }, http),
})
const ID = { name: 'b', tarName: 'b.tar', kubernetes: '1.29.3', platform: 'linux/amd64' as const }
const data = () => new Map([['bundle.lock.json', { bytes: Buffer.from('{}\n'), mode: 0o644 }]])

/** Waits until the temp tar being written holds `bytes` or more (false after 10 s). */
async function tempReaches(out: string, bytes: number): Promise<boolean> {
  for (let t = 0; t < 500; t++) {
    const temp = (await readdir(out).catch(() => [])).find((n) => n.startsWith('.b.tar.tmp-'))
    if (temp && ((await stat(join(out, temp)).catch(() => undefined))?.size ?? 0) >= bytes) return true
    await sleep(20)
  }
  return false
}

/** The bytes of one entry of a tar we wrote (ustar, in order: a header, the bytes, padding). */
function entry(tar: Buffer, path: string): Buffer | undefined {
  for (let at = 0; at + 512 <= tar.length; ) {
    const name = tar.toString('utf8', at, at + 100).replace(/\0.*$/s, '')
    if (!name) return undefined
    const size = Number.parseInt(
      tar
        .toString('utf8', at + 124, at + 136)
        .replace(/\0.*$/s, '')
        .trim() || '0',
      8,
    )
    if (name === path) return tar.subarray(at + 512, at + 512 + size)
    at += 512 + Math.ceil(size / 512) * 512
  }
  return undefined
}

describe('packing follows the downloads', () => {
  it('copies a download into the tar as its bytes come, and names the tar once the download is committed against its pin', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ka-pack-'))
    const fetcher = new Fetcher({ cache: new Cache(join(dir, 'cache')), progress: silentProgress })
    const out = join(dir, 'out')
    const packed = packBundle({ outDir: out, progress: silentProgress }, fetcher, [item('/follow', FOLLOW)], data(), ID)
    // Half the file is in, the rest held back by the server: its first MiB is in the tar already.
    expect(await tempReaches(out, MiB)).toBe(true)
    expect(await readdir(out)).not.toContain('b.tar')
    letGo()
    const { sha256 } = await packed
    const tar = await readFile(join(out, 'b.tar'))
    expect(entry(tar, 'b/files/follow')?.equals(FOLLOW)).toBe(true)
    expect(Sha256.of(tar).equals(sha256)).toBe(true)
    expect(await readFile(join(out, 'b.tar.sha256'), 'utf8')).toBe(`${sha256.hex}  b.tar\n`)
  })

  it('starts the copy over when the download it follows starts over (bytes kept from an older file)', async () => {
    held = new Promise<void>((r) => (letGo = r))
    gets.length = 0
    const dir = await mkdtemp(join(tmpdir(), 'ka-pack-'))
    const cache = new Cache(join(dir, 'cache'))
    const it1 = item('/restart', RESTART)
    // An earlier run kept the first MiB of another file under this pin's partial name.
    const partial = cache.partialPath(it1.digest.hex)
    await mkdir(dirname(partial), { recursive: true })
    await writeFile(partial, randomBytes(MiB))
    const out = join(dir, 'out')
    const packed = packBundle({ outDir: out, progress: silentProgress }, new Fetcher({ cache, progress: silentProgress }), [it1], data(), ID)
    // The kept MiB and the next one are copied before the server sends the rest.
    expect(await tempReaches(out, MiB)).toBe(true)
    letGo()
    const { sha256 } = await packed
    // The resumed bytes fail the pin; the download starts from byte 0, and so does the copy.
    expect(gets).toEqual([`/restart bytes=${MiB}-`, '/restart'])
    const tar = await readFile(join(out, 'b.tar'))
    expect(entry(tar, 'b/files/restart')?.equals(RESTART)).toBe(true)
    expect(Sha256.of(tar).equals(sha256)).toBe(true)
  })
})
