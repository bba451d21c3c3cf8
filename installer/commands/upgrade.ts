import { access, constants } from 'node:fs/promises'
import { resolve } from 'node:path'
import { KaError } from '../../bundle/errors.js'
import { misfits, parseCompatibility } from '../../bundle/compatibility.js'
import { COMPATIBILITY_FILE } from '../../bundle/layout.js'
import type { Bundle } from '../../bundle/open.js'
import { archOf } from '../../bundle/platform.js'
import { printJson, type Io } from '../../bundle/report.js'
import { type Flags, requireSuperuser, resolveContext } from '../context.js'
import { BIN_DIR, KUBEADM_CONFIG, KUBEADM_JOIN_CONFIG, UPGRADE_STATE } from '../node-paths.js'
import { network } from '../phases/network.js'
import { addons } from '../phases/addons.js'
import { cni } from '../phases/cni.js'
import { containerd } from '../phases/containerd.js'
import { images } from '../phases/images.js'
import { kernel } from '../phases/kernel.js'
import { packages } from '../phases/packages.js'
import type { Context, Phase } from '../plan.js'
import { type ClusterView, clusterView, healthProblems, type InstalledNode, installedKubelet } from '../cluster-view.js'
import { backupPhase, rollbackPhase, type UpgradePlan, upgradedPhase, upgradePhase } from '../phases/upgrade.js'
import { skewRefusal, stepRefusal } from '../skew.js'
import { readUpgradeState, type UpgradeState } from '../upgrade-state.js'
import { podsToEvict } from '../cluster-state.js'
import { stagedImagesId, stagePhase, unstagedNodes } from '../stage.js'
import { reporter } from './install.js'
import { compareVersions, parseVersion, type Version } from '../../bundle/version.js'

/** Whether the API server answers with `version` or newer (false when it does not answer). */
async function apiServerAt(ctx: Context, kubeconfig: string, version: string): Promise<boolean> {
  const view = await clusterView(ctx, kubeconfig).catch(() => undefined)
  return !!view && compareVersions(view.apiServer, parseVersion(version)!) >= 0
}

/** What --skip-phases may leave out of an upgrade: the install phases it runs again. */
const SKIPPABLE = ['packages', 'kernel', 'containerd', 'cni', 'images', 'network', 'addons']

export interface UpgradeFlags extends Flags {
  rollback?: boolean
  drainFrom?: string
  stage?: boolean
}

/** An upgrade run on this node: what every branch of the command reads. */
interface Run {
  ctx: Context
  node: InstalledNode
  flags: UpgradeFlags
  out: ReturnType<typeof reporter>
  /** The install phases --skip-phases leaves out. */
  skip: string[]
  drainFrom: string | undefined
  state: UpgradeState | undefined
  go(phases: Phase[]): Promise<void>
  finish(extra: Record<string, unknown>, next?: string): void
}

/**
 * `./install upgrade [--rollback] [--drain-from KUBECONFIG]`: this node of a cluster made by
 * an older bundle, upgraded to this bundle's version (or put back), after the skew rules and
 * the cluster's health are checked and before anything changes.
 */
export async function upgradeCommand(flags: UpgradeFlags, io: Io): Promise<void> {
  requireSuperuser(flags, `upgrade${flags.rollback ? ' --rollback' : flags.stage ? ' --stage' : ''}`)
  const { skip, drainFrom } = await checkFlags(flags)
  const out = reporter(io, flags)
  const { ctx, report, record, node } = await resolveContext(flags, {
    role: 'worker',
    needAddress: false,
    record: true,
    phases: ['upgrade'],
    installed: true,
    say: out.say,
    log: flags.rollback ? 'rollback' : flags.stage ? 'stage' : 'upgrade',
  })
  const dryRun = ctx.options.dryRun
  const run: Run = {
    ctx,
    node: node!,
    flags,
    out,
    skip,
    drainFrom,
    state: await readUpgradeState(ctx),
    go: (phases) => out.run(ctx, phases, report, record),
    finish(extra, next) {
      if (flags.json) return printJson(io, { ok: true, node: node!.name, kind: node!.kind, dryRun, steps: out.reports, warnings: out.warnings, ...extra })
      io.out(out.summary(dryRun))
      if (next && !dryRun) io.out(next)
    },
  }
  if (flags.rollback) return rollback(run)
  return upgrade(run)
}

/** The flags checked before anything is read: --stage alone, only install phases skipped, a readable --drain-from. */
async function checkFlags(flags: UpgradeFlags): Promise<{ skip: string[]; drainFrom: string | undefined }> {
  if (flags.stage && (flags.rollback || flags.drainFrom))
    throw new KaError(
      'EUSAGE',
      `--stage with ${flags.rollback ? '--rollback' : '--drain-from'}: --stage only imports the images and marks the node; run it alone`,
    )
  // The install phases an upgrade runs again may be skipped (images loaded another way, say); its own may not.
  const skip = (flags.skipPhases ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)
  const own = skip.filter((p) => !SKIPPABLE.includes(p))
  if (own.length || flags.phases)
    throw new KaError(
      'EUSAGE',
      `${own.length ? `--skip-phases ${own.join(',')}: ` : '--phases: '}upgrade runs its phases in order; of them only ${SKIPPABLE.join(', ')} may be skipped (--skip-phases)`,
    )
  const drainFrom = flags.drainFrom ? resolve(flags.drainFrom) : undefined
  const readable =
    drainFrom &&
    (await access(drainFrom, constants.R_OK).then(
      () => true,
      () => false,
    ))
  if (drainFrom && !readable)
    throw new KaError(
      'EUSAGE',
      `--drain-from ${flags.drainFrom}: cannot read it; give a kubeconfig that may drain nodes (a master's /etc/kubernetes/admin.conf)`,
    )
  return { skip, drainFrom }
}

/** --rollback: what the upgrade in progress replaced, put back, unless kubeadm upgrade apply already moved the cluster on. */
async function rollback({ ctx, node, state, go, finish }: Run): Promise<void> {
  if (!state) throw new KaError('EUSAGE', `no upgrade to roll back on this node (${UPGRADE_STATE} is not there)`)
  if (state.finished)
    throw new KaError(
      'EUSAGE',
      `the upgrade to ${state.to} finished on this node (${state.finished}): a finished upgrade is not rolled back, as kubeadm does not downgrade a cluster; the files it replaced stay in ${state.backup}`,
    )
  // kubeadm upgrade apply moved the cluster's own objects (kube-proxy, CoreDNS, kubeadm-config) on; the node's files alone cannot go back.
  const applied = state.kind === 'first-master' && (state.applied || (await apiServerAt(ctx, node.kubeconfig, state.to)))
  if (applied)
    throw new KaError(
      'EUSAGE',
      `kubeadm upgrade apply ${state.to} finished on this cluster: kube-proxy, CoreDNS and the kubeadm-config ConfigMap are at ${state.to}, and kubeadm cannot take them back; fix what failed (journalctl -u kubelet) and finish with sudo ./install upgrade; the files it replaced stay in ${state.backup}`,
    )
  await go([rollbackPhase(state)])
  finish(
    { from: state.to, to: state.from },
    `next: the node runs ${state.from} again; once it is Ready, let pods back on it if it was drained: kubectl uncordon ${node.name}\n`,
  )
}

/** The upgrade (or --stage): the versions and the cluster read, the refusals, then the phases. */
async function upgrade(run: Run): Promise<void> {
  const { ctx, node, state } = run
  const target = parseVersion(ctx.bundle.lock.kubernetes)!
  if (state && !state.finished && state.to !== target.text)
    throw new KaError(
      'EUSAGE',
      `an upgrade from ${state.from} to ${state.to} is under way on this node: finish it with the ${state.to} bundle, or undo it first: sudo ./install upgrade --rollback`,
    )
  const misfit = await bundleMisfit(ctx.bundle)
  if (misfit) throw new KaError('EUSAGE', misfit)
  const resuming = !!state && !state.finished
  const from = resuming ? parseVersion(state.from) : await installedKubelet(ctx)
  if (!from) throw new KaError('ESTEP', `cannot tell which Kubernetes this node runs: ${BIN_DIR}/kubelet --version gave no version`)
  const view = await clusterView(ctx, node.kubeconfig)
  const arch = { arch: ctx.facts.arch, bundleArch: archOf(ctx.bundle.platform) }
  if (run.flags.stage) return stage(run, view, stepRefusal({ from, target, ...arch }))
  const refusal = skewRefusal({ kind: node.kind, name: node.name, from, target, cluster: view, ...arch })
  if (refusal) throw new KaError('EUSAGE', refusal)
  const me = view.nodes.find((n) => n.name === node.name)
  const pending = compareVersions(from, target) < 0 || resuming
  await refusals(run, { view, target, me, pending, resuming })
  const u: UpgradePlan = { node, from, target, view, ...(state ? { state } : {}), ...(run.drainFrom ? { drainFrom: run.drainFrom } : {}) }
  const skew: Phase = {
    name: 'skew',
    summary: 'the version-skew rules and the cluster health, before anything changes',
    async plan() {
      const title = pending
        ? `${from.text} to ${target.text} on ${node.kind === 'first-master' ? 'the first master' : node.kind === 'control-plane' ? 'a master' : 'a worker'} ${node.name}: the skew rules hold (API server ${view.apiServer.text}, ${view.nodes.length} nodes${resuming ? ', resuming' : ', all Ready'})`
        : `node ${node.name} is at ${target.text} already`
      return [{ title, done: true, checkOnly: true, actions: [] }]
    },
  }
  const has = (p: Phase) => !run.skip.includes(p.name)
  await run.go([
    skew,
    backupPhase(u),
    ...[packages, kernel, containerd, cni, images].filter(has),
    upgradePhase(u),
    ...[network, addons].filter(has),
    upgradedPhase(u),
  ])
  const uncordon =
    node.kind === 'worker' && !run.drainFrom && pending ? `next: on a master, let pods back on this node: kubectl uncordon ${node.name}\n` : undefined
  const after = node.kind === 'first-master' ? 'next: upgrade the other masters one at a time (sudo ./install upgrade), then the workers\n' : undefined
  // cordoned: whether the node was cordoned before this upgrade (the fleet playbook leaves such a node cordoned).
  run.finish({ from: from.text, to: target.text, cordoned: state?.cordoned ?? !!me?.unschedulable }, pending ? (uncordon ?? after) : undefined)
}

/** --stage: this bundle's images imported and pinned, and the node marked; nothing else changes. */
async function stage({ ctx, node, skip, go, finish }: Run, view: ClusterView, refusal: string | undefined): Promise<void> {
  if (refusal) throw new KaError('EUSAGE', refusal)
  if (!view.nodes.some((n) => n.name === node.name))
    throw new KaError(
      'ESTEP',
      `the API server does not list this node by the name its kubeadm config gives (${JSON.stringify(node.name)}): it cannot be marked as staged; compare kubectl get nodes with ${node.kind === 'first-master' ? KUBEADM_CONFIG : KUBEADM_JOIN_CONFIG}`,
    )
  // --skip-phases images: the images were loaded another way, and the node is only marked.
  await go([...[images].filter((p) => !skip.includes(p.name)), stagePhase(node, view)])
  finish(
    { staged: stagedImagesId(ctx.bundle) },
    node.kind === 'first-master' ? undefined : `next: stage the other nodes the same way, then upgrade the first master (sudo ./install upgrade)\n`,
  )
}

/**
 * What stops an upgrade before anything changes: an unhealthy cluster, nodes that have not
 * staged the images kubeadm upgrade apply rolls onto them, a worker nobody drains. A dry run
 * warns of the last two and shows the plan all the same (the fleet playbook reads it).
 */
async function refusals(
  { ctx, node, drainFrom, out }: Run,
  {
    view,
    target,
    me,
    pending,
    resuming,
  }: { view: ClusterView; target: Version; me: ClusterView['nodes'][number] | undefined; pending: boolean; resuming: boolean },
): Promise<void> {
  const dryRun = ctx.options.dryRun
  const refuse = (why: string) => {
    if (!dryRun) throw new KaError('EUSAGE', why)
    out.say(`WARN  ${why}`)
  }
  if (pending && !resuming) {
    // A worker's kubelet.conf may read nodes, not kube-system's pods or etcd's health.
    const problems =
      node.kind === 'worker' ? view.nodes.filter((n) => !n.ready).map((n) => `node ${n.name} not Ready`) : await healthProblems(ctx, node.kubeconfig, view)
    if (problems.length)
      throw new KaError(
        'ESTEP',
        `the cluster is not healthy enough to upgrade, and nothing was changed: ${problems.join('; ')}; fix that first (kubectl get nodes; kubectl -n kube-system get pods)`,
      )
  }
  // kubeadm upgrade apply rolls kube-proxy and CoreDNS onto every node: each must hold their images first.
  const applied = compareVersions(view.apiServer, target) >= 0
  const unstaged = node.kind === 'first-master' && pending && !applied ? unstagedNodes(view, node.name, stagedImagesId(ctx.bundle), target) : []
  if (unstaged.length)
    refuse(
      `node ${unstaged.map((n) => n.name).join(', ')} ${unstaged.length === 1 ? 'has' : 'have'} not staged this bundle's images: kubeadm upgrade apply rolls kube-proxy and CoreDNS (and a new Calico) onto every node, which cannot pull them; run sudo ./install upgrade --stage from this bundle on ${unstaged.length === 1 ? 'it' : 'each'} (ansible/upgrade.yml does it on every node first), then this again`,
    )
  const drain = `kubectl drain ${node.name} --ignore-daemonsets --delete-emptydir-data --timeout=${Math.round(ctx.cluster.waitMs / 1000)}s`
  const kubeletDone = !!me?.kubelet && compareVersions(me.kubelet, target) === 0
  if (node.kind !== 'worker' || drainFrom || !pending || kubeletDone) return
  // Cordoned is not drained: a cordoned worker that still runs pods is drained first all the same.
  const left = me?.unschedulable ? await podsToEvict(ctx, node.kubeconfig, node.name) : []
  if (!me?.unschedulable || left?.length) {
    const how = me?.unschedulable ? `is cordoned but still runs ${left!.join(', ')}` : 'holds no credentials to drain itself'
    refuse(
      `a worker is drained before its kubelet is replaced, and this one ${how}: on a master run \`${drain}\`, then this again (and afterwards \`kubectl uncordon ${node.name}\`); or give --drain-from <kubeconfig> and this run does both`,
    )
  }
}

/**
 * The bundle's own versions against the compatibility table it carries: `bundle lock` refuses a
 * manifest that does not fit, but a lock made by hand, or before the table knew better, may
 * not. A bundle from before the table carries none and is not judged.
 */
export async function bundleMisfit(bundle: Pick<Bundle, 'lock' | 'read'>): Promise<string | undefined> {
  const text = await bundle.read(COMPATIBILITY_FILE).catch(() => undefined)
  if (text === undefined) return undefined
  const versions = new Map<string, string>([['kubernetes', bundle.lock.kubernetes], ...bundle.lock.files.map((f): [string, string] => [f.name, f.version])])
  const m = misfits(parseCompatibility(text, COMPATIBILITY_FILE), versions)
  if (!m.length) return undefined
  return `this bundle does not fit together: ${m[0]!.problem}; ${m[0]!.fix} in its manifest, then bundle lock and bundle build again (source: ${m[0]!.source})`
}
