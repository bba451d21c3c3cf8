import { execFile, spawn } from 'node:child_process'
import { closeSync, constants, lstatSync, mkdirSync, openSync, writeSync } from 'node:fs'
import { lstat, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Readable } from 'node:stream'
import { writeAtomic } from '../bundle/atomic.js'
import { Sha256 } from '../bundle/digest.js'
import { KaError } from '../bundle/errors.js'
import { localTime } from '../bundle/text.js'

export interface CommandResult {
  code: number
  stdout: string
  stderr: string
}

export type HostEvent =
  | { kind: 'write'; path: string; sha256: string; mode: number }
  | { kind: 'run'; argv: string[] }
  | { kind: 'remove'; path: string }
  | { kind: 'rename'; path: string; to: string }

export interface RunOptions {
  /** Bytes or a stream for the command's stdin. */
  input?: Buffer | Readable
  /** A command that changes the node (false: a query, run even in a dry run). Default true. */
  changing?: boolean
  /** Killed after this long (exit code 124, as timeout(1) says). */
  timeoutMs?: number
  /** The command's output as it comes (stdout and stderr), besides the whole of it at the end. */
  onOutput?: (text: string) => void
}

export interface HostOptions {
  /**
   * Where bare host commands (systemctl, modprobe, ...) come from under a --root other than
   * `/`: they would otherwise act on this machine, not on the root.
   */
  hostCommands?: string
  /** Refuse a link anywhere below the root (the bundle folder, which came on a stick). */
  noLinks?: boolean
}

/**
 * The one seam for side effects on the node: every file read or written and every command
 * run goes through a Host. Paths are node paths (`/etc/...`). Queries (read, fileState,
 * exists, list, hasCommand, a run with `changing: false`) never change anything; write,
 * remove and a changing run do. `NodeHost` performs them; `DryRunHost` records them.
 */
export interface Host {
  /** Where node paths land: `/`, or the --root folder. */
  readonly root: string
  /** The real path of a node path. */
  path(nodePath: string): string
  read(nodePath: string): Promise<Buffer | undefined>
  readText(nodePath: string): Promise<string | undefined>
  exists(nodePath: string): Promise<boolean>
  list(nodeDir: string): Promise<string[]>
  /** The file's sha256 and mode, or undefined when there is none. */
  fileState(nodePath: string): Promise<{ sha256: Sha256; mode: number } | undefined>
  write(nodePath: string, data: Buffer | string | Readable, mode: number, sha256: Sha256, owner?: { uid: number; gid: number }): Promise<void>
  /** Makes a folder only its owner reads (0700) where it is missing, and refuses one that is a link: logs and records hold secrets. */
  privateDir(nodeDir: string): Promise<void>
  remove(nodePath: string): Promise<void>
  /** Moves a file or folder to a new name on the same file system (never over anything). */
  rename(nodePath: string, to: string): Promise<void>
  run(argv: string[], opts?: RunOptions): Promise<CommandResult>
  /** Whether a host command is on PATH (never one of ours under the root). */
  hasCommand(name: string): Promise<boolean>
}

/**
 * The node itself, or a folder standing for it. Under `--root DIR` node paths land in DIR. A
 * command named by an absolute path is one the installer placed (`/usr/local/bin/ctr`), run
 * from under the root; a bare name is the host's, found on PATH (under another root: in
 * `hostCommands`, unless it is pointed at the root itself, as `dpkg --root=` is).
 */
export class NodeHost implements Host {
  constructor(
    readonly root: string = '/',
    private readonly opts: HostOptions = {},
  ) {}

  path(nodePath: string): string {
    return this.root === '/' ? nodePath : join(this.root, nodePath)
  }

  async read(nodePath: string): Promise<Buffer | undefined> {
    return readFile(this.path(nodePath)).catch(() => undefined)
  }

  async readText(nodePath: string): Promise<string | undefined> {
    return (await this.read(nodePath))?.toString('utf8')
  }

  async exists(nodePath: string): Promise<boolean> {
    return stat(this.path(nodePath)).then(
      () => true,
      () => false,
    )
  }

  async list(nodeDir: string): Promise<string[]> {
    return readdir(this.path(nodeDir)).catch(() => [])
  }

  /** The file's sha256 and mode, or undefined when there is none. */
  async fileState(nodePath: string): Promise<{ sha256: Sha256; mode: number } | undefined> {
    const p = this.path(nodePath)
    const st = await stat(p).catch(() => undefined)
    if (!st?.isFile()) return undefined
    return { sha256: (await Sha256.ofFile(p)).digest, mode: st.mode & 0o7777 }
  }

  /**
   * Writes atomically, never through a link, and checks every byte against `sha256` as it is
   * written: bytes that differ from the pin (a file swapped on the stick after verification,
   * a medium that answers a second read differently) fail with EINTEGRITY and nothing is
   * renamed into place. `data` may be a stream.
   */
  async write(nodePath: string, data: Buffer | string | Readable, mode: number, sha256: Sha256, owner?: { uid: number; gid: number }): Promise<void> {
    const p = this.path(nodePath)
    if (this.opts.noLinks) await this.refuseLinks(dirname(nodePath))
    await mkdir(dirname(p), { recursive: true })
    const now = await lstat(p).catch(() => undefined)
    if (now?.isSymbolicLink())
      throw new KaError(
        'ESTEP',
        `${p} is a symbolic link: kube-airgap never writes through a link; remove it (or replace it with the file it points to) and run again`,
        { path: p },
      )
    await writeAtomic(p, data, { mode, expected: sha256, what: nodePath, ...(owner ? { owner } : {}) })
  }

  /** Every existing folder from the root down to `nodeDir` must be a real folder. */
  private async refuseLinks(nodeDir: string): Promise<void> {
    let at = ''
    for (const seg of nodeDir.split('/').filter(Boolean)) {
      at += `/${seg}`
      const st = await lstat(this.path(at)).catch(() => undefined)
      if (st?.isSymbolicLink())
        throw new KaError(
          'ESTEP',
          `${this.path(at)} is a symbolic link: refused (a link in the bundle folder could send a write anywhere); remove it and run again`,
          { path: this.path(at) },
        )
    }
  }

  async privateDir(nodeDir: string): Promise<void> {
    privateFolder(this.path(nodeDir))
  }

  async remove(nodePath: string): Promise<void> {
    await rm(this.path(nodePath), { recursive: true, force: true })
  }

  async rename(nodePath: string, to: string): Promise<void> {
    if (await lstat(this.path(to)).catch(() => undefined))
      throw new KaError('ESTEP', `${this.path(to)} is there already: nothing is moved over it; move it away and run again`, { path: this.path(to) })
    await mkdir(dirname(this.path(to)), { recursive: true })
    await rename(this.path(nodePath), this.path(to))
  }

  async run(argv: string[], opts: RunOptions = {}): Promise<CommandResult> {
    const changing = opts.changing ?? true
    const [cmd, ...args] = argv
    const file = await this.command(cmd!, args, changing)
    if (file === undefined)
      return { code: 127, stdout: '', stderr: `${cmd} would act on this machine, not on --root ${this.root}: put a stand-in for it in --host-commands` }
    return new Promise((resolve) => {
      const child = execFile(
        file,
        args,
        { maxBuffer: 64 << 20, ...(opts.timeoutMs ? { timeout: opts.timeoutMs, killSignal: 'SIGKILL' as const } : {}) },
        (err, stdout, stderr) => {
          const killed = !!(err as { killed?: boolean } | null)?.killed && !!opts.timeoutMs
          const code = killed ? 124 : err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 127) : 0
          resolve({
            code,
            stdout: String(stdout),
            stderr: killed ? `did not finish within ${opts.timeoutMs! / 1000} s` : String(stderr || (err && code === 127 ? err.message : '')),
          })
        },
      )
      if (opts.onOutput) {
        child.stdout?.on('data', (d: Buffer) => opts.onOutput!(d.toString()))
        child.stderr?.on('data', (d: Buffer) => opts.onOutput!(d.toString()))
      }
      if (opts.input && !Buffer.isBuffer(opts.input)) {
        opts.input.on('error', () => child.stdin?.destroy())
        opts.input.pipe(child.stdin!)
      } else child.stdin?.end(opts.input)
    })
  }

  /** Which file runs `cmd`: ours under the root, a stand-in, or the host's (undefined: refused). */
  private async command(cmd: string, args: string[], changing: boolean): Promise<string | undefined> {
    if (cmd.startsWith('/')) return this.path(cmd)
    const standIn = this.opts.hostCommands ? join(this.opts.hostCommands, cmd) : undefined
    if (standIn && (await stat(standIn).catch(() => undefined))?.isFile()) return standIn
    // dpkg --root= acts on the root; umount of paths inside the root touches nothing else.
    const inRoot = (a: string) => a.startsWith(`${this.root.replace(/\/$/, '')}/`)
    const pointedAtRoot =
      args.some((a) => a.startsWith('--root=') || a === '--root') || (cmd === 'umount' && args.filter((a) => !a.startsWith('-')).every(inRoot))
    if (this.root !== '/' && changing && !pointedAtRoot) return undefined
    return cmd
  }

  async hasCommand(name: string): Promise<boolean> {
    const r = await new Promise<number>((resolve) => {
      const c = spawn('sh', ['-c', 'command -v "$0"', name], { stdio: 'ignore' })
      c.on('close', (code) => resolve(code ?? 1))
      c.on('error', () => resolve(1))
    })
    return r === 0
  }
}

/** A decorator's base: every call goes to the host it wraps; subclasses change what they must. */
class HostDecorator implements Host {
  constructor(protected readonly inner: Host) {}

  get root(): string {
    return this.inner.root
  }
  path(nodePath: string): string {
    return this.inner.path(nodePath)
  }
  read(nodePath: string): Promise<Buffer | undefined> {
    return this.inner.read(nodePath)
  }
  readText(nodePath: string): Promise<string | undefined> {
    return this.inner.readText(nodePath)
  }
  exists(nodePath: string): Promise<boolean> {
    return this.inner.exists(nodePath)
  }
  list(nodeDir: string): Promise<string[]> {
    return this.inner.list(nodeDir)
  }
  fileState(nodePath: string): Promise<{ sha256: Sha256; mode: number } | undefined> {
    return this.inner.fileState(nodePath)
  }
  hasCommand(name: string): Promise<boolean> {
    return this.inner.hasCommand(name)
  }
  write(nodePath: string, data: Buffer | string | Readable, mode: number, sha256: Sha256, owner?: { uid: number; gid: number }): Promise<void> {
    return this.inner.write(nodePath, data, mode, sha256, owner)
  }
  privateDir(nodeDir: string): Promise<void> {
    return this.inner.privateDir(nodeDir)
  }
  remove(nodePath: string): Promise<void> {
    return this.inner.remove(nodePath)
  }
  rename(nodePath: string, to: string): Promise<void> {
    return this.inner.rename(nodePath, to)
  }
  run(argv: string[], opts: RunOptions = {}): Promise<CommandResult> {
    return this.inner.run(argv, opts)
  }
}

/**
 * A dry run: a decorator that lets queries through to the host it wraps and records every
 * change instead of making it. Its record is what the dry run prints.
 */
export class DryRunHost extends HostDecorator {
  readonly events: HostEvent[] = []

  override async write(nodePath: string, _data: Buffer | string | Readable, mode: number, sha256: Sha256): Promise<void> {
    this.events.push({ kind: 'write', path: nodePath, sha256: sha256.hex, mode })
  }

  override async privateDir(): Promise<void> {}

  override async remove(nodePath: string): Promise<void> {
    this.events.push({ kind: 'remove', path: nodePath })
  }

  override async rename(nodePath: string, to: string): Promise<void> {
    this.events.push({ kind: 'rename', path: nodePath, to })
  }

  override async run(argv: string[], opts: RunOptions = {}): Promise<CommandResult> {
    if (opts.changing === false) return this.inner.run(argv, opts)
    this.events.push({ kind: 'run', argv })
    return { code: 0, stdout: '', stderr: '' }
  }
}

/** A folder for logs and records: made 0700 where missing; a link there is refused (it could send them anywhere). */
function privateFolder(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  if (lstatSync(dir).isSymbolicLink())
    throw new KaError('ESTEP', `${dir} is a symbolic link: logs and records are never written through a link; remove it and run again`, { path: dir })
}

/** What kubeadm prints that lets someone join the cluster: bootstrap tokens and the certificate key. */
export const redactSecrets = (text: string): string =>
  text
    .replace(/\b[a-z0-9]{6}\.[a-z0-9]{16}\b/g, '<token>')
    .replace(/(--certificate-key[= ]|certificate key:\s*)[0-9a-f]{64}\b/gi, '$1<certificate key>')
    // kubeadm's upload-certs prints the key alone on the line after "Using certificate key:".
    .replace(/^([ |]*)[0-9a-f]{64}[ \t]*$/gm, '$1<certificate key>')

/**
 * The run's log: every change and every command with its output, timestamped, appended as
 * it happens to a new file only root reads (0600, created never through a link and never
 * over a file already there), with join tokens and the certificate key kubeadm prints redacted.
 */
export class RunLog {
  private readonly fd: number

  constructor(readonly path: string) {
    privateFolder(dirname(path))
    try {
      this.fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_APPEND, 0o600)
    } catch (e) {
      throw new KaError(
        'ESTEP',
        `${path}: cannot create the run log (${(e as NodeJS.ErrnoException).code}): a file or link is there already; remove it and run again`,
        { path },
      )
    }
  }

  line(text: string): void {
    const at = localTime(new Date())
    writeSync(
      this.fd,
      `${redactSecrets(text)
        .split('\n')
        .map((l) => `${at} ${l}`)
        .join('\n')}\n`,
    )
  }

  close(): void {
    closeSync(this.fd)
  }
}

/** A decorator that writes every change, every command and its output to a RunLog as it happens. */
export class LoggingHost extends HostDecorator {
  constructor(
    inner: Host,
    private readonly log: RunLog,
  ) {
    super(inner)
  }

  override async write(nodePath: string, data: Buffer | string | Readable, mode: number, sha256: Sha256, owner?: { uid: number; gid: number }): Promise<void> {
    await this.inner.write(nodePath, data, mode, sha256, owner)
    this.log.line(`write  ${nodePath} ${sha256.oci} ${mode.toString(8).padStart(4, '0')}`)
  }

  override async remove(nodePath: string): Promise<void> {
    await this.inner.remove(nodePath)
    this.log.line(`remove ${nodePath}`)
  }

  override async run(argv: string[], opts: RunOptions = {}): Promise<CommandResult> {
    const query = opts.changing === false
    this.log.line(`${query ? 'query ' : 'run   '} ${argv.join(' ')}`)
    const streamed = !!opts.onOutput
    const r = await this.inner.run(argv, {
      ...opts,
      ...(streamed
        ? {
            onOutput: (t: string) => {
              this.log.line(t.replace(/\n$/, '').replace(/^/gm, '  | '))
              opts.onOutput!(t)
            },
          }
        : {}),
    })
    if (!streamed)
      for (const [name, text] of [
        ['stdout', r.stdout],
        ['stderr', r.stderr],
      ] as const)
        if (text.trim()) this.log.line(text.trimEnd().replace(/^/gm, `  ${name} | `))
    this.log.line(`  exit ${r.code}`)
    return r
  }
}
