import { existsSync } from 'node:fs'
import { mkdtemp, open, readdir, readFile, readlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Sha256 } from '../../bundle/digest.js'
import { Connections } from '../../builder/download/connections.js'
import { download, rangesPath } from '../../builder/download/download.js'
import { httpDefaults } from '../../builder/download/http.js'
import { startUpstream, type Upstream, writeRandomFile } from '../support/upstream.js'

/** A split download's partial file and its sidecar, against a real HTTP server on loopback. */
const MIB = 1 << 20
const SIZE = 4 * MIB
let dir: string
let up: Upstream
let digest: Sha256
let content: Buffer
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ka-download-'))
  up = await startUpstream(join(dir, 'up'))
  await writeRandomFile(join(dir, 'up', 'big.bin'), SIZE, 'big')
  content = await readFile(join(dir, 'up', 'big.bin'))
  digest = Sha256.of(content)
})
afterAll(async () => {
  await up.close()
})

/** Four connections; ranges are split only down to `segment` (the default: never, for these sizes). */
const http = (segment = 4 * MIB) => httpDefaults({ backoffMs: 1, connections: new Connections(4, segment) })
/** A partial file holding the file's own bytes at `ranges` (zeros elsewhere), and a sidecar naming them. */
async function partialWith(name: string, ranges: [number, number][], sidecar: object = { size: SIZE, done: ranges }): Promise<string> {
  const partial = join(dir, name)
  const fh = await open(partial, 'w')
  await fh.truncate(SIZE)
  for (const [a, b] of ranges) await fh.write(content, a, b - a, a)
  await fh.close()
  await writeFile(rangesPath(partial), JSON.stringify(sidecar))
  return partial
}

/** How many of this process's descriptors (the hash worker's among them) are open on `path`. */
async function openOn(path: string): Promise<number> {
  let n = 0
  for (const fd of await readdir('/proc/self/fd')) if ((await readlink(`/proc/self/fd/${fd}`).catch(() => '')) === path) n++
  return n
}

describe('a split download resumed from its sidecar', () => {
  it('asks only for the gaps, each with its own range, and hashes the file in order', async () => {
    const partial = await partialWith('gaps', [
      [0, MIB],
      [3 * MIB, 3.5 * MIB],
    ])
    const start = up.log.length
    const got = await download({ what: 'big', url: `${up.url}/big.bin`, partial, expected: digest, size: SIZE }, http())
    expect(got.digest.equals(digest)).toBe(true)
    const log = up.log.slice(start)
    expect(log.map((l) => l.range).sort()).toEqual([`bytes=${MIB}-${3 * MIB - 1}`, `bytes=${3.5 * MIB}-`])
    expect(log.reduce((n, l) => n + l.bytesSent, 0)).toBe(2.5 * MIB)
    expect((await readFile(partial)).equals(content)).toBe(true)
    expect(existsSync(rangesPath(partial))).toBe(false)
  })

  it('opens the partial file once for all its ranges, and holds it open no longer than the download', async () => {
    const partial = await partialWith('handles', [
      [0, MIB],
      [2 * MIB, 2.5 * MIB],
      [3 * MIB, 3.5 * MIB],
    ])
    const got = await download({ what: 'big', url: `${up.url}/big.bin`, partial, expected: digest, size: SIZE }, http())
    expect(got.digest.equals(digest)).toBe(true)
    expect(await openOn(partial)).toBe(0)
  })

  it('a gap wide enough is split again while it downloads; the pieces still assemble in order', async () => {
    up.throttle = 2 * MIB // about two seconds for the gap on one connection: worth splitting
    try {
      const partial = await partialWith('split', [[0, 256 << 10]])
      const start = up.log.length
      const got = await download({ what: 'big', url: `${up.url}/big.bin`, partial, expected: digest, size: SIZE }, http(512 << 10))
      expect(got.digest.equals(digest)).toBe(true)
      expect(up.log.slice(start).length).toBeGreaterThanOrEqual(2)
      expect((await readFile(partial)).equals(content)).toBe(true)
    } finally {
      up.throttle = 0
    }
  })

  it("with the default smallest piece, a file's last few MiB on a capped connection are split (as aria2c -k1M does), not left to one connection", async () => {
    up.throttle = 2 * MIB // two seconds for the whole file on one connection: worth splitting, though under 8 MiB
    try {
      const start = up.log.length
      const got = await download(
        { what: 'big', url: `${up.url}/big.bin`, partial: join(dir, 'default-piece'), expected: digest, size: SIZE },
        http(httpDefaults().segmentBytes),
      )
      expect(got.digest.equals(digest)).toBe(true)
      expect(up.log.slice(start).filter((l) => l.range !== undefined).length).toBeGreaterThanOrEqual(1)
    } finally {
      up.throttle = 0
    }
  })

  it('a spare connection splits the download that comes first in the bundle, not the widest, so files finish in the order they are packed', async () => {
    await writeRandomFile(join(dir, 'up', 'wide.bin'), 6 * MIB, 'wide')
    const wide = Sha256.of(await readFile(join(dir, 'up', 'wide.bin')))
    up.throttle = 2 * MIB // a few seconds each on one connection: worth splitting
    try {
      const opts = httpDefaults({ backoffMs: 1, connections: new Connections(3, 256 << 10) })
      const start = up.log.length
      // The wider file starts first and is later in the bundle: the third connection goes to the other.
      const later = download(
        { what: 'wide', url: `${up.url}/wide.bin`, partial: join(dir, 'order-wide'), expected: wide, size: 6 * MIB, order: 'files/z' },
        opts,
      )
      const first = download({ what: 'big', url: `${up.url}/big.bin`, partial: join(dir, 'order-big'), expected: digest, size: SIZE, order: 'files/a' }, opts)
      const finished: string[] = []
      await Promise.all([later.then(() => finished.push('wide')), first.then(() => finished.push('big'))])
      const splits = up.log.slice(start).filter((l) => l.range !== undefined)
      expect(splits[0]?.path).toBe('/big.bin')
      expect(finished).toEqual(['big', 'wide'])
    } finally {
      up.throttle = 0
    }
  })

  it('connections that free up together all go to the download first in the bundle, each split waiting for the one before to be answered', async () => {
    await writeRandomFile(join(dir, 'up', 'same.bin'), SIZE, 'same')
    const same = Sha256.of(await readFile(join(dir, 'up', 'same.bin')))
    up.throttle = 1 * MIB // four seconds each on one connection: worth splitting
    try {
      // Two files on four connections: the two spare ones free at once, when both are running.
      const opts = httpDefaults({ backoffMs: 1, connections: new Connections(4, 256 << 10) })
      const start = up.log.length
      // The first file asks first: when the later one's rate is known, so is its (on a loaded
      // machine, one that answered later might not be measured yet, and a spare would go on).
      const first = download({ what: 'big', url: `${up.url}/big.bin`, partial: join(dir, 'together-a'), expected: digest, size: SIZE, order: 'files/a' }, opts)
      const later = download({ what: 'same', url: `${up.url}/same.bin`, partial: join(dir, 'together-z'), expected: same, size: SIZE, order: 'files/z' }, opts)
      const finished: string[] = []
      await Promise.all([later.then(() => finished.push('later')), first.then(() => finished.push('first'))])
      // Each split goes to the first file while it has a range worth splitting: the first splits
      // of all are its own, not one for each file.
      const splits = up.log.slice(start).filter((l) => l.range !== undefined)
      expect(splits.slice(0, 2).map((l) => l.path)).toEqual(['/big.bin', '/big.bin'])
      expect(finished).toEqual(['first', 'later'])
    } finally {
      up.throttle = 0
    }
  })

  it('a range whose connection is cut goes on from where it stopped', async () => {
    const partial = await partialWith('cut', [[0, MIB]])
    up.fault('/big.bin', { kind: 'cut', afterBytes: 256 << 10, times: 1 })
    const start = up.log.length
    const got = await download({ what: 'big', url: `${up.url}/big.bin`, partial, expected: digest, size: SIZE }, http())
    expect(got.digest.equals(digest)).toBe(true)
    const ranges = up.log.slice(start).map((l) => l.range)
    expect(ranges[0]).toBe(`bytes=${MIB}-`)
    expect(Number(/^bytes=(\d+)-/.exec(ranges[1]!)![1])).toBeGreaterThan(MIB)
  })

  it('a sidecar that does not fit the file, or the pinned size, is not trusted: the file comes again from byte 0', async () => {
    for (const [name, sidecar] of [
      ['beyond', { size: SIZE, done: [[0, SIZE + 1]] }],
      [
        'overlap',
        {
          size: SIZE,
          done: [
            [0, 2 * MIB],
            [MIB, 3 * MIB],
          ],
        },
      ],
      ['other-size', { size: SIZE * 2, done: [[0, MIB]] }],
      ['junk', { size: 'x', done: 'y' }],
    ] as const) {
      const partial = await partialWith(name, [[0, MIB]], sidecar)
      const start = up.log.length
      const got = await download({ what: 'big', url: `${up.url}/big.bin`, partial, expected: digest, size: SIZE }, http())
      expect(got.digest.equals(digest), name).toBe(true)
      expect(up.log.slice(start)[0], name).toMatchObject({ status: 200, bytesSent: SIZE })
    }
  })
})

describe('bytes that are not the pinned ones', () => {
  it('a whole file whose sha256 differs ends in one EINTEGRITY, fetched once; a full partial file is judged, not resumed', async () => {
    const other = Sha256.of(Buffer.from('not the file'))
    for (const full of [false, true]) {
      const partial = join(dir, `wrong-${full}`)
      if (full) await writeFile(partial, content)
      const start = up.log.length
      await expect(download({ what: 'Packages.xz', url: `${up.url}/big.bin`, partial, expected: other, size: SIZE }, http())).rejects.toThrow(
        /^Packages\.xz from .*: expected sha256 .*not the bytes the lock pins/,
      )
      expect(up.log.length - start, String(full)).toBe(1)
      expect(existsSync(partial)).toBe(false)
    }
  })

  it('a mirror whose index is shorter than the signed Release says: one EINTEGRITY naming the suite and the index, not a loop of 416s and refetches', async () => {
    const start = up.log.length
    const what = 'debian-12 bookworm main/binary-amd64/Packages.xz (against the signed Release)'
    await expect(
      download({ what, url: `${up.url}/big.bin`, partial: join(dir, 'short'), expected: Sha256.of(Buffer.from('the pinned index')), size: SIZE + 100 }, http()),
    ).rejects.toMatchObject({
      code: 'EINTEGRITY',
      message: expect.stringMatching(
        /^debian-12 bookworm main\/binary-amd64\/Packages\.xz .*: .* has 4194304 bytes, not the 4194404 pinned: not the pinned file/,
      ),
    })
    // The whole file, then the resume that 416 answers with the server's size: two requests.
    expect(up.log.slice(start).map((l) => l.range)).toEqual([undefined, `bytes=${SIZE}-`])
    expect(existsSync(join(dir, 'short'))).toBe(false)
  })
})
