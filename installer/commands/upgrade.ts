import { access, constants } from 'node:fs/promises'
import { resolve } from 'node:path'
import { KaError } from '../../bundle/errors.js'
import { archOf } from '../../bundle/platform.js'
import { printJson, type Io } from '../../bundle/report.js'
import { type Flags, requireSuperuser, resolveContext } from '../context.js'
import { BIN_DIR, KUBEADM_CONFIG, KUBEADM_JOIN_CONFIG, UPGRADE_STATE } from '../node-paths.js'
import { network } from '../phases/cluster.js'
import { cni } from '../phases/cni.js'
import { containerd } from '../phases/containerd.js'
import { images } from '../phases/images.js'
import { kernel } from '../phases/kernel.js'
import { packages } from '../phases/packages.js'
import type { Context, Phase } from '../plan.js'
import { clusterView, healthProblems, installedKubelet, installedNode } from '../cluster-view.js'
import { backupPhase, rollbackPhase, type UpgradePlan, upgradedPhase, upgradePhase } from '../phases/upgrade.js'
import { skewRefusal, stepRefusal } from '../skew.js'
import { readUpgradeState } from '../upgrade-state.js'
import { podsToEvict } from '../cluster-state.js'
import { stagedImagesId, stagePhase, unstagedNodes } from '../stage.js'
import { reporter } from './install.js'
import { compareVersions, parseVersion } from '../../bundle/version.js'

/** Whether the API server answers with `version` or newer (false when it does not answer). */
async function apiServerAt(ctx: Context, kubeconfig: string, version: string): Promise<boolean> {
  const view = await clusterView(ctx, kubeconfig).catch(() => undefined)
  return !!view && compareVersions(view.apiServer, parseVersion(version)!) >= 0
}

/** What --skip-phases may leave out of an upgrade: the install phases it runs again. */
const SKIPPABLE = ['packages', 'kernel', 'containerd', 'cni', 'images', 'network']

export interface UpgradeFlags extends Flags {
  rollback?: boolean
  drainFrom?: string
  stage?: boolean
}

/**
 * `./install upgrade [--rollback] [--drain-from KUBECONFIG]`: this node of a cluster made by
 * an older bundle, upgraded to this bundle's version (or put back), after the skew rules and
 * the cluster's health are checked and before anything changes.
 */
export async function upgradeCommand(flags: UpgradeFlags, io: Io): Promise<void> {
  requireSuperuser(flags, `upgrade${flags.rollback ? ' --rollback' : flags.stage ? ' --stage' : ''}`)
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
  if (
    drainFrom &&
    !(await access(drainFrom, constants.R_OK).then(
      () => true,
      () => false,
    ))
  )
    throw new KaError(
      'EUSAGE',
      `--drain-from ${flags.drainFrom}: cannot read it; give a kubeconfig that may drain nodes (a master's /etc/kubernetes/admin.conf)`,
    )
  const out = reporter(io, flags)
  const { ctx, report, record } = await resolveContext(flags, {
    role: 'worker',
    needAddress: false,
    record: true,
    phases: ['upgrade'],
    say: out.say,
    log: flags.rollback ? 'rollback' : flags.stage ? 'stage' : 'upgrade',
  })
  const node = await installedNode(ctx)
  if (!node)
    throw new KaError(
      'EUSAGE',
      'this node is not part of a cluster kube-airgap set up (no kubeadm config of ours beside a kubeconfig in /etc/kubernetes): install it with sudo ./install --role master|worker',
    )
  // Calico is applied from the first master only; the others take calicoctl (network phase).
  ctx.options.role = node.kind === 'first-master' ? 'master' : 'worker'
  ctx.cluster = {
    ...ctx.cluster,
    advertise: node.advertise ?? ctx.cluster.advertise,
    config: {
      ...ctx.cluster.config,
      nodeName: node.name,
      ...(node.podSubnet ? { podSubnet: node.podSubnet } : {}),
      ...(node.calicoAutodetection && !ctx.cluster.config.calicoAutodetection ? { calicoAutodetection: node.calicoAutodetection } : {}),
    },
  }
  const state = await readUpgradeState(ctx)
  const dryRun = ctx.options.dryRun
  const finish = (extra: Record<string, unknown>, next?: string) => {
    if (flags.json) return printJson(io, { ok: true, node: node.name, kind: node.kind, dryRun, steps: out.reports, warnings: out.warnings, ...extra })
    io.out(out.summary(dryRun))
    if (next && !dryRun) io.out(next)
  }

  if (flags.rollback) {
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
    await out.run(ctx, [rollbackPhase(state)], report, record)
    return finish(
      { from: state.to, to: state.from },
      `next: the node runs ${state.from} again; once it is Ready, let pods back on it if it was drained: kubectl uncordon ${node.name}\n`,
    )
  }

  const target = parseVersion(ctx.bundle.lock.kubernetes)!
  if (state && !state.finished && state.to !== target.text)
    throw new KaError(
      'EUSAGE',
      `an upgrade from ${state.from} to ${state.to} is under way on this node: finish it with the ${state.to} bundle, or undo it first: sudo ./install upgrade --rollback`,
    )
  const resuming = !!state && !state.finished
  const from = resuming ? parseVersion(state.from) : await installedKubelet(ctx)
  if (!from) throw new KaError('ESTEP', `cannot tell which Kubernetes this node runs: ${BIN_DIR}/kubelet --version gave no version`)
  const view = await clusterView(ctx, node.kubeconfig)
  const arch = { arch: ctx.facts.arch, bundleArch: archOf(ctx.bundle.platform) }
  if (flags.stage) {
    const refusal = stepRefusal({ from, target, ...arch })
    if (refusal) throw new KaError('EUSAGE', refusal)
    if (!view.nodes.some((n) => n.name === node.name))
      throw new KaError(
        'ESTEP',
        `the API server does not list this node by the name its kubeadm config gives (${JSON.stringify(node.name)}): it cannot be marked as staged; compare kubectl get nodes with ${node.kind === 'first-master' ? KUBEADM_CONFIG : KUBEADM_JOIN_CONFIG}`,
      )
    // --skip-phases images: the images were loaded another way, and the node is only marked.
    await out.run(ctx, [...[images].filter((p) => !skip.includes(p.name)), stagePhase(node, view)], report, record)
    return finish(
      { staged: stagedImagesId(ctx.bundle) },
      node.kind === 'first-master' ? undefined : `next: stage the other nodes the same way, then upgrade the first master (sudo ./install upgrade)\n`,
    )
  }
  const refusal = skewRefusal({ kind: node.kind, name: node.name, from, target, cluster: view, ...arch })
  if (refusal) throw new KaError('EUSAGE', refusal)
  const me = view.nodes.find((n) => n.name === node.name)
  const pending = compareVersions(from, target) < 0 || resuming
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
  if (unstaged.length) {
    const why = `node ${unstaged.map((n) => n.name).join(', ')} ${unstaged.length === 1 ? 'has' : 'have'} not staged this bundle's images: kubeadm upgrade apply rolls kube-proxy and CoreDNS (and a new Calico) onto every node, which cannot pull them; run sudo ./install upgrade --stage from this bundle on ${unstaged.length === 1 ? 'it' : 'each'} (ansible/upgrade.yml does it on every node first), then this again`
    if (!dryRun) throw new KaError('EUSAGE', why)
    out.say(`WARN  ${why}`)
  }
  const drain = `kubectl drain ${node.name} --ignore-daemonsets --delete-emptydir-data --timeout=${Math.round(ctx.cluster.waitMs / 1000)}s`
  const kubeletDone = !!me?.kubelet && compareVersions(me.kubelet, target) === 0
  // Cordoned is not drained: a cordoned worker that still runs pods is drained first all the same.
  const left = node.kind === 'worker' && !drainFrom && pending && !kubeletDone && me?.unschedulable ? await podsToEvict(ctx, node.kubeconfig, node.name) : []
  if (node.kind === 'worker' && !drainFrom && pending && !kubeletDone && (!me?.unschedulable || left?.length)) {
    const how = me?.unschedulable ? `is cordoned but still runs ${left!.join(', ')}` : 'holds no credentials to drain itself'
    const why = `a worker is drained before its kubelet is replaced, and this one ${how}: on a master run \`${drain}\`, then this again (and afterwards \`kubectl uncordon ${node.name}\`); or give --drain-from <kubeconfig> and this run does both`
    // A dry run shows the plan all the same (the fleet playbook reads it to decide on draining).
    if (!dryRun) throw new KaError('EUSAGE', why)
    out.say(`WARN  ${why}`)
  }
  const u: UpgradePlan = { node, from, target, view, ...(state ? { state } : {}), ...(drainFrom ? { drainFrom } : {}) }
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
  const installing = [packages, kernel, containerd, cni, images, network].filter((p) => !skip.includes(p.name))
  const has = (p: Phase) => installing.includes(p)
  await out.run(
    ctx,
    [skew, backupPhase(u), ...[packages, kernel, containerd, cni, images].filter(has), upgradePhase(u), ...[network].filter(has), upgradedPhase(u)],
    report,
    record,
  )
  const uncordon =
    node.kind === 'worker' && !drainFrom && pending ? `next: on a master, let pods back on this node: kubectl uncordon ${node.name}\n` : undefined
  const after = node.kind === 'first-master' ? 'next: upgrade the other masters one at a time (sudo ./install upgrade), then the workers\n' : undefined
  // cordoned: whether the node was cordoned before this upgrade (the fleet playbook leaves such a node cordoned).
  return finish({ from: from.text, to: target.text, cordoned: state?.cordoned ?? !!me?.unschedulable }, pending ? (uncordon ?? after) : undefined)
}
