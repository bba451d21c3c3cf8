import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { REPO } from './fake-upstream.js'

export const CLI = join(REPO, 'lib', 'builder', 'cli.js')

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs the real `bundle` command (the compiled one `npm ci` leaves) in a child process. */
export function bundleCli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; onSpawn?: (c: ChildProcess) => void } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd ?? REPO, env: { ...cleanEnv(), ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
    opts.onSpawn?.(child)
  })
}

/** The test's environment without proxies or credentials (test/setup.ts removed them already). */
const cleanEnv = (): NodeJS.ProcessEnv => ({ ...process.env })

/**
 * What real bash offers when completing `line` (the last word is the one being completed)
 * with a script from `completion bash`.
 */
export function bashCompletions(script: string, line: string): string[] {
  const fn = /complete -o filenames -F (\S+)/.exec(script)?.[1]
  if (!fn) throw new Error('no complete line in the script')
  const words = line.split(' ')
  const r = spawnSync(
    'bash',
    ['--norc', '-c', `${script}\nCOMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); ${fn}; printf '%s\\n' "\${COMPREPLY[@]}"`, 'bash', ...words],
    {
      encoding: 'utf8',
    },
  )
  if (r.status !== 0) throw new Error(r.stderr)
  return r.stdout.split('\n').filter(Boolean)
}

/** The bundle's own `install` script, run into `root` (--root), as an operator runs it on a node. */
export const installInto = (bundleDir: string, root: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    const c = spawn(join(bundleDir, 'install'), [...args, '--root', root], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    c.on('close', (code) => resolve({ code, stdout, stderr }))
  })

/** `bundle build` of the 1.29.3 linux/amd64 test bundle into `out`, unpacked there: its folder. Throws with the build's stderr. */
export async function buildUnpacked(args: string[], out: string): Promise<string> {
  const r = await bundleCli(['build', ...args, '--out', out])
  if (r.code !== 0) throw new Error(r.stderr)
  execFileSync('tar', ['xf', 'kube-airgap-v1.29.3-linux-amd64.tar'], { cwd: out })
  return join(out, 'kube-airgap-v1.29.3-linux-amd64')
}

/** A command run to its end, with its exit status and output (env added to this process's). */
export function runSync(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env } })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/**
 * What a dry run claims that the real run did not bear out: every `[phase] status title`
 * line the dry run printed as a result ("checked", "already done") must be a result of the
 * real run too, not a step the real run had to do ("done") or never reached. A dry run may
 * say "would do" or "would check" of anything.
 */
export function dryRunClaims(dry: string, real: string): string[] {
  const lines = (out: string) =>
    new Map([...out.matchAll(/^\[([a-z-]+)\] (done|already done|would do|checked|would check|failed) +(.*)$/gm)].map((m) => [`[${m[1]}] ${m[3]}`, m[2]!]))
  const realRun = lines(real)
  const claims: string[] = []
  for (const [step, status] of lines(dry)) {
    if (status !== 'checked' && status !== 'already done') continue
    const then = realRun.get(step)
    if (then !== 'checked' && then !== 'already done')
      claims.push(`${step}: the dry run says "${status}", the real run ${then ? `"${then}"` : 'never got there'}`)
  }
  return claims
}
