import { BINARY_DIRS, UFW_CONF } from './node-paths.js'
import { nameserverFix, nameservers, unitActive } from './node-state.js'
import type { Context } from './plan.js'
import { packagesHere } from './os-packages.js'
import type { PackageFamily } from '../bundle/os-release.js'

/**
 * The checks preflight and doctor share. Preflight runs them before an install (a `fail`
 * stops it: the fatal subset); doctor runs them on a live node beside its own. One list of
 * folders, one list of commands, one wording, so the two never disagree about a node.
 */
export interface Finding {
  /** todo: what the installer has not done yet on this node (not broken: not installed yet). */
  level: 'ok' | 'todo' | 'warn' | 'fail'
  check: string
  found: string
  fix?: string
}

/** kubeadm's own preflight: these missing stop `kubeadm init/join` ([ERROR FileExisting-...]). */
export const KUBEADM_NEEDS = ['conntrack', 'ip', 'iptables', 'mount', 'nsenter']
/** ... and these only warn there, but pods need them (socat for port-forward). */
export const KUBEADM_WANTS = ['socat', 'ebtables', 'ethtool', 'tc', 'touch']
/** The packages a command comes in: the Debian/Ubuntu one first, then the RPM family's (iptables-nft brings ebtables on Enterprise Linux 9). */
const COMMAND_PACKAGES: Record<string, string[]> = {
  conntrack: ['conntrack', 'conntrack-tools'],
  ip: ['iproute2', 'iproute'],
  tc: ['iproute2', 'iproute-tc'],
  mount: ['mount', 'util-linux'],
  nsenter: ['util-linux'],
  touch: ['coreutils'],
  iptables: ['iptables', 'iptables-nft'],
  ebtables: ['ebtables', 'iptables-nft', 'iptables-ebtables'],
}
const packagesOf = (command: string): string[] => COMMAND_PACKAGES[command] ?? [command]

/**
 * The commands kubeadm needs and wants. A command the bundle's packages bring for this
 * node's release is not missing: the packages phase installs it before anything needs it.
 */
export async function hostCommandFindings(ctx: Context): Promise<Finding[]> {
  const { mine, release, carried } = packagesHere(ctx)
  const bringing = new Set(mine.map((p) => p.name))
  const lacking = async (list: string[]) => {
    const out: string[] = []
    for (const c of list) if (!(await ctx.host.hasCommand(c)) && !packagesOf(c).some((p) => bringing.has(p))) out.push(c)
    return out
  }
  const out: Finding[] = []
  const hard = await lacking(KUBEADM_NEEDS)
  if (hard.length)
    out.push({
      level: 'fail',
      check: 'host commands',
      found: `${hard.join(', ')} not found: kubeadm stops with [ERROR FileExisting-${hard[0]}]`,
      fix: missingPackagesFix(hard, release, ctx.facts.family, carried),
    })
  else out.push({ level: 'ok', check: 'host commands', found: `${KUBEADM_NEEDS.join(', ')} found${bringing.size ? ' or brought by the bundle' : ''}` })
  // The endpoint the bundle provides runs HAProxy on every node, or keepalived on every master, before kubeadm.
  const { localEndpoint, vip } = ctx.cluster.config
  const endpoint = localEndpoint
    ? ['haproxy', 'endpoint: local runs it on every node']
    : vip && ctx.options.role === 'master'
      ? ['keepalived', 'endpoint: { vip } runs it on every master']
      : undefined
  if (endpoint && (await lacking([endpoint[0]!])).length)
    out.push({
      level: 'fail',
      check: 'control-plane endpoint',
      found: `${endpoint[0]} not found, and ${endpoint[1]}`,
      fix: missingPackagesFix([endpoint[0]!], release, ctx.facts.family, carried),
    })
  const soft = await lacking(KUBEADM_WANTS)
  if (soft.length)
    out.push({
      level: 'warn',
      check: 'host commands (optional)',
      found: `${soft.join(', ')} not found`,
      fix: `install ${soft.join(' ')}: kubectl port-forward needs socat`,
    })
  return out
}

/**
 * What to do about commands kubeadm needs that neither the node nor the bundle has: the
 * release this node runs, what the bundle carries, and the two ways out, in one block.
 */
export function missingPackagesFix(commands: string[], release: string | undefined, family: PackageFamily | undefined, carried: string[]): string {
  const rpm = family === 'rpm'
  const pkgs = [...new Set(commands.map((c) => packagesOf(c).at(rpm ? -1 : 0)!))].join(' ')
  const other = rpm
    ? `install ${pkgs} by other means (a local repository: dnf install ${pkgs}; or their .rpm files with rpm -i), then run ./install again`
    : `install ${pkgs} by other means (a local mirror: apt-get install ${pkgs}; or their .deb files with dpkg -i), then run ./install again`
  // The bundle has this release's set, and it does not bring these: a minimal installation has them, this node does not.
  if (release !== undefined && carried.includes(release)) return `the bundle's OS packages for ${release} do not bring them: ${other}`
  return [
    `this node runs ${release ?? 'a release this installer cannot tell (no /etc/os-release)'}; the bundle carries OS packages for ${carried.length ? carried.join(', ') : 'no release'}. Either:`,
    `  1. build a bundle with ${release ?? 'this release'} in the manifest's packages.releases (bundle lock, then bundle build), or`,
    `  2. ${other}`,
  ].join('\n')
}

/** Every copy of `name` in the binary folders. */
export async function copiesOf(ctx: Context, name: string): Promise<string[]> {
  const out: string[] = []
  for (const dir of BINARY_DIRS) if (await ctx.host.exists(`${dir}/${name}`)) out.push(`${dir}/${name}`)
  return out
}

/** What the cluster needs open between nodes, by role. */
const NEEDED_OPEN = (role: 'master' | 'worker') =>
  `${role === 'master' ? 'TCP 6443, 2379-2380, 10250, 10257, 10259' : 'TCP 10250'}, NodePorts (TCP and UDP 30000-32767), BGP (TCP 179) and IP-in-IP (protocol 4) for Calico, and pod traffic forwarded between nodes`

/**
 * Firewalls that may block what the cluster needs: ufw enabled, firewalld or nftables
 * running. A warning each, naming the rule set and the ports; nothing is changed.
 */
export async function firewallFindings(ctx: Context): Promise<Finding[]> {
  const { host } = ctx
  const found: string[] = []
  const open = NEEDED_OPEN(ctx.options.role)
  if (/^\s*ENABLED\s*=\s*yes\s*$/m.test((await host.readText(UFW_CONF)) ?? '')) found.push(`ufw is enabled (${UFW_CONF}): it may block ${open}`)
  // firewalld is security.ts's: it opens the ports (or says which), instead of warning.
  for (const unit of ['nftables']) {
    if (await unitActive(host, unit)) found.push(`${unit} is running: its rules may block ${open}`)
  }
  return found.map((f) => ({
    level: 'warn',
    check: 'firewall',
    found: f,
    fix: 'open these between the nodes, or stop that firewall while the cluster is set up (kube-airgap changes no ufw or nftables rule)',
  }))
}

/**
 * No resolver at all (common on air-gapped hosts): CoreDNS then crash-loops with
 * "plugin/forward: no nameservers found". Before an install it is a warning (the cluster
 * phase then sets CoreDNS up without forwarding); on a live node a failure.
 */
export async function nameserverFinding(ctx: Context, missing: 'warn' | 'fail'): Promise<Finding> {
  const { file, servers } = await nameservers(ctx.host)
  if (servers.length) return { level: 'ok', check: 'nameserver', found: `${servers.join(', ')} (${file}, what the kubelet hands CoreDNS)` }
  return {
    level: missing,
    check: 'nameserver',
    found: `${file} (what the kubelet hands CoreDNS) names no nameserver: CoreDNS will crash-loop (plugin/forward: no nameservers found)${missing === 'warn' ? ' and finish will time out' : ''}`,
    fix: nameserverFix(file),
  }
}
