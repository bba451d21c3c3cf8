import { KaError } from '../../bundle/errors.js'
import { archOf } from '../../bundle/platform.js'
import { copiesOf, firewallFindings, hostCommandFindings, nameserverFinding, type Finding } from '../checks.js'
import { activeSwaps, describeListener, listenerOn, portFree } from '../node-state.js'
import { BIN_DIR, CGROUP_V2_MARKER, KUBEADM_CONFIG, KUBEADM_JOIN_CONFIG, KUBECONFIG_ADMIN, KUBELET_KUBECONFIG, RUNC, SYSTEMD_RUNNING } from '../node-paths.js'
import type { Context, Phase } from '../plan.js'
import { securityFindings } from '../security.js'

/** The ports kubeadm needs free, who should hold them on a node already set up, and that process's command name (comm: 15 characters). */
const PORTS: [number, string, string][] = [
  [6443, 'kube-apiserver', 'kube-apiserver'],
  [10250, 'kubelet', 'kubelet'],
  [10257, 'kube-controller-manager', 'kube-controller'],
  [10259, 'kube-scheduler', 'kube-scheduler'],
  [2379, 'etcd', 'etcd'],
  [2380, 'etcd peers', 'etcd'],
]

/** What the installer's own phases run on the host. */
const INSTALLER_NEEDS = ['systemctl', 'modprobe', 'sysctl', 'swapoff']

/** What is wrong with this node before anything is changed. Fatal problems stop the run. */
export async function preflightFindings(ctx: Context): Promise<Finding[]> {
  const f: Finding[] = []
  const add: Add = (level, check, found, fix) => f.push({ level, check, found, ...(fix ? { fix } : {}) })
  await machine(ctx, add)
  await ports(ctx, add)
  await runtimes(ctx, add)
  await system(ctx, add)
  const shared = [
    ...(await hostCommandFindings(ctx)),
    ...(await firewallFindings(ctx)),
    ...(await securityFindings(ctx, false)),
    await nameserverFinding(ctx, 'warn'),
  ]
  f.push(...shared.filter((x) => x.level !== 'ok'))
  const name = ctx.facts.hostname
  if (!ctx.facts.hostnameResolves) add('warn', 'hostname', `${name} does not resolve`, `add "<this node's IP> ${name}" to /etc/hosts`)
  if (f.length === 0) add('ok', 'preflight', 'nothing to report')
  return f
}

type Add = (level: Finding['level'], check: string, found: string, fix?: string) => void

/** The machine itself: root, architecture, systemd, swap. */
async function machine(ctx: Context, add: Add): Promise<void> {
  const { host, bundle, options } = ctx
  const { euid, arch: have } = ctx.facts
  if (euid !== 0 && !options.dryRun) add('fail', 'root', `running as uid ${euid}`, 'run it with sudo: sudo ./install ...')
  const want = archOf(bundle.platform)
  if (have !== want) add('fail', 'architecture', `this machine is ${have}, the bundle is for ${want}`, `use the linux/${have} bundle`)
  if (!(await host.exists(SYSTEMD_RUNNING)))
    add('fail', 'systemd', 'systemd is not running as init', 'kube-airgap installs systemd units; use a systemd-based distribution')

  const swaps = await activeSwaps(host)
  if (swaps.length)
    add('warn', 'swap', `swap is on (${swaps.map((l) => l.split(/\s+/)[0]).join(', ')})`, 'the kernel phase turns it off now and comments it out of /etc/fstab')
}

/**
 * Ports kubeadm needs, and a cluster already here. A node this installer already set up (its
 * kubeadm config kept, the kubelet's kubeconfig written) runs its own kubelet and API server:
 * a rerun skips what is done. Only a listener that is not ours, or a cluster this installer
 * did not make, is a failure.
 */
async function ports(ctx: Context, add: Add): Promise<void> {
  const { host, options } = ctx
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
      else
        add(
          'warn',
          'existing cluster',
          `${p} exists, but not from kube-airgap: this node belongs to a cluster another tool made`,
          'kubeadm init/join will refuse; leave this node as it is, or (it removes that cluster from this node) ./install reset',
        )
      break
    }
  }
}

/** Another container runtime beside ours: the field notes' two runc and two containerd. */
async function runtimes(ctx: Context, add: Add): Promise<void> {
  const others: string[] = []
  for (const [name, mine] of [
    ['containerd', `${BIN_DIR}/containerd`],
    ['runc', RUNC],
    ['dockerd', ''],
  ] as const) {
    others.push(...(await copiesOf(ctx, name)).filter((p) => p !== mine))
  }
  if (others.length) {
    add(
      'warn',
      'other runtimes',
      `also installed: ${others.join(', ')}`,
      `kube-airgap's unit runs ${BIN_DIR}/containerd and its config points runc at ${RUNC}; remove the others (apt remove containerd.io docker-ce, or snap remove docker) to avoid confusion, but only if nothing else needs them`,
    )
  }
}

/** cgroups, and the commands the installer's own phases run. */
async function system({ host }: Context, add: Add): Promise<void> {
  if (!(await host.exists(CGROUP_V2_MARKER)))
    add(
      'warn',
      'cgroups',
      'cgroup v1',
      'works with Kubernetes 1.29, but cgroup v1 is in maintenance mode: prefer a distribution on cgroup v2 (Ubuntu 22.04+, Debian 11+)',
    )
  for (const c of INSTALLER_NEEDS)
    if (!(await host.hasCommand(c)))
      add(
        'fail',
        `command ${c}`,
        `${c} is not on PATH`,
        `install it (${c === 'modprobe' ? 'kmod' : c === 'systemctl' ? 'systemd' : c === 'sysctl' ? 'procps' : 'util-linux'})`,
      )
}

export const preflight: Phase = {
  name: 'preflight',
  summary:
    'checks the node: root, architecture, systemd, swap, ports, an existing cluster, other runtimes, cgroups, host commands, SELinux, firewalls, hostname',
  async plan(ctx) {
    const findings = await preflightFindings(ctx)
    for (const x of findings) if (x.level !== 'ok') ctx.say(`${x.level.toUpperCase()}  ${x.check}: ${x.found}${x.fix ? `; ${x.fix}` : ''}`)
    const fails = findings.filter((x) => x.level === 'fail')
    // A dry run goes on: the failures are listed above, and every phase is planned anyway.
    if (fails.length && ctx.options.dryRun) {
      return [
        {
          title: `node checked: ${fails.length} failure${fails.length > 1 ? 's' : ''} a real run stops at (FAIL above); the phases below are planned as if fixed`,
          done: true,
          checkOnly: true,
          actions: [],
        },
      ]
    }
    if (fails.length) {
      throw new KaError(
        'ESTEP',
        `preflight: ${fails.map((x) => x.found).join('; ')}; fix ${fails.length === 1 ? 'it' : 'them'} and run ./install again (nothing was changed)`,
        { findings },
      )
    }
    return [{ title: `node checked (${findings.filter((x) => x.level === 'warn').length} warnings)`, done: true, checkOnly: true, actions: [] }]
  },
}
