import { existsSync } from 'node:fs'
import { mkdtemp, readFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Sha256 } from '../../bundle/digest.js'
import { Cache } from '../../builder/download/cache.js'
import { Cancelled, Fetcher, type Item } from '../../builder/download/fetcher.js'
import { download } from '../../builder/download/download.js'
import { httpDefaults } from '../../builder/download/http.js'
import { silentProgress } from '../../builder/progress.js'

/** A real HTTP server on loopback: /good serves GOOD, /slow never answers, /gone is 404. */
const GOOD = Buffer.from('the pinned bytes\n')
let server: Server
let base: string
let requests = 0
beforeAll(async () => {
  server = createServer((req, res) => {
    requests++
    if (req.url === '/good') return void res.end(GOOD)
    if (req.url === '/slow') return // held open until the fetch is stopped
    res.statusCode = 404
    res.end()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(async () => {
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
})

const http = httpDefaults({ backoffMs: 1, retries: 0 })
const item = (path: string, digest: Sha256, over: Partial<Item> = {}): Item => ({
  rel: `files${path}`,
  digest,
  label: path,
  fetch: (partial, hooks) => download({ what: path, url: `${base}${path}`, partial, expected: digest, ...hooks }, http),
  ...over,
})
const fetcher = async () => {
  const cache = new Cache(await mkdtemp(join(tmpdir(), 'ka-fetcher-')))
  return { cache, f: new Fetcher({ cache, progress: silentProgress }) }
}

describe('the fetcher: the one place content enters the cache', () => {
  it("tells the progress a file's size when the server's Content-Length gives it and the lock did not", async () => {
    const cache = new Cache(await mkdtemp(join(tmpdir(), 'ka-fetcher-')))
    const sized: [string, number][] = []
    const f = new Fetcher({ cache, progress: { ...silentProgress, sized: (id, total) => void sized.push([id, total]) } })
    const it1 = item('/good', Sha256.of(GOOD))
    await f.ensure(it1)
    expect(sized).toEqual([[it1.digest.hex, GOOD.length]])
  })

  it('fetches once, commits under the digest asked for, and finds it cached the next time', async () => {
    const { cache, f } = await fetcher()
    const it1 = item('/good', Sha256.of(GOOD))
    const before = requests
    await Promise.all([f.ensure(it1), f.ensure(it1)])
    expect(requests - before).toBe(1)
    expect(await readFile(cache.blobPath(it1.digest))).toEqual(GOOD)
    expect(f.downloaded.has(it1.digest.hex)).toBe(true)
    const again = new Fetcher({ cache, progress: silentProgress })
    await again.ensure(it1)
    expect(requests - before).toBe(1)
    expect((await again.check(it1))?.equals(it1.digest)).toBe(true)
  })

  it('refuses what a source brings under another digest, and commits nothing', async () => {
    const { cache, f } = await fetcher()
    const want = Sha256.of('what the lock pins')
    // A source that ignores the pin and reports the digest of what it did fetch.
    const lying = item('/good', want, { fetch: (partial, hooks) => download({ what: 'x', url: `${base}/good`, partial, ...hooks }, http) })
    await expect(f.ensure(lying)).rejects.toMatchObject({ code: 'EINTEGRITY' })
    expect(existsSync(cache.blobPath(want))).toBe(false)
    expect(existsSync(cache.blobPath(Sha256.of(GOOD)))).toBe(false)
  })

  it('a failure stops the others, and what it reports is the failure, not the cancellations', async () => {
    const { f } = await fetcher()
    const slow = f.ensure(item('/slow', Sha256.of('never')))
    const gone = f.ensure(item('/gone', Sha256.of('gone')))
    const first = await gone.catch((e: unknown) => e)
    expect(first).toMatchObject({ code: 'EFETCH' })
    // Stopped mid-flight (the download rethrows the abort's reason, the first failure itself),
    // or before it began (Cancelled): either way it ends, at once.
    const stopped = await slow.catch((e: unknown) => e)
    expect(stopped === first || stopped instanceof Cancelled, String(stopped)).toBe(true)
    expect(await f.stop(first)).toBe(first)
    await expect(f.ensure(item('/good', Sha256.of('later')))).rejects.toBeInstanceOf(Cancelled)
  })
})
