import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { writeAtomic } from '../../bundle/atomic.js'
import { Sha256 } from '../../bundle/digest.js'
import { ImageLayout, type LayoutImage } from '../../bundle/image-layout.js'
import { imageBlobPath } from '../../bundle/layout.js'
import { readTar, TarWriter } from '../../bundle/tar.js'

const manifest = (blobs: Sha256[]) =>
  Buffer.from(JSON.stringify({ schemaVersion: 2, config: { digest: blobs[0]!.oci }, layers: blobs.slice(1).map((b) => ({ digest: b.oci })) }))

describe('the image layout', () => {
  it('writes an index and reads it back as names and manifest digests', () => {
    const images: LayoutImage[] = [
      {
        name: 'registry.k8s.io/pause:3.9',
        manifest: Sha256.of('a'),
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        size: 1,
        platform: { os: 'linux', architecture: 'amd64' },
        ref: '3.9',
      },
      {
        name: 'docker.io/calico/node:v3.28.0',
        manifest: Sha256.of('b'),
        mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        size: 2,
        ref: 'v3.28.0',
      },
    ]
    const bytes = ImageLayout.indexBytes(images)
    expect(bytes.toString()).toMatch(/^\{\n {2}"schemaVersion": 2,\n {2}"mediaType": "application\/vnd\.oci\.image\.index\.v1\+json"/)
    expect(bytes.toString().endsWith('}\n')).toBe(true)
    const back = ImageLayout.parseIndex(bytes)
    expect(back).toHaveLength(2)
    expect(back.map((i) => [i.name, i.manifest.oci, i.ref])).toEqual(images.map((i) => [i.name, i.manifest.oci, i.ref]))
    expect(back[0]!.manifest.equals(images[0]!.manifest)).toBe(true)
  })

  it('refuses what is not an index of sha256 manifests, in one line', () => {
    for (const [text, why] of [
      ['not json', /not JSON/],
      ['{"manifests": 3}', /no manifests/],
      ['{"manifests": [{"digest": "md5:abc", "size": 1}]}', /manifests\[0\] has digest "md5:abc"/],
      [`{"manifests": [{"digest": "${Sha256.of('x').oci}", "size": -1}]}`, /manifests\[0\] has size -1/],
    ] as const) {
      expect(() => ImageLayout.parseIndex(text)).toThrow(why)
    }
  })

  it("gives a blob's path and a manifest's blobs, checking the manifest against its name", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ka-layout-'))
    const blobs = [Sha256.of('config'), Sha256.of('layer')]
    const m = manifest(blobs)
    const d = Sha256.of(m)
    const layout = new ImageLayout((rel) => join(dir, rel))
    expect(layout.blobPath(d)).toBe(join(dir, imageBlobPath(d.hex)))
    await mkdir(join(dir, 'images/blobs/sha256'), { recursive: true })
    await writeFile(layout.blobPath(d), m)
    expect((await layout.blobsOf(d)).map((b) => b.hex)).toEqual([d.hex, ...blobs.map((b) => b.hex)])
    await writeFile(layout.blobPath(d), Buffer.concat([m, Buffer.from(' ')]))
    await expect(layout.blobsOf(d)).rejects.toMatchObject({ code: 'EINTEGRITY' })
  })
})

const MIB = 1 << 20

describe('tar and the atomic write', () => {
  const write = async (path: string) =>
    writeAtomic(path, async (sink) => {
      const tar = new TarWriter(sink)
      await tar.directory('b')
      await tar.data('b/x', 0o644, Buffer.from('hello'))
      await tar.data('b/y', 0o755, Buffer.alloc(1000, 7))
      await tar.end()
    })

  it('writes the same bytes every time and reads back every entry', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ka-tar-'))
    const [a, b] = [await write(join(dir, 'a.tar')), await write(join(dir, 'b.tar'))]
    expect(a.equals(b)).toBe(true)
    expect(Sha256.of(await readFile(join(dir, 'a.tar'))).equals(a)).toBe(true)
    const seen: [string, string, number, string][] = []
    await readTar(Readable.from([await readFile(join(dir, 'a.tar'))]), async (e) => {
      const chunks: Buffer[] = []
      for await (const c of e.body) chunks.push(c as Buffer)
      seen.push([e.path, e.type, e.size, Sha256.of(Buffer.concat(chunks)).hex])
    })
    expect(seen).toEqual([
      ['b', 'Directory', 0, Sha256.of('').hex],
      ['b/x', 'File', 5, Sha256.of('hello').hex],
      ['b/y', 'File', 1000, Sha256.of(Buffer.alloc(1000, 7)).hex],
    ])
    expect((await readdir(dir)).sort()).toEqual(['a.tar', 'b.tar'])
  })

  it.each([
    ['through the page cache', false],
    ['past it (O_DIRECT)', true],
  ])('keepSame leaves a file with the very same bytes as it is; any difference gets a new file, written %s', async (_, direct) => {
    const dir = await mkdtemp(join(tmpdir(), 'ka-keep-'))
    const f = join(dir, 'f.tar')
    const bytes = randomBytes(3 * MIB + 123)
    // The bytes in uneven pieces, as a tar's headers, paddings and file chunks come.
    const make = () =>
      writeAtomic(
        f,
        async (sink) => {
          for (let at = 0; at < bytes.length; at += 700_001) await sink(bytes.subarray(at, at + 700_001))
        },
        { keepSame: true, direct },
      )
    const want = Sha256.of(bytes)
    expect((await make()).equals(want)).toBe(true)
    const first = await stat(f)
    expect((await make()).equals(want)).toBe(true)
    expect(await stat(f)).toMatchObject({ ino: first.ino, mtimeMs: first.mtimeMs })
    const damaged = Buffer.from(bytes)
    damaged[2.5 * MIB] = damaged[2.5 * MIB]! ^ 1
    const longer = Buffer.concat([bytes, Buffer.from('x')])
    const other = join(dir, 'other')
    await writeFile(other, bytes)
    for (const [what, put] of [
      ['a byte changed', () => writeFile(f, damaged)],
      ['one byte more', () => writeFile(f, longer)],
      ['another mode', () => chmod(f, 0o600)],
      ['a link to the same bytes', () => rm(f).then(() => symlink(other, f))],
    ] as const) {
      await put()
      const before = await lstat(f)
      expect((await make()).equals(want), what).toBe(true)
      const after = await lstat(f)
      expect([after.ino !== before.ino, after.isFile(), after.mode & 0o777], what).toEqual([true, true, 0o644])
      expect((await readFile(f)).equals(bytes), what).toBe(true)
    }
    expect((await readFile(other)).equals(bytes)).toBe(true)
    expect((await readdir(dir)).sort()).toEqual(['f.tar', 'other'])
  })

  it('leaves nothing behind when the bytes are not the pinned ones, or the producer fails', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ka-atomic-'))
    await expect(writeAtomic(join(dir, 'f'), 'other bytes', { expected: Sha256.of('pinned') })).rejects.toMatchObject({ code: 'EINTEGRITY' })
    for (const direct of [false, true])
      await expect(
        writeAtomic(
          join(dir, 'g'),
          async (sink) => {
            await sink(randomBytes(2 * MIB + 7))
            throw new Error('source went away')
          },
          { direct },
        ),
      ).rejects.toThrow(/source went away/)
    expect(await readdir(dir)).toEqual([])
    await writeAtomic(join(dir, 'f'), 'pinned', { expected: Sha256.of('pinned'), mode: 0o600 })
    expect(await readFile(join(dir, 'f'), 'utf8')).toBe('pinned')
    await rm(dir, { recursive: true })
  })

  // A file system that writes to a disk: the one the tests' temp folder is on (tmpfs keeps every file in memory).
  const onDisk = ['ext4', 'xfs', 'btrfs'].includes(execFileSync('findmnt', ['-n', '-o', 'FSTYPE', '-T', tmpdir()], { encoding: 'utf8' }).trim())

  it.skipIf(!onDisk)('direct writes reach the disk past the page cache (fincore), every size and split of the bytes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ka-direct-'))
    // Whole chunks, a tail that is not whole blocks, a file smaller than one block.
    for (const size of [8 * MIB, 5 * MIB + 512 * 3, 3 * MIB + 4321, 100]) {
      const bytes = randomBytes(size)
      const f = join(dir, `f${size}`)
      const got = await writeAtomic(
        f,
        async (sink) => {
          for (let at = 0; at < size; at += 300_007) await sink(bytes.subarray(at, at + 300_007))
        },
        { direct: true },
      )
      expect(got.equals(Sha256.of(bytes))).toBe(true)
      // fincore counts the file's pages in the page cache: only a tail that is not whole blocks went through it.
      const resident = Number(execFileSync('fincore', ['-n', '-b', '-o', 'RES', f], { encoding: 'utf8' }).trim())
      expect(resident, `${size} bytes`).toBeLessThanOrEqual(size % 512 ? MIB : 0)
      expect((await readFile(f)).equals(bytes)).toBe(true)
    }
    await rm(dir, { recursive: true })
  })
})
