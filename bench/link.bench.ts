import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { filesFor, parseLock } from '../bundle/lock.js'
import { lockWorld, startWorld } from '../test/support/world.js'
import { REPO } from '../test/support/fake-upstream.js'
import { CLI, mib, NO_WORK_SKIPPED, timed } from './util.js'

/** The second server: Python's http.server with token buckets. */
const THROTTLED_HTTP = join(REPO, 'bench', 'throttled_http.py')

const CONNECTIONS = 8
const PER_CONNECTION = 5_000_000
const UPLINK = 100_000_000

/**
 * A cold `bundle build --concurrency 8` at the speed of the link: the default lock plus four
 * 100 MiB files (a few large files among small ones, as real bundles are), first with every
 * connection capped at 5 MB/s (a CDN's or a long cross-border link's per-connection limit),
 * then with one 100 MB/s uplink shared by all connections, each from two servers: the tests'
 * own (Node) and one that is not ours (Python's http.server, throttled_http.py). Each is
 * printed against the physical limit of the link (the bytes over what 8 connections can
 * carry) and against aria2c with the same budget of 8 connections, both ways it can spend
 * it: one file at a time split 8 ways (-j1 -x8 -s8), and 8 files at once unsplit (-j8).
 */
export async function benchLink(): Promise<string[]> {
  const dir = await mkdtemp(join(process.env.KA_BENCH_DIR ?? tmpdir(), 'ka-bench-link-'))
  const extras = [1, 2, 3, 4]
    .map((i) => `  - { name: extra-${i}, version: 1.0.0, url: 'https://github.com/example/extra/releases/download/v1/extra-${i}.bin' }`)
    .join('\n')
  const world = await startWorld(dir, {
    size: (w) => (w.platform === 'linux/arm64' ? 1024 : w.name.startsWith('extra-') ? 100 << 20 : 6 << 20),
    manifestEdit: (t) => t.replace('files: []', `files:\n${extras}`),
  })
  const up = world.fake.up
  try {
    const lockPath = join(dir, 'bundle.lock.json')
    await lockWorld(world, lockPath, join(dir, 'lock-cache'))
    const lock = parseLock(await readFile(lockPath, 'utf8'))
    const files = filesFor(lock, 'linux/amd64')
    const total = world.fake.artifacts.filter((a) => a.want.platform !== 'linux/arm64').reduce((s, a) => s + a.size, 0)
    const lines = [`link: ${files.length} files, ${mib(total)} for linux/amd64, ${CONNECTIONS} connections (${NO_WORK_SKIPPED})`]
    const aria2 = spawnSync('aria2c', ['--version']).status === 0
    const python = spawnSync('python3', ['--version']).status === 0

    let run = 0
    /** One shape of link on one server: ours, then aria2c both ways, against the limit. */
    const report = async (server: string, url: string, name: string, limit: number) => {
      const list = join(dir, 'aria2.list')
      await writeFile(list, files.map((f, i) => `${url}/${new URL(f.url).host}${new URL(f.url).pathname}\n  out=f${i}\n`).join(''))
      const base = join(dir, `build-${run++}`)
      const args = ['build', '--lock', lockPath, '--out', join(base, 'out'), '--cache', join(base, 'cache'), '--concurrency', String(CONNECTIONS)]
      const t = (await timed(process.execPath, [CLI, ...args, ...world.args.map((a) => a.replace(up.url, url))])).seconds
      await rm(base, { recursive: true, force: true })
      lines.push(
        `${`${name}, ${server}`.padEnd(52)} ours ${t.toFixed(1).padStart(5)} s   limit ${limit.toFixed(1).padStart(5)} s   ratio ${(t / limit).toFixed(2)}x (target <= 1.1x)`,
      )
      if (!aria2) return lines.push('  (aria2c not installed: apt-get install aria2 for the comparison)')
      const theirs = async (flags: string[]) => {
        const out = join(dir, `aria2-${run++}`)
        const a = await timed('aria2c', ['-q', '--file-allocation=none', '--max-tries=5', '-d', out, '-i', list, ...flags])
        await rm(out, { recursive: true, force: true })
        return a.seconds
      }
      const split = await theirs(['-j1', `-x${CONNECTIONS}`, `-s${CONNECTIONS}`, '-k1M'])
      const many = await theirs([`-j${CONNECTIONS}`, '-x1', '-s1'])
      lines.push(
        `${''.padEnd(52)} aria2c -j1 -x8 -s8 ${split.toFixed(1)} s, -j8 ${many.toFixed(1)} s: ours ${(t / Math.min(split, many)).toFixed(2)}x the better (target <= 1.05x)`,
      )
    }
    /** Both shapes of link on one server: `url(perConnection, uplink)` sets it to a shape and gives its address. */
    const shapes = async (server: string, url: (perConnection: number, uplink: number) => Promise<string>) => {
      await report(server, await url(PER_CONNECTION, 0), '5 MB/s per connection', total / (CONNECTIONS * PER_CONNECTION))
      await report(server, await url(0, UPLINK), 'one 100 MB/s uplink', total / UPLINK)
    }

    await shapes('our test server (Node)', async (perConnection, uplink) => {
      up.throttle = perConnection
      up.uplink = uplink
      return up.url
    })
    if (!python) lines.push("  (python3 not installed: the second server, Python's http.server, was not measured)")
    else {
      let server: ChildProcess | undefined
      try {
        await shapes("Python's http.server", async (perConnection, uplink) => {
          server?.kill()
          server = spawn('python3', [THROTTLED_HTTP, up.root, String(perConnection), String(uplink)], { stdio: ['ignore', 'pipe', 'inherit'] })
          const [port] = (await once(server.stdout!, 'data')) as [Buffer]
          return `http://127.0.0.1:${port.toString().trim()}`
        })
      } finally {
        server?.kill()
      }
    }
    return lines
  } finally {
    up.throttle = 0
    up.uplink = 0
    await world.close()
    await rm(dir, { recursive: true, force: true })
  }
}
