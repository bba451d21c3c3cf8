import { spawn, spawnSync } from 'node:child_process'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { REPO } from '../test/support/fake-upstream.js'

export interface Timed {
  seconds: number
  peakRss?: number
  /** CPU seconds, all threads, user and system (with `rssFile`). */
  cpu?: number
}

/** Runs a command to completion and times it; `rss` wraps node commands to report peak RSS. */
export async function timed(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; rssFile?: string } = {}): Promise<Timed> {
  // Each run starts with the disk idle: not paying for the writeback of what the run before it wrote.
  spawnSync('sync')
  const t0 = process.hrtime.bigint()
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env, ...(opts.rssFile ? { KA_RSS_FILE: opts.rssFile } : {}) },
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let err = ''
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`))))
  })
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  if (!opts.rssFile) return { seconds }
  const [peakRss, cpuMicros] = (await readFile(opts.rssFile, 'utf8')).split(' ').map(Number)
  await rm(opts.rssFile, { force: true })
  return { seconds, peakRss: peakRss!, cpu: cpuMicros! / 1e6 }
}

export const CLI = join(REPO, 'lib', 'builder', 'cli.js')
export const RSS_HOOK = join(REPO, 'bench', 'rss-hook.mjs')

export const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}x`
export const mib = (n: number): string => `${(n / (1 << 20)).toFixed(0)} MiB`

export function row(name: string, ours: number, theirs: number, target: string): string {
  return `${name.padEnd(44)} ours ${ours.toFixed(2).padStart(7)} s   theirs ${theirs.toFixed(2).padStart(7)} s   ratio ${ratio(ours, theirs).padStart(6)}   target ${target}`
}

/** One discarded warm-up run, then the run with the median time of `n` (its CPU; the peak RSS the highest seen). */
export async function medianOf<T extends Timed>(n: number, run: () => Promise<T>): Promise<T> {
  await run()
  const runs: T[] = []
  for (let i = 0; i < n; i++) runs.push(await run())
  runs.sort((a, b) => a.seconds - b.seconds)
  const peak = Math.max(...runs.map((r) => r.peakRss ?? 0))
  return { ...runs[Math.floor(n / 2)]!, ...(peak ? { peakRss: peak } : {}) }
}

/** What every benchmark's figures hold to: the same work as a real run, none of it skipped to go faster. */
export const NO_WORK_SKIPPED =
  'every figure is a real run: every byte checked against its pin before it is named, every tar and part synced before it is renamed'
