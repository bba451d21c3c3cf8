import { CACHE_FORMAT } from '../builder/download/cache.js'
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { filesFor, parseLock } from '../bundle/lock.js'
import { lockWorld, startWorld } from '../test/support/world.js'
import { CLI, medianOf, mib, NO_WORK_SKIPPED, ratio, row, RSS_HOOK, type Timed, timed } from './util.js'

/**
 * Issue 2's figures: `bundle build` against the loopback upstream vs what a user would
 * script (curl fetching the same URLs one after another; GNU tar packing the same files),
 * in one run, printed as ratios.
 */
export async function benchBuild(): Promise<string[]> {
  const dir = await mkdtemp(join(process.env.KA_BENCH_DIR ?? tmpdir(), 'ka-bench-build-'))
  const FILE = 48 << 20
  // The files are large; the images (the test world's small busybox ones) are a few MiB.
  const extras = [1, 2, 3, 4]
    .map((i) => `  - { name: extra-${i}, version: 1.0.0, url: 'https://github.com/example/extra/releases/download/v1/extra-${i}.bin' }`)
    .join('\n')
  const world = await startWorld(dir, {
    size: (w) => (w.platform === 'linux/arm64' ? 1024 : FILE),
    manifestEdit: (t) => t.replace('files: []', `files:\n${extras}`),
  })
  const fake = world.fake
  try {
    const lockPath = join(dir, 'bundle.lock.json')
    await lockWorld(world, lockPath, join(dir, 'lock-cache'))
    const lock = parseLock(await readFile(lockPath, 'utf8'))
    const args = world.args.map((a) => a.replace(world.front.url, world.registry.url))
    const files = filesFor(lock, 'linux/amd64').filter((f) => f.name !== 'node')
    const total = fake.artifacts.filter((a) => a.want.platform !== 'linux/arm64').reduce((s, a) => s + a.size, 0)
    const urls = files.map((f) => `${fake.up.url}${new URL(f.url).host === '' ? '' : `/${new URL(f.url).host}`}${new URL(f.url).pathname}`)
    const lines = [`build: ${files.length} files, ${mib(total)} for linux/amd64 (${NO_WORK_SKIPPED})`]

    const curlLoop = async (): Promise<Timed> => {
      const out = join(dir, 'curl')
      await rm(out, { recursive: true, force: true })
      await mkdir(out, { recursive: true })
      return timed('sh', ['-c', urls.map((u, i) => `curl -sSf -o ${out}/f${i} '${u}'`).join(' && ')])
    }
    let run = 0
    const coldBuild = async () => {
      const base = join(dir, `build-${run++}`)
      const t = await timed(
        process.execPath,
        ['--import', RSS_HOOK, CLI, 'build', '--lock', lockPath, '--out', join(base, 'out'), '--cache', join(base, 'cache'), ...args],
        { rssFile: join(dir, 'rss') },
      )
      return { ...t, base }
    }

    fake.up.throttle = 20_000_000
    const curlSlow = await curlLoop()
    const oursSlow = await coldBuild()
    lines.push(row('cold build, 20 MB/s per connection, vs curl', oursSlow.seconds, curlSlow.seconds, '<= 0.35x'))

    // Bound by the CPU (this process serves the bytes on the same cores): the median of three after a warm-up, each side.
    fake.up.throttle = 0
    const curlFast = await medianOf(3, curlLoop)
    const oursFast = await medianOf(3, coldBuild)
    // Only the median build's cache is built on; the others' (a bundle and a cache each) go, which matters under KA_BENCH_DIR=/dev/shm.
    for (let i = 0; i < run; i++) if (join(dir, `build-${i}`) !== oursFast.base) await rm(join(dir, `build-${i}`), { recursive: true, force: true })
    lines.push(row('cold build, unthrottled loopback, vs curl', oursFast.seconds, curlFast.seconds, '<= 1.5x'))
    lines.push(`  CPU of that build: ${(oursFast.cpu! / (total / 2 ** 30)).toFixed(2)} s per GiB (all threads, user + system)`)
    // What this runtime costs at all: node:http saving the same bytes one file after another, nothing checked, no tar.
    const nodeFloor = await medianOf(3, async () => {
      await rm(join(dir, 'floor'), { recursive: true, force: true })
      await mkdir(join(dir, 'floor'), { recursive: true })
      return timed(process.execPath, ['-e', NODE_HTTP_SAVE, join(dir, 'floor'), ...urls])
    })
    lines.push(
      `  node:http saving the same files, nothing checked: ${nodeFloor.seconds.toFixed(2)} s (${ratio(nodeFloor.seconds, curlFast.seconds)} curl; ours ${ratio(oursFast.seconds, nodeFloor.seconds)} of it)`,
    )

    const warm = await warmRuns(dir, lockPath, oursFast.base)
    lines.push(...warm.lines)
    const peak = Math.max(oursSlow.peakRss ?? 0, oursFast.peakRss ?? 0, warm.peakRss)
    lines.push(`peak RSS of bundle build: ${mib(peak)} (target < 150 MiB)`)
    return lines
  } finally {
    await world.close()
    await rm(dir, { recursive: true, force: true })
  }
}

/** `node -e` this, DIR URL...: each URL's body to DIR/N with node:http, one after another (the runtime's own floor). */
const NODE_HTTP_SAVE = `
const http = require('node:http'), fs = require('node:fs'), { pipeline } = require('node:stream/promises')
const [dir, ...urls] = process.argv.slice(1)
;(async () => {
  for (const [i, u] of urls.entries()) {
    const res = await new Promise((ok, no) => http.get(u, ok).on('error', no))
    await pipeline(res, fs.createWriteStream(dir + '/' + i))
  }
})()
`

/**
 * As a user runs them again: a build into the same folder finds the same tar there, GNU tar
 * writes over its own; a build into a new folder and GNU tar to a new name each write a new
 * file (the one before removed outside the timing).
 */
async function warmRuns(dir: string, lockPath: string, base: string): Promise<{ lines: string[]; peakRss: number }> {
  const lines: string[] = []
  let fresh = 0
  const warmBuild = async (out: string) => {
    const t = await timed(process.execPath, ['--import', RSS_HOOK, CLI, 'build', '--lock', lockPath, '--out', out, '--cache', join(base, 'cache')], {
      rssFile: join(dir, 'rss'),
    })
    if (out !== join(base, 'out')) await rm(out, { recursive: true, force: true })
    return t
  }
  const blobs = join(base, 'cache', CACHE_FORMAT, 'blobs', 'sha256')
  const names = await readdir(blobs)
  const tarCf = async (to: string) => {
    const t = await timed('tar', ['cf', to, ...names], { cwd: blobs })
    if (to !== join(dir, 'gnu.tar')) await rm(to)
    return t
  }
  // Steady state for all: one warm-up run each, then the median of three.
  const same = await medianOf(3, () => warmBuild(join(base, 'out')))
  const tarOver = await medianOf(3, () => tarCf(join(dir, 'gnu.tar')))
  const anew = await medianOf(3, () => warmBuild(join(dir, `out-${fresh++}`)))
  const tarNew = await medianOf(3, () => tarCf(join(dir, `gnu-${fresh++}.tar`)))
  // The build syncs the tar before it renames it into place; tar leaves that to the kernel.
  const tarNewSync = await medianOf(3, async () => {
    const to = join(dir, `gnu-${fresh++}.tar`)
    const t = await timed('sh', ['-c', `tar cf ${to} ${names.join(' ')} && sync ${to}`], { cwd: blobs })
    await rm(to)
    return t
  })
  lines.push(row('warm rebuild, same folder, vs tar cf over', same.seconds, tarOver.seconds, '<= 1.3x'))
  // The build's tar is durable before it is named; tar cf's is not until its sync: that is the like-for-like figure.
  lines.push(row('warm rebuild, new folder, vs tar cf + sync', anew.seconds, tarNewSync.seconds, '<= 1.1x'))
  lines.push(`  the same vs tar cf to new without the sync: ${tarNew.seconds.toFixed(2)} s, ratio ${ratio(anew.seconds, tarNew.seconds)}`)
  return { lines, peakRss: Math.max(same.peakRss ?? 0, anew.peakRss ?? 0) }
}
