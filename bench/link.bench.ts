import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { filesFor, parseLock } from '../bundle/lock.js'
import { lockWorld, startWorld } from '../test/support/world.js'
import { CLI, mib, timed } from './util.js'

const CONNECTIONS = 8
const PER_CONNECTION = 5_000_000
const UPLINK = 100_000_000

/**
 * A cold `bundle build --concurrency 8` at the speed of the link: the default lock plus four
 * 100 MiB files (a few large files among small ones, as real bundles are), first with every
 * connection capped at 5 MB/s (a CDN's or a long cross-border link's per-connection limit),
 * then with one 100 MB/s uplink shared by all connections. Each is printed against the
 * physical limit of the link (the bytes over what 8 connections can carry) and against
 * aria2c with the same budget of 8 connections, both ways it can spend it: one file at a
 * time split 8 ways (-j1 -x8 -s8), and 8 files at once unsplit (-j8).
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
    const list = join(dir, 'aria2.list')
    await writeFile(list, files.map((f, i) => `${up.url}/${new URL(f.url).host}${new URL(f.url).pathname}\n  out=f${i}\n`).join(''))
    const lines = [`link: ${files.length} files, ${mib(total)} for linux/amd64, ${CONNECTIONS} connections`]
    const aria2 = spawnSync('aria2c', ['--version']).status === 0

    let run = 0
    const ours = async () => {
      const base = join(dir, `build-${run++}`)
      const args = ['build', '--lock', lockPath, '--out', join(base, 'out'), '--cache', join(base, 'cache'), '--concurrency', String(CONNECTIONS)]
      const t = await timed(process.execPath, [CLI, ...args, ...world.args])
      await rm(base, { recursive: true, force: true })
      return t.seconds
    }
    const theirs = async (flags: string[]) => {
      const out = join(dir, `aria2-${run++}`)
      const t = await timed('aria2c', ['-q', '--file-allocation=none', '--max-tries=5', '-d', out, '-i', list, ...flags])
      await rm(out, { recursive: true, force: true })
      return t.seconds
    }
    const report = async (name: string, limit: number) => {
      const t = await ours()
      lines.push(
        `${name.padEnd(34)} ours ${t.toFixed(1).padStart(5)} s   limit ${limit.toFixed(1).padStart(5)} s   ratio ${(t / limit).toFixed(2)}x (target <= 1.15x)`,
      )
      if (!aria2) return lines.push('  (aria2c not installed: apt-get install aria2 for the comparison)')
      const split = await theirs(['-j1', `-x${CONNECTIONS}`, `-s${CONNECTIONS}`, '-k1M'])
      const many = await theirs([`-j${CONNECTIONS}`, '-x1', '-s1'])
      lines.push(
        `${''.padEnd(34)} aria2c -j1 -x8 -s8 ${split.toFixed(1)} s (ours ${(t / split).toFixed(2)}x), aria2c -j8 ${many.toFixed(1)} s (ours ${(t / many).toFixed(2)}x)`,
      )
    }

    up.throttle = PER_CONNECTION
    await report('5 MB/s per connection', total / (CONNECTIONS * PER_CONNECTION))
    up.throttle = 0
    up.uplink = UPLINK
    await report('one 100 MB/s uplink', total / UPLINK)
    return lines
  } finally {
    up.throttle = 0
    up.uplink = 0
    await world.close()
    await rm(dir, { recursive: true, force: true })
  }
}
