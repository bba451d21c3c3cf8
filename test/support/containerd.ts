import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface TestContainerd {
  socket: string
  /** Runs the real `ctr` against this containerd. */
  ctr(args: string[], input?: NodeJS.ReadableStream): Promise<{ code: number; stdout: string; stderr: string }>
  log(): string
  stop(): Promise<void>
}

/**
 * A real containerd (Debian's, with runc), with its own root, state and socket under a temp
 * folder, so tests import and run images the way a node does without touching the
 * machine's own containerd. `configText` is a config to run with (the installer's).
 */
export async function startContainerd(dir: string, opts: { bin?: string; ctrBin?: string; configText?: string } = {}): Promise<TestContainerd> {
  await mkdir(dir, { recursive: true })
  const socket = join(dir, 'containerd.sock')
  const redirect = `root = "${join(dir, 'root')}"\nstate = "${join(dir, 'state')}"\n[grpc]\n  address = "${socket}"\n[ttrpc]\n  address = "${socket}.ttrpc"\n`
  // A given config (the installer's) keeps every setting; only where containerd keeps its
  // data and listens moves into `dir`: top-level keys first, then the [grpc] and [ttrpc] tables.
  const [topLevel, tables] = [redirect.split('[grpc]')[0]!, `[grpc]${redirect.split('[grpc]')[1]!}`]
  await writeFile(join(dir, 'config.toml'), opts.configText ? `${topLevel}${opts.configText}\n${tables}` : `version = 2\n${redirect}`)
  let output = ''
  const child: ChildProcess = spawn(opts.bin ?? 'containerd', ['--config', join(dir, 'config.toml')], { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()))
  const ctrBin = opts.ctrBin ?? 'ctr'
  const ctr: TestContainerd['ctr'] = (args, input) =>
    new Promise((resolve) => {
      const c = execFile(ctrBin, ['--address', socket, ...args], { maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      )
      if (input) input.pipe(c.stdin!)
      else c.stdin?.end()
    })
  for (let i = 0; ; i++) {
    if (existsSync(socket) && (await ctr(['version'])).code === 0) break
    if (i > 200 || child.exitCode !== null) throw new Error(`containerd did not start:\n${output}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    socket,
    ctr,
    log: () => output,
    stop: async () => {
      child.kill('SIGTERM')
      await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)))
    },
  }
}
