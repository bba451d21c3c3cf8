import type { Finding } from './checks.js'
import { C } from '../bundle/components.js'
import { cniOf } from '../bundle/lock.js'
import { calicoWire } from './calico.js'
import {
  CONTAINER_SELINUX_POLICY,
  CONTAINERD_CONFIG,
  FIREWALLD_ADDED,
  FLANNEL_LINKS,
  MODULES_LOAD,
  NM_CALICO_CONF,
  SELINUX_BACKUP,
  SELINUX_CONFIG,
} from './node-paths.js'
import { type Action, type Context, fileStep, type Step, writeAction } from './plan.js'
import { HEADER } from './templates.js'
import { unitActive } from './node-state.js'
import { packagesHere } from './os-packages.js'
import { editStep } from './steps.js'

/**
 * The security layer RPM-family distributions (Rocky, AlmaLinux, openEuler, Kylin) enable by
 * default. SELinux enforcing: kubeadm's documented requirement is permissive, now and after
 * reboot, unless the operator keeps it enforcing with container-selinux's policy
 * (cluster.yaml `selinux: keep`). firewalld running: the role's ports opened permanently,
 * or with `firewalld: keep` the run stops listing what must be open. A node without SELinux
 * (no /etc/selinux/config) or without firewalld running sees none of this.
 */

export type SelinuxMode = 'enforcing' | 'permissive' | 'disabled'

/** What `getenforce` says, on a node that has SELinux at all. */
export async function selinuxMode(ctx: Context): Promise<SelinuxMode | undefined> {
  if (!(await ctx.host.exists(SELINUX_CONFIG))) return undefined
  const r = await ctx.host.run(['getenforce'], { changing: false })
  const mode = r.stdout.trim().toLowerCase()
  return r.code === 0 && (mode === 'enforcing' || mode === 'permissive' || mode === 'disabled') ? mode : undefined
}

/**
 * selinux: keep on a node with SELinux on: containerd labels containers itself
 * (enable_selinux), and its binaries carry the policy's labels. An upgrade, which reads no
 * cluster.yaml, keeps what the install chose: the containerd config says it.
 */
export async function selinuxKept(ctx: Context): Promise<boolean> {
  const kept = ctx.cluster.config.selinux === 'keep' || /^\s*enable_selinux = true$/m.test((await ctx.host.readText(CONTAINERD_CONFIG)) ?? '')
  const mode = kept ? await selinuxMode(ctx) : undefined
  return mode === 'enforcing' || mode === 'permissive'
}

/**
 * With SELinux kept: the files just written relabelled as the loaded policy says
 * (restorecon(8)): a file written by rename keeps the folder's default type, and
 * container-selinux wants containerd and runc as container_runtime_exec_t so that they run
 * in their own domain. `restorecon -n -v` lists what it would change: done when nothing.
 */
export async function relabelStep(ctx: Context, paths: string[], written: boolean): Promise<Step> {
  const argv = ['restorecon', '-R', ...paths.map((p) => ctx.host.path(p))]
  const pending = !written || (await ctx.host.run([argv[0]!, '-n', '-v', ...argv.slice(1)], { changing: false })).stdout.trim() !== ''
  return { title: `SELinux labels of ${paths.join(', ')} as the policy says (restorecon)`, done: !pending, actions: [{ kind: 'run', argv }] }
}

/** SELINUX=enforcing in the config as permissive (every other line kept). */
export const selinuxPermissive = (text: string): string => text.replace(/^SELINUX=enforcing[ \t]*$/m, 'SELINUX=permissive')

/**
 * What firewalld must let through for this node, each as firewall-cmd names it, the zone
 * first where it is not the default one:
 * - in the default zone: kubeadm's ports for the role, the NodePort range (TCP and UDP) on
 *   every node, and what Calico's manifest puts between nodes (BGP 179/tcp, IP-in-IP as
 *   protocol 4, VXLAN 4789/udp);
 * - in the trusted zone: the pod and service subnets and Calico's interfaces (cali+, tunl0,
 *   vxlan.calico). Open ports alone are not enough: pod traffic between nodes is forwarded,
 *   and firewalld rejects forwarded traffic that no zone accepts (projectcalico/calico#5232).
 */
export async function openings(ctx: Context): Promise<string[]> {
  const role = ctx.options.role
  const ports = role === 'master' ? ['6443/tcp', '2379-2380/tcp', '10250/tcp', '10257/tcp', '10259/tcp'] : ['10250/tcp']
  const flannel = cniOf(ctx.bundle.lock) === 'flannel'
  const wire = flannel ? { bgp: false, vxlan: false, ipip: false } : calicoWire(ctx.bundle.manifest(C.calicoManifest))
  const { podSubnet, serviceSubnet, addons } = ctx.cluster.config
  const ingress = addons[C.ingressNginx]
  return [
    ...ports,
    '30000-32767/tcp',
    '30000-32767/udp',
    ...(wire.bgp ? ['179/tcp'] : []),
    ...(wire.vxlan ? ['4789/udp'] : []),
    ...(wire.ipip ? ['4'] : []),
    // Flannel's VXLAN backend (its default): the kernel's VXLAN port on Linux, 8472.
    ...(flannel ? ['8472/udp'] : []),
    // ingress-nginx on host ports: any node may run its controller.
    ...(ctx.bundle.manifest(C.ingressNginx) && ingress && ingress.expose === 'hostport' ? ['80/tcp', '443/tcp'] : []),
    // The masters' VRRP for a virtual IP the bundle provides (keepalived): blocked, every master takes the address.
    ...(role === 'master' && ctx.cluster.config.vip ? ['112'] : []),
    `trusted:source=${podSubnet}`,
    `trusted:source=${serviceSubnet}`,
    ...(flannel ? FLANNEL_LINKS : CALICO_INTERFACES).map((i) => `trusted:interface=${i}`),
  ]
}

const CALICO_INTERFACES = ['cali+', 'tunl0', 'vxlan.calico']

/** An opening as the record keeps it: a port, a protocol, or a trusted source or pod network interface (anything else is not ours). */
const OPENING = /^(\d+(-\d+)?\/(tcp|udp)|\d+|trusted:source=[\d./]+|trusted:interface=(cali\+|tunl0|vxlan\.calico|flannel\.1|cni0))$/

/** The zone an opening is in (undefined: the default zone) and its firewall-cmd option. */
function option(verb: 'query' | 'add' | 'remove', o: string): { zone?: string; arg: string } {
  const trusted = /^trusted:(source|interface)=(.*)$/.exec(o)
  if (trusted) return { zone: 'trusted', arg: `--${verb}-${trusted[1]}=${trusted[2]}` }
  return { arg: `--${verb}-${o.includes('/') ? 'port' : 'protocol'}=${o}` }
}

/** One firewall-cmd command line per zone for `list` (firewall-cmd takes one --zone a command). */
function commands(command: string[], verb: 'add' | 'remove', list: string[]): string[][] {
  const zones = new Map<string | undefined, string[]>()
  for (const o of list) {
    const { zone, arg } = option(verb, o)
    zones.set(zone, [...(zones.get(zone) ?? []), arg])
  }
  return [...zones].map(([zone, args]) => [...command, ...(zone ? [`--zone=${zone}`] : []), ...args])
}

const firewalldRunning = (ctx: Context) => unitActive(ctx.host, 'firewalld')

/** Of `list`, what firewalld's permanent configuration lacks. */
async function closed(ctx: Context, list: string[]): Promise<string[]> {
  const out: string[] = []
  for (const o of list) {
    const { zone, arg } = option('query', o)
    if ((await ctx.host.run(['firewall-cmd', '--permanent', ...(zone ? [`--zone=${zone}`] : []), arg], { changing: false })).code !== 0) out.push(o)
  }
  return out
}

const describe = (list: string[]) =>
  list
    .map((o) =>
      o === '4' ? 'IP-in-IP (protocol 4)' : o === '112' ? 'VRRP (protocol 112)' : o.startsWith('trusted:') ? o.slice('trusted:'.length).replace('=', ' ') : o,
    )
    .join(', ')

/** The default zone's openings, and the trusted zone's, as two findings would name them. */
const split = (list: string[]) => [list.filter((o) => !o.startsWith('trusted:')), list.filter((o) => o.startsWith('trusted:'))] as const

/**
 * Calico's interfaces kept from NetworkManager (Calico's documented
 * /etc/NetworkManager/conf.d/calico.conf): a NetworkManager that manages them may take their
 * routes and addresses away from calico-node.
 */
export const networkManagerCalico =
  (): string => `${HEADER}# Calico's interfaces are calico-node's, not NetworkManager's (Calico's "Configure NetworkManager" requirement).
[keyfile]
unmanaged-devices=interface-name:cali*;interface-name:tunl*;interface-name:vxlan.calico;interface-name:vxlan-v6.calico;interface-name:wireguard.cali;interface-name:wg-v6.cali
`

const networkManagerRunning = (ctx: Context) => unitActive(ctx.host, 'NetworkManager')

/** The kernel phase's steps for SELinux and firewalld (none on a node that has neither). */
export async function securitySteps(ctx: Context): Promise<Step[]> {
  const { selinux, firewalld } = ctx.cluster.config
  const steps: Step[] = []
  const mode = await selinuxMode(ctx)
  if (mode && selinux === 'permissive') {
    steps.push({ title: 'SELinux permissive now (setenforce 0)', done: mode !== 'enforcing', actions: [{ kind: 'run', argv: ['setenforce', '0'] }] })
    steps.push(await editStep(ctx, 'SELinux permissive after reboot', SELINUX_CONFIG, SELINUX_BACKUP, selinuxPermissive))
  }
  if (firewalld === 'open' && (await firewalldRunning(ctx))) {
    const want = await openings(ctx)
    const missing = await closed(ctx, want)
    // What was added is recorded first, so that reset --purge removes exactly that (never what the site opened itself).
    // And what the node needs, for doctor: the role and the subnets are not known on a worker after.
    const added = [...new Set([...(await firewalldRecord(ctx)).added, ...missing])]
    const record = Buffer.from(`${JSON.stringify({ added, wanted: want }, null, 2)}\n`)
    steps.push({
      title: `firewalld lets through ${describe(split(want)[0])} and trusts ${describe(split(want)[1])} (permanent, then reloaded)`,
      done: missing.length === 0,
      actions: [
        writeAction(FIREWALLD_ADDED, record),
        ...commands(['firewall-cmd', '--permanent'], 'add', missing).map((argv) => ({ kind: 'run' as const, argv })),
        { kind: 'run', argv: ['firewall-cmd', '--reload'] },
      ],
    })
  }
  if (cniOf(ctx.bundle.lock) === 'calico' && (await networkManagerRunning(ctx))) {
    const now = await ctx.host.readText(NM_CALICO_CONF)
    // A calico.conf of the site's own is left as it is.
    if (now === undefined || now === networkManagerCalico()) {
      const step = await fileStep(ctx, `NetworkManager leaves Calico's interfaces alone (${NM_CALICO_CONF})`, NM_CALICO_CONF, networkManagerCalico())
      steps.push({ ...step, actions: [...step.actions, { kind: 'run', argv: ['systemctl', 'reload', 'NetworkManager'] }] })
    }
  }
  return steps
}

/** The firewalld record: what the installer added (reset --purge takes back exactly that), and what the node was set up to need. */
async function firewalldRecord(ctx: Context): Promise<{ added: string[]; wanted: string[] }> {
  const valid = (list: unknown) => (Array.isArray(list) ? list.filter((o): o is string => typeof o === 'string' && OPENING.test(o)) : [])
  try {
    const r = JSON.parse((await ctx.host.readText(FIREWALLD_ADDED)) ?? '{}') as { added?: unknown; wanted?: unknown }
    return { added: valid(r.added), wanted: valid(r.wanted) }
  } catch {
    return { added: [], wanted: [] }
  }
}

/** Before an install and in doctor: what SELinux and firewalld will do to the cluster, and what the installer does about it. */
export async function securityFindings(ctx: Context, live: boolean): Promise<Finding[]> {
  const { selinux, firewalld } = ctx.cluster.config
  const f: Finding[] = []
  const mode = await selinuxMode(ctx)
  const policy = mode === 'enforcing' && selinux === 'keep' && !(await ctx.host.exists(CONTAINER_SELINUX_POLICY))
  // Before an install, the bundle's OS packages for this node may bring it: the packages phase runs before anything starts a container.
  const brought = policy && !live && packagesHere(ctx).mine.some((p) => p.name === 'container-selinux')
  if (brought)
    f.push({
      level: 'ok',
      check: 'selinux',
      found: "SELinux is enforcing (selinux: keep); container-selinux comes with the bundle's OS packages for this node",
    })
  else if (policy)
    f.push({
      level: 'fail',
      check: 'selinux',
      found: `SELinux is enforcing and cluster.yaml says selinux: keep, but container-selinux's policy (${CONTAINER_SELINUX_POLICY}) is not installed: containers would be denied`,
      fix: "install container-selinux from the distribution, or add container-selinux to the manifest's packages.names so that the bundle brings it, or drop selinux: keep so that kube-airgap sets SELinux permissive",
    })
  else if (mode === 'enforcing' && selinux === 'permissive')
    f.push({
      level: live ? 'fail' : 'warn',
      check: 'selinux',
      found: 'SELinux is enforcing',
      fix: live
        ? `kubeadm needs it permissive: sudo setenforce 0, and SELINUX=permissive in ${SELINUX_CONFIG} (./install does both), or selinux: keep with container-selinux installed`
        : `the kernel phase sets it permissive now and after reboot (the original ${SELINUX_CONFIG} is kept as ${SELINUX_BACKUP}); selinux: keep in cluster.yaml keeps it enforcing, with container-selinux installed`,
    })
  else if (mode) f.push({ level: 'ok', check: 'selinux', found: `SELinux is ${mode}${selinux === 'keep' ? ' (selinux: keep)' : ''}` })

  if (await firewalldRunning(ctx)) {
    // On a node set up already, what it was set up to need (doctor cannot tell a master's role or the subnets after).
    const recorded = live ? (await firewalldRecord(ctx)).wanted : []
    const want = recorded.length ? recorded : await openings(ctx)
    const [ports, trusted] = split(await closed(ctx, want))
    const fixOf = (list: string[]) =>
      `${commands(['firewall-cmd', '--permanent'], 'add', list)
        .map((a) => a.join(' '))
        .join(' && ')} && firewall-cmd --reload`
    const keep = firewalld === 'keep' ? ' (cluster.yaml says firewalld: keep)' : ''
    const yours = firewalld === 'keep' ? ', or drop firewalld: keep so that kube-airgap does it' : ''
    const [wantPorts, wantTrusted] = split(want)
    const report = (check: string, missing: string[], found: string, ok: string) => {
      if (missing.length === 0) f.push({ level: 'ok', check, found: ok })
      else if (firewalld === 'keep' || live) f.push({ level: 'fail', check, found: `${found}${keep}`, fix: `on every node: ${fixOf(missing)}${yours}` })
      else
        f.push({
          level: 'warn',
          check,
          found,
          fix: 'the kernel phase does it (permanent, then reloaded); firewalld: keep in cluster.yaml leaves firewalld to you',
        })
    }
    report('firewalld', ports, `firewalld is running and does not let through ${describe(ports)}`, `running; lets through ${describe(wantPorts)}`)
    report(
      'firewalld forwarding',
      trusted,
      `firewalld rejects pod traffic forwarded between nodes: its trusted zone lacks ${describe(trusted)}`,
      `pod traffic is forwarded: the trusted zone holds ${describe(wantTrusted)}`,
    )
  }
  // Before an install the kernel phase writes the file; a node set up already must have it.
  if (live && cniOf(ctx.bundle.lock) === 'calico' && (await networkManagerRunning(ctx))) {
    const now = await ctx.host.readText(NM_CALICO_CONF)
    if (now === undefined)
      f.push({
        // A node the kernel phase has not set up yet: it will write it.
        level: (await ctx.host.exists(MODULES_LOAD)) ? 'fail' : 'todo',
        check: 'NetworkManager',
        found: `NetworkManager is running and ${NM_CALICO_CONF} is not there: it may take Calico's interfaces from calico-node`,
        fix: 'sudo ./install --phases kernel (it writes that file, as Calico documents it)',
      })
    else f.push({ level: 'ok', check: 'NetworkManager', found: `running; ${NM_CALICO_CONF} keeps it off Calico's interfaces` })
  }
  return f
}

/** reset --purge: SELinux's config back as it was (and enforcing again, if it was), the firewalld openings the installer added removed. */
export async function securityUndoSteps(ctx: Context): Promise<Step[]> {
  const { host } = ctx
  const steps: Step[] = []
  const backup = await host.read(SELINUX_BACKUP)
  const enforcing = !!backup && /^SELINUX=enforcing[ \t]*$/m.test(backup.toString('utf8'))
  // Only what the installer changed here: a node it never touched gets no steps at all.
  if (backup)
    steps.push({
      title: `${SELINUX_CONFIG} restored from ${SELINUX_BACKUP}${enforcing ? ', SELinux enforcing again' : ''}`,
      done: false,
      actions: [
        writeAction(SELINUX_CONFIG, backup),
        { kind: 'remove', path: SELINUX_BACKUP },
        ...(enforcing ? [{ kind: 'run' as const, argv: ['setenforce', '1'] }] : []),
      ],
    })
  const { added } = await firewalldRecord(ctx)
  // firewalld stopped since: its offline tool edits the same permanent configuration.
  const running = await firewalldRunning(ctx)
  const actions: Action[] = !added.length
    ? []
    : [
        ...commands(running ? ['firewall-cmd', '--permanent'] : ['firewall-offline-cmd'], 'remove', added).map((argv) => ({ kind: 'run' as const, argv })),
        ...(running ? [{ kind: 'run' as const, argv: ['firewall-cmd', '--reload'] }] : []),
      ]
  if (await host.exists(FIREWALLD_ADDED)) actions.push({ kind: 'remove', path: FIREWALLD_ADDED })
  if (actions.length) steps.push({ title: `the firewalld openings kube-airgap added removed (${describe(added)})`, done: false, actions })
  // Only the file as kube-airgap wrote it: a calico.conf of the site's own stays.
  if ((await host.readText(NM_CALICO_CONF)) === networkManagerCalico())
    steps.push({
      title: `${NM_CALICO_CONF} removed`,
      done: false,
      actions: [
        { kind: 'remove', path: NM_CALICO_CONF },
        ...((await networkManagerRunning(ctx)) ? [{ kind: 'run' as const, argv: ['systemctl', 'reload', 'NetworkManager'] }] : []),
      ],
    })
  return steps
}
