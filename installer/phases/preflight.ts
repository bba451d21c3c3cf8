import { createServer } from 'node:net'
import { KaError } from '../../bundle/errors.js'
import { archOf } from '../../bundle/platform.js'
import { activeSwaps, describeListener, listenerOn, NAMESERVER_FIX, nameservers } from '../node-state.js'
import { RESOLV_CONF, BIN_DIR, CGROUP_V2_MARKER, KUBEADM_CONFIG, KUBEADM_JOIN_CONFIG, KUBECONFIG_ADMIN, KUBELET_KUBECONFIG, RUNC, SYSTEMD_RUNNING } from '../node-paths.js'
import type { Context, Phase } from '../plan.js'
import { packagesForNode } from './packages.js'

export interface Finding {
  level: 'ok' | 'warn' | 'fail'
  check: string
  found: string
  fix?: string
}

/** The ports kubeadm needs free, who should hold them on a node already set up, and that process's command name (comm: 15 characters). */
const PORTS: [number, string, string][] = [
  [6443, 'kube-apiserver', 'kube-apiserver'],
  [10250, 'kubelet', 'kubelet'],
  [10257, 'kube-controller-manager', 'kube-controller'],
  [10259, 'kube-scheduler', 'kube-scheduler'],
  [2379, 'etcd', 'etcd'],
  [2380, 'etcd peers', 'etcd'],
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

  const { euid, arch: have } = ctx.facts
  if (euid !== 0 && !options.dryRun) add('fail', 'root', `running as uid ${euid}`, 'run it with sudo: sudo ./install ...')
  const want = archOf(bundle.platform)
  if (have !== want) add('fail', 'architecture', `this machine is ${have}, the bundle is for ${want}`, `use the linux/${have} bundle`)
  if (!(await host.exists(SYSTEMD_RUNNING))) add('fail', 'systemd', 'systemd is not running as init', 'kube-airgap installs systemd units; use a systemd-based distribution')

  const swaps = await activeSwaps(host)
  if (swaps.length) add('warn', 'swap', `swap is on (${swaps.map((l) => l.split(/\s+/)[0]).join(', ')})`, 'the kernel phase turns it off now and comments it out of /etc/fstab')

  // A node this installer already set up (its kubeadm config kept, the kubelet's kubeconfig
  // written) runs its own kubelet and API server: a rerun skips what is done. Only a listener
  // that is not ours, or a cluster this installer did not make, is a failure.
  const ourState = (await host.exists(KUBEADM_CONFIG)) || (await host.exists(KUBEADM_JOIN_CONFIG))
  const joined = await host.exists(KUBELET_KUBECONFIG)
  const ours = ourState && joined
  for (const [port, who, command] of PORTS) {
    if (options.role === 'worker' && port !== 10250) continue
    if (await portFree(port)) continue
    const l = await listenerOn(port)
    if (ours && l?.command === command) {
      add('ok', `port ${port}`, `${who} of this node: ${describeListener(l)}; set up by kube-airgap, so what is done is skipped`)
      continue
    }
    add(
      'fail',
      `port ${port}`,
      `port ${port} (${who}) is in use by ${describeListener(l)}`,
      ours
        ? `this node was set up by kube-airgap, but ${port} is held by something else: stop it${l?.unit ? ` (systemctl stop ${l.unit})` : ''} and run again`
        : `stop it${l?.unit ? ` (systemctl stop ${l.unit})` : ` (ss -ltnp 'sport = :${port}' shows it)`}; if it is a Kubernetes this node ran before, one choice is ./install reset, which removes that cluster from this node`,
    )
  }

  for (const p of [KUBECONFIG_ADMIN, KUBELET_KUBECONFIG]) {
    if (await host.exists(p)) {
      if (ourState) add('ok', 'existing cluster', `${p} exists: this node was set up by kube-airgap; a rerun finishes what is left`)
      else add('warn', 'existing cluster', `${p} exists, but not from kube-airgap: this node belongs to a cluster another tool made`, 'kubeadm init/join will refuse; leave this node as it is, or (it removes that cluster from this node) ./install reset')
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

  for (const w of await firewallFindings(ctx)) add('warn', 'firewall', w, 'open these between the nodes (kube-airgap does not change firewall rules)')
  if ((await nameservers(host)).length === 0) add('warn', 'nameserver', `${RESOLV_CONF} names no nameserver: CoreDNS will crash-loop (plugin/forward: no nameservers found) and finish will time out`, NAMESERVER_FIX)

  const name = ctx.facts.hostname
  if (!ctx.facts.hostnameResolves) add('warn', 'hostname', `${name} does not resolve`, `add "<this node's IP> ${name}" to /etc/hosts`)

  if (f.length === 0) add('ok', 'preflight', 'nothing to report')
  return f
}

/** What the cluster needs open between nodes, by role. */
const NEEDED_OPEN = (role: 'master' | 'worker') => `${role === 'master' ? 'TCP 6443, 2379-2380, 10250, 10257, 10259' : 'TCP 10250'}, BGP (TCP 179) and IP-in-IP (protocol 4) for Calico`

/**
 * Firewalls that may block what the cluster needs: ufw enabled, firewalld or nftables
 * running. A warning each, naming the rule set and the ports; nothing is changed.
 */
export async function firewallFindings(ctx: Context): Promise<string[]> {
  const { host } = ctx
  const out: string[] = []
  const open = NEEDED_OPEN(ctx.options.role)
  if (/^\s*ENABLED\s*=\s*yes\s*$/m.test((await host.readText('/etc/ufw/ufw.conf')) ?? '')) out.push(`ufw is enabled (/etc/ufw/ufw.conf): it may block ${open}`)
  for (const unit of ['firewalld', 'nftables']) {
    if ((await host.run(['systemctl', 'is-active', unit], { changing: false })).code === 0) out.push(`${unit} is running: its rules may block ${open}`)
  }
  return out
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
