import { Sha256 } from '../bundle/digest.js'
import type { Finding } from './checks.js'
import { CONTAINER_SELINUX_POLICY, FIREWALLD_ADDED, SELINUX_BACKUP, SELINUX_CONFIG } from './node-paths.js'
import type { Action, Context, Step } from './plan.js'
import { packagesForNode } from './phases/packages.js'
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

/** SELINUX=enforcing in the config as permissive (every other line kept). */
export const selinuxPermissive = (text: string): string => text.replace(/^SELINUX=enforcing[ \t]*$/m, 'SELINUX=permissive')

/** What firewalld must let through for a role: kubeadm's ports, Calico's BGP and IP-in-IP (protocol 4). */
export function openings(role: 'master' | 'worker'): string[] {
  const ports = role === 'master' ? ['6443/tcp', '2379-2380/tcp', '10250/tcp', '10257/tcp', '10259/tcp'] : ['10250/tcp']
  return [...ports, '179/tcp', '4']
}

/** `6443/tcp` is a port, `4` a protocol: the firewall-cmd option for either. */
const option = (verb: 'query' | 'add' | 'remove', o: string): string => `--${verb}-${o.includes('/') ? 'port' : 'protocol'}=${o}`

async function firewalldRunning(ctx: Context): Promise<boolean> {
  return (await ctx.host.run(['systemctl', 'is-active', 'firewalld'], { changing: false })).code === 0
}

/** The openings the role needs that firewalld's permanent configuration lacks. */
async function closed(ctx: Context): Promise<string[]> {
  const out: string[] = []
  for (const o of openings(ctx.options.role))
    if ((await ctx.host.run(['firewall-cmd', '--permanent', option('query', o)], { changing: false })).code !== 0) out.push(o)
  return out
}

const describe = (list: string[]) => list.map((o) => (o === '4' ? 'IP-in-IP (protocol 4)' : o)).join(', ')

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
    const missing = await closed(ctx)
    // What was added is recorded first, so that reset --purge removes exactly that (never what the site opened itself).
    const added = [...new Set([...(await addedOpenings(ctx)), ...missing])]
    const record = Buffer.from(`${JSON.stringify({ added }, null, 2)}\n`)
    steps.push({
      title: `firewalld lets through ${describe(openings(ctx.options.role))} (permanent, then reloaded)`,
      done: missing.length === 0,
      actions: [
        { kind: 'write', path: FIREWALLD_ADDED, mode: 0o644, sha256: Sha256.of(record), size: record.length, data: () => record },
        { kind: 'run', argv: ['firewall-cmd', '--permanent', ...missing.map((o) => option('add', o))] },
        { kind: 'run', argv: ['firewall-cmd', '--reload'] },
      ],
    })
  }
  return steps
}

async function addedOpenings(ctx: Context): Promise<string[]> {
  try {
    const added = (JSON.parse((await ctx.host.readText(FIREWALLD_ADDED)) ?? '{}') as { added?: unknown }).added
    return Array.isArray(added) ? added.filter((o): o is string => typeof o === 'string' && /^(\d+(-\d+)?\/(tcp|udp)|\d+)$/.test(o)) : []
  } catch {
    return []
  }
}

/** Before an install and in doctor: what SELinux and firewalld will do to the cluster, and what the installer does about it. */
export async function securityFindings(ctx: Context, live: boolean): Promise<Finding[]> {
  const { selinux, firewalld } = ctx.cluster.config
  const f: Finding[] = []
  const mode = await selinuxMode(ctx)
  const policy = mode === 'enforcing' && selinux === 'keep' && !(await ctx.host.exists(CONTAINER_SELINUX_POLICY))
  // Before an install, the bundle's OS packages for this node may bring it: the packages phase runs before anything starts a container.
  const brought = policy && !live && (await packagesForNode(ctx)).mine.some((p) => p.name === 'container-selinux')
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
    const missing = await closed(ctx)
    const add = `firewall-cmd --permanent ${missing.map((o) => option('add', o)).join(' ')} && firewall-cmd --reload`
    if (missing.length === 0) f.push({ level: 'ok', check: 'firewalld', found: `running; lets through ${describe(openings(ctx.options.role))}` })
    else if (firewalld === 'keep' || live)
      f.push({
        level: 'fail',
        check: 'firewalld',
        found: `firewalld is running and does not let through ${describe(missing)}${firewalld === 'keep' ? ' (cluster.yaml says firewalld: keep)' : ''}`,
        fix: `open them on every node: ${add}${firewalld === 'keep' ? ', or drop firewalld: keep so that kube-airgap opens them' : ''}`,
      })
    else
      f.push({
        level: 'warn',
        check: 'firewalld',
        found: `firewalld is running and does not let through ${describe(missing)}`,
        fix: 'the kernel phase opens them (permanent, then reloaded); firewalld: keep in cluster.yaml leaves firewalld to you',
      })
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
        { kind: 'write', path: SELINUX_CONFIG, mode: 0o644, sha256: Sha256.of(backup), size: backup.length, data: () => backup },
        { kind: 'remove', path: SELINUX_BACKUP },
        ...(enforcing ? [{ kind: 'run' as const, argv: ['setenforce', '1'] }] : []),
      ],
    })
  const added = await addedOpenings(ctx)
  const removes = added.map((o) => option('remove', o))
  // firewalld stopped since: its offline tool edits the same permanent configuration.
  const actions: Action[] = !added.length
    ? []
    : (await firewalldRunning(ctx))
      ? [
          { kind: 'run', argv: ['firewall-cmd', '--permanent', ...removes] },
          { kind: 'run', argv: ['firewall-cmd', '--reload'] },
        ]
      : [{ kind: 'run', argv: ['firewall-offline-cmd', ...removes] }]
  if (await host.exists(FIREWALLD_ADDED)) actions.push({ kind: 'remove', path: FIREWALLD_ADDED })
  if (actions.length) steps.push({ title: `the firewalld openings kube-airgap added removed (${describe(added)})`, done: false, actions })
  return steps
}
