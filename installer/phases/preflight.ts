import { lookup } from 'node:dns/promises'
import { createServer } from 'node:net'
import { hostname } from 'node:os'
import { KaError } from '../core/errors.js'
import { archOf } from '../core/platform.js'
import { activeSwaps } from '../node-state.js'
import { BIN_DIR, CGROUP_V2_MARKER, KUBECONFIG_ADMIN, KUBELET_KUBECONFIG, RUNC, SYSTEMD_RUNNING } from '../paths.js'
import type { Context, Phase } from '../plan.js'
import { packagesForNode } from './packages.js'

export interface Finding {
  level: 'ok' | 'warn' | 'fail'
  check: string
  found: string
  fix?: string
}

const PORTS: [number, string][] = [
  [6443, 'kube-apiserver'],
  [10250, 'kubelet'],
  [10257, 'kube-controller-manager'],
  [10259, 'kube-scheduler'],
  [2379, 'etcd'],
  [2380, 'etcd peers'],
]

/** kubeadm's own preflight: these missing stop `kubeadm init/join` ([ERROR FileExisting-...]). */
export const KUBEADM_NEEDS = ['conntrack', 'ip', 'iptables', 'mount', 'nsenter']
/** ... and these only warn there, but pods need them (socat for port-forward). */
export const KUBEADM_WANTS = ['socat', 'ebtables', 'ethtool', 'tc', 'touch']
/** The Debian/Ubuntu package a command comes in. */
const COMMAND_PACKAGE: Record<string, string> = { ip: 'iproute2', tc: 'iproute2', nsenter: 'util-linux', touch: 'coreutils' }
/** What the installer's own phases run on the host. */
const INSTALLER_NEEDS = ['systemctl', 'modprobe', 'sysctl', 'swapoff']

export async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => resolve(false))
    s.listen({ port, host: '0.0.0.0', exclusive: true }, () => s.close(() => resolve(true)))
  })
}

/** What is wrong with this node before anything is changed. Fatal problems stop the run. */
export async function preflightFindings(ctx: Context): Promise<Finding[]> {
  const { host, bundle, options } = ctx
  const f: Finding[] = []
  const add = (level: Finding['level'], check: string, found: string, fix?: string) => f.push({ level, check, found, ...(fix ? { fix } : {}) })

  const euid = process.geteuid?.() ?? 0
  if (euid !== 0 && !options.dryRun) add('fail', 'root', `running as uid ${euid}`, 'run it with sudo: sudo ./install ...')
  const want = archOf(bundle.platform)
  const have = process.arch === 'x64' ? 'amd64' : process.arch
  if (have !== want) add('fail', 'architecture', `this machine is ${have}, the bundle is for ${want}`, `use the linux/${have} bundle`)
  if (!(await host.exists(SYSTEMD_RUNNING))) add('fail', 'systemd', 'systemd is not running as init', 'kube-airgap installs systemd units; use a systemd-based distribution')

  const swaps = await activeSwaps(host)
  if (swaps.length) add('warn', 'swap', `swap is on (${swaps.map((l) => l.split(/\s+/)[0]).join(', ')})`, 'the kernel phase turns it off now and comments it out of /etc/fstab')

  for (const [port, who] of PORTS) {
    if (options.role === 'worker' && port !== 10250) continue
    if (!(await portFree(port))) {
      add('fail', `port ${port}`, `port ${port} (${who}) is in use`, port === 10250 || port === 6443 ? 'a kubelet or API server from an earlier install is still running: ./install reset, then run again' : `stop what listens on ${port} (ss -ltnp 'sport = :${port}')`)
    }
  }

  for (const p of [KUBECONFIG_ADMIN, KUBELET_KUBECONFIG]) {
    if (await host.exists(p)) {
      add('warn', 'existing cluster', `${p} exists: this node already belongs to a cluster`, 'to start over: ./install reset')
      break
    }
  }

  // Another container runtime beside ours: the field notes' two runc and two containerd.
  const others: string[] = []
  for (const [name, ours] of [
    ['containerd', `${BIN_DIR}/containerd`],
    ['runc', RUNC],
    ['dockerd', ''],
  ] as const) {
    for (const dir of ['/usr/bin', '/usr/sbin', '/bin', '/sbin', '/snap/bin', '/usr/local/bin', '/usr/local/sbin']) {
      const p = `${dir}/${name}`
      if (p !== ours && (await host.exists(p))) others.push(p)
    }
  }
  if (others.length) {
    add('warn', 'other runtimes', `also installed: ${others.join(', ')}`, `kube-airgap's unit runs ${BIN_DIR}/containerd and its config points runc at ${RUNC}; remove the others (apt remove containerd.io docker-ce, or snap remove docker) to avoid confusion, but only if nothing else needs them`)
  }

  if (!(await host.exists(CGROUP_V2_MARKER))) add('warn', 'cgroups', 'cgroup v1', 'works with Kubernetes 1.29, but cgroup v1 is in maintenance mode: prefer a distribution on cgroup v2 (Ubuntu 22.04+, Debian 11+)')

  for (const c of INSTALLER_NEEDS) if (!(await host.hasCommand(c))) add('fail', `command ${c}`, `${c} is not on PATH`, `install it (${c === 'modprobe' ? 'kmod' : c === 'systemctl' ? 'systemd' : c === 'sysctl' ? 'procps' : 'util-linux'})`)
  // A command the bundle's packages bring for this release is not a problem: the packages
  // phase installs it before anything needs it.
  const { mine, release, carried } = await packagesForNode(ctx)
  const bringing = new Set(mine.map((p) => p.name))
  const brought = (c: string) => bringing.has(COMMAND_PACKAGE[c] ?? c)
  const missingHard = []
  for (const c of KUBEADM_NEEDS) if (!(await host.hasCommand(c)) && !brought(c)) missingHard.push(c)
  if (missingHard.length) add('fail', 'commands kubeadm needs', `${missingHard.join(', ')} not found (kubeadm stops with [ERROR FileExisting-${missingHard[0]}])`, missingPackagesFix(missingHard, release, carried))
  const missingSoft = []
  for (const c of KUBEADM_WANTS) if (!(await host.hasCommand(c)) && !brought(c)) missingSoft.push(c)
  if (missingSoft.length) add('warn', 'commands kubeadm wants', `${missingSoft.join(', ')} not found`, `install ${missingSoft.join(' ')}: socat is needed by kubectl port-forward`)

  const name = hostname()
  const resolved = await lookup(name).then(
    () => true,
    () => false,
  )
  if (!resolved) add('warn', 'hostname', `${name} does not resolve`, `add "<this node's IP> ${name}" to /etc/hosts`)

  if (f.length === 0) add('ok', 'preflight', 'nothing to report')
  return f
}

/**
 * What to do about commands kubeadm needs that neither the node nor the bundle has: the
 * release this node runs, what the bundle carries, and the two ways out, in one block.
 */
export function missingPackagesFix(commands: string[], release: string | undefined, carried: string[]): string {
  const pkgs = [...new Set(commands.map((c) => COMMAND_PACKAGE[c] ?? c))].join(' ')
  return [
    `this node runs ${release ?? 'a release this installer cannot tell (no /etc/os-release)'}; the bundle carries OS packages for ${carried.length ? carried.join(', ') : 'no release'}. Either:`,
    `  1. build a bundle with ${release ?? 'this release'} in the manifest's packages.releases (bundle lock, then bundle build), or`,
    `  2. install ${pkgs} by other means (a local mirror: apt-get install ${pkgs}; or their .deb files with dpkg -i), then run ./install again`,
  ].join('\n')
}

export const preflight: Phase = {
  name: 'preflight',
  summary: 'checks the node: root, architecture, systemd, swap, ports, an existing cluster, other runtimes, cgroups, host commands, hostname',
  async plan(ctx) {
    const findings = await preflightFindings(ctx)
    for (const x of findings) if (x.level !== 'ok') ctx.say(`${x.level === 'fail' ? 'FAIL' : 'warn'}  ${x.check}: ${x.found}${x.fix ? `; ${x.fix}` : ''}`)
    const fails = findings.filter((x) => x.level === 'fail')
    if (fails.length) {
      throw new KaError('ESTEP', `preflight: ${fails.map((x) => x.found).join('; ')}; fix ${fails.length === 1 ? 'it' : 'them'} and run ./install again (nothing was changed)`, { findings })
    }
    return [{ title: `node checked (${findings.filter((x) => x.level === 'warn').length} warnings)`, done: true, checkOnly: true, actions: [] }]
  },
}
