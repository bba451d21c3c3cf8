import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { integrityError, Sha256 } from '../../bundle/digest.js'
import { ImageLayout } from '../../bundle/image-layout.js'
import type { Lock, LockedFile, LockedPackage } from '../../bundle/lock.js'
import type { Bundle } from '../../bundle/open.js'
import type { Platform } from '../../bundle/platform.js'
import { clusterConfig } from '../../installer/cluster-config.js'
import type { NodeFacts } from '../../installer/facts.js'
import { DryRunHost, type CommandResult, type Host, type RunOptions } from '../../installer/host.js'
import type { Context } from '../../installer/plan.js'
import { testFacts } from './context.js'
import { OS_RELEASE_FILES, PROC_MODULES, PROC_SWAPS, procSys } from '../../installer/node-paths.js'
import { osRelease } from '../../bundle/os-release.js'
import { SYSCTLS } from '../../installer/templates.js'

/**
 * A node held in memory, for unit tests of phases: files in a map, host commands on a list,
 * every change recorded. `run` answers with what a small simulation of the kernel and
 * systemd does (modprobe loads, sysctl --system applies, swapoff -a empties /proc/swaps,
 * systemctl enable/start/is-*), so that running a phase's actions and planning it again
 * shows whether a second run changes anything.
 */
export class MemoryHost implements Host {
  readonly root = '/'
  readonly files = new Map<string, { data: Buffer; mode: number }>()
  readonly changes: string[] = []
  /**
   * The package database: name to version (dpkg) or epoch:version-release (rpm). dpkg-query
   * and rpm -q answer from it in the formats the packages phase asks for (dpkg-query(1)'s
   * -W -f, rpm(8)'s --qf); dpkg --install and rpm -U add what they are given, by file name
   * (NAME.deb, NAME.rpm: the tests name their packages so), at the version `packageVersion` says.
   */
  readonly packages = new Map<string, string>()
  packageVersion = '1'
  private units = new Map<string, { enabled: boolean; active: boolean }>()

  constructor(
    files: Record<string, string> = {},
    private readonly commands = new Set([
      'systemctl',
      'modprobe',
      'sysctl',
      'swapoff',
      'conntrack',
      'ip',
      'iptables',
      'mount',
      'nsenter',
      'socat',
      'ebtables',
      'ethtool',
      'tc',
      'touch',
    ]),
  ) {
    for (const [p, text] of Object.entries(files)) this.files.set(p, { data: Buffer.from(text), mode: 0o644 })
  }

  path(nodePath: string): string {
    return nodePath
  }
  async read(p: string): Promise<Buffer | undefined> {
    return this.files.get(p)?.data
  }
  async readText(p: string): Promise<string | undefined> {
    return this.files.get(p)?.data.toString('utf8')
  }
  async exists(p: string): Promise<boolean> {
    return this.files.has(p) || [...this.files.keys()].some((k) => k.startsWith(`${p}/`))
  }
  async list(dir: string): Promise<string[]> {
    return [...new Set([...this.files.keys()].filter((k) => k.startsWith(`${dir}/`)).map((k) => k.slice(dir.length + 1).split('/')[0]!))]
  }
  async fileState(p: string): Promise<{ sha256: Sha256; mode: number } | undefined> {
    const f = this.files.get(p)
    return f && { sha256: Sha256.of(f.data), mode: f.mode }
  }
  async hasCommand(name: string): Promise<boolean> {
    return this.commands.has(name)
  }

  async write(p: string, data: Buffer | string | Readable, mode: number, sha256: Sha256): Promise<void> {
    let bytes: Buffer
    if (typeof data === 'string' || Buffer.isBuffer(data)) bytes = Buffer.from(data)
    else {
      const chunks: Buffer[] = []
      for await (const c of data) chunks.push(Buffer.from(c as Buffer))
      bytes = Buffer.concat(chunks)
    }
    const got = Sha256.of(bytes)
    if (!got.equals(sha256)) throw integrityError(p, sha256, got)
    this.files.set(p, { data: bytes, mode })
    this.changes.push(`write ${p}`)
  }
  async privateDir(): Promise<void> {}

  async remove(p: string): Promise<void> {
    for (const k of [...this.files.keys()]) if (k === p || k.startsWith(`${p}/`)) this.files.delete(k)
    this.changes.push(`remove ${p}`)
  }

  async rename(p: string, to: string): Promise<void> {
    for (const [k, v] of [...this.files]) if (k === p || k.startsWith(`${p}/`)) this.files.set(to + k.slice(p.length), v) && this.files.delete(k)
    this.changes.push(`rename ${p} ${to}`)
  }

  async run(argv: string[], opts: RunOptions = {}): Promise<CommandResult> {
    const ok = { code: 0, stdout: '', stderr: '' }
    const no = { code: 1, stdout: '', stderr: '' }
    if (opts.changing !== false) this.changes.push(`run ${argv.join(' ')}`)
    const [cmd, ...args] = argv
    const unit = (name: string) => this.units.get(name) ?? { enabled: false, active: false }
    if (cmd === 'systemctl') {
      const [verb, ...rest] = args
      const name = rest.filter((a) => !a.startsWith('-')).pop() ?? ''
      if (verb === 'is-enabled') return unit(name).enabled ? ok : no
      if (verb === 'is-active') return unit(name).active ? ok : no
      if (verb === 'enable') this.units.set(name, { enabled: true, active: unit(name).active || rest.includes('--now') })
      if (verb === 'start' || verb === 'restart') this.units.set(name, { ...unit(name), active: true })
      return ok
    }
    if (cmd === 'dpkg-query') {
      const names = args.filter((a) => !a.startsWith('-'))
      return {
        ...ok,
        stdout: names
          .filter((n) => this.packages.has(n))
          .map((n) => `${n} install ok installed\n`)
          .join(''),
      }
    }
    if (cmd === 'rpm' && args[0] === '-q') {
      const names = args.slice(3)
      const lines = names.filter((n) => this.packages.has(n)).map((n) => `${n}\t${this.packages.get(n)}\n`)
      // rpm -q exits 1 when a name is not installed, and says so on stdout.
      const absent = names.filter((n) => !this.packages.has(n)).map((n) => `package ${n} is not installed\n`)
      return { code: absent.length ? 1 : 0, stdout: [...lines, ...absent].join(''), stderr: '' }
    }
    if ((cmd === 'dpkg' && args[0] === '--install') || (cmd === 'rpm' && args[0] === '-U'))
      for (const f of args.filter((a) => /\.(deb|rpm)$/.test(a)))
        this.packages.set(
          f
            .split('/')
            .pop()!
            .replace(/\.(deb|rpm)$/, ''),
          this.packageVersion,
        )
    if (cmd === 'modprobe') this.append(PROC_MODULES, `${args[0]} 1 0 - Live 0x0\n`)
    if (cmd === 'sysctl' && args[0] === '--system') for (const [k, v] of SYSCTLS) this.files.set(procSys(k), { data: Buffer.from(`${v}\n`), mode: 0o644 })
    if (cmd === 'swapoff') this.files.set(PROC_SWAPS, { data: Buffer.from('Filename Type Size Used Priority\n'), mode: 0o444 })
    return ok
  }

  private append(p: string, text: string): void {
    this.files.set(p, { data: Buffer.concat([this.files.get(p)?.data ?? Buffer.alloc(0), Buffer.from(text)]), mode: 0o444 })
  }
}

/** A bundle of a few components, held in a temporary folder, for phases that copy files from it. */
export async function memoryBundle(
  components: Record<string, Buffer> = {},
  platform: Platform = 'linux/amd64',
  packages: LockedPackage[] = [],
): Promise<Bundle> {
  const dir = await mkdtemp(join(tmpdir(), 'ka-membundle-'))
  const files: LockedFile[] = []
  for (const [name, data] of Object.entries(components)) {
    await writeFile(join(dir, name), data)
    files.push({ name, version: '1.0.0', platform, url: `https://example.invalid/${name}`, integrity: Sha256.of(data), size: data.length, file: name })
  }
  const lock: Lock = { lockVersion: 1, kubernetes: '1.29.3', platforms: [platform], files, images: [], packages }
  return {
    dir,
    lock,
    platform,
    file: (name) => {
      const locked = files.find((f) => f.name === name)
      if (!locked) throw new Error(`no ${name} in this test bundle`)
      return { locked, path: join(dir, name) }
    },
    images: [],
    manifests: [],
    manifest: () => undefined,
    layout: new ImageLayout((rel) => join(dir, rel)),
    required: { kubeadm: [], pause: 'registry.k8s.io/pause:3.9' },
    needed: [],
    read: (rel) => readFile(join(dir, rel), 'utf8'),
    path: (rel) => join(dir, rel),
  }
}

/** A context over a memory node (a DryRunHost around it for a dry run), with fixed facts. */
export function memoryContext(
  host: MemoryHost,
  bundle: Bundle,
  o: { role?: 'master' | 'worker'; dryRun?: boolean; facts?: Partial<NodeFacts>; says?: string[] } = {},
): Context {
  // The release and family, as gatherFacts reads them through the Host.
  const os = host.files.get(OS_RELEASE_FILES[0]!) ?? host.files.get(OS_RELEASE_FILES[1]!)
  const facts = testFacts({ ...(os ? osRelease(os.data.toString()) : {}), ...o.facts })
  return {
    host: o.dryRun ? new DryRunHost(host) : host,
    usb: new MemoryHost(),
    bundle,
    facts,
    cluster: { config: clusterConfig(undefined, 'flags', {}, facts).config, advertise: '192.0.2.10', waitMs: 1000 },
    options: { role: o.role ?? 'worker', dryRun: !!o.dryRun, containerdAddress: '/run/containerd/containerd.sock', json: false, verbose: false },
    say: (line) => void o.says?.push(line),
  }
}
