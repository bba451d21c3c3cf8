import { poll } from '../poll.js'
import { createReadStream } from 'node:fs'
import { C } from '../../bundle/components.js'
import { Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import { compareVersions, type Version } from '../../bundle/version.js'
import { unpinSteps } from './images.js'
import { kubeadmAgrees } from './cluster.js'
import { network } from './network.js'
import { addons } from './addons.js'
import { containerd } from './containerd.js'
import { cni } from './cni.js'
import { kernel } from './kernel.js'
import { kubeletUnitSteps, kubernetes } from './kubernetes.js'
import { BIN_DIR, CONTAINERD_CONFIG, CONTAINERD_UNIT, RUNC, STATIC_PODS, KUBEADM_BACKUPS, UPGRADE_BACKUP_DIR, UPGRADE_STATE } from '../node-paths.js'
import { describeAction, type Action, type Context, type Phase, type Step, writeAction } from '../plan.js'
import { copyStep } from '../steps.js'
import { type ClusterView, clusterView, type InstalledNode } from '../cluster-view.js'
import { type BackedUp, readUpgradeState, stateWrite, type UpgradeState } from '../upgrade-state.js'

/**
 * Upgrades of a running cluster by kubeadm's rules, from the next bundle: one minor version
 * at a time, masters before workers, the node's replaced files backed up first so that a
 * failed upgrade can be rolled back, and every step resumable.
 */

/** Everything an upgrade may replace: the files the install phases would write now. */
async function filesToReplace(ctx: Context, phases: Phase[]): Promise<string[]> {
  const paths = new Set<string>()
  for (const p of phases)
    for (const s of await p.plan(ctx))
      if (!s.done && !s.on) for (const a of s.actions.flatMap(describeAction)) if (a.kind === 'write' && a.path) paths.add(a.path)
  return [...paths].sort()
}

/** The install phases an upgrade runs again with the new bundle (kubernetes' binaries go in the upgrade phase, in kubeadm's order). */
export const REPLACING_PHASES = [kernel, containerd, cni, kubernetes, network, addons]

export interface UpgradePlan {
  node: InstalledNode
  from: Version
  target: Version
  state?: UpgradeState
  view: ClusterView
  /** A worker drains itself with this kubeconfig (the operator's); without it, it must be drained from a master first. */
  drainFrom?: string
}

/**
 * Before anything changes: the node's current files that the upgrade will replace, copied to
 * UPGRADE_BACKUP_DIR/<from>/files (each checked as written), their list, and the state that
 * makes a rerun resume and --rollback possible. Kept as it is when the upgrade resumes.
 */
export function backupPhase(u: UpgradePlan): Phase {
  return {
    name: 'backup',
    summary: `the files the upgrade replaces, copied to ${UPGRADE_BACKUP_DIR}/<version>`,
    async plan(ctx) {
      const dir = `${UPGRADE_BACKUP_DIR}/${u.from.text}`
      if (u.state && !u.state.finished && u.state.to === u.target.text)
        return [{ title: `backup of ${u.state.from} in ${u.state.backup} (the upgrade started ${u.state.started})`, done: true, actions: [] }]
      const paths = await filesToReplace(ctx, REPLACING_PHASES)
      if (paths.length === 0 && compareVersions(u.from, u.target) === 0)
        return [{ title: `nothing to back up: the node is at ${u.target.text}`, done: true, actions: [] }]
      const actions: Action[] = []
      const files: BackedUp[] = []
      for (const path of paths) {
        const now = await ctx.host.fileState(path)
        if (!now) {
          files.push({ path })
          continue
        }
        files.push({ path, sha256: now.sha256.oci, mode: now.mode })
        actions.push({
          kind: 'write',
          path: `${dir}/files${path}`,
          mode: now.mode,
          sha256: now.sha256,
          size: 0,
          data: () => createReadStream(ctx.host.path(path)),
        })
      }
      const list = `${JSON.stringify({ from: u.from.text, to: u.target.text, files }, null, 2)}\n`
      actions.push(writeAction(`${dir}/backup.json`, list, 0o600))
      actions.push(
        stateWrite({
          from: u.from.text,
          to: u.target.text,
          kind: u.node.kind,
          started: new Date(ctx.facts.now()).toISOString(),
          backup: dir,
          kubeadmBackups: await kubeadmBackups(ctx),
          cordoned: !!u.view.nodes.find((n) => n.name === u.node.name)?.unschedulable,
        }),
      )
      return [{ title: `${files.filter((f) => f.sha256).length} files the upgrade replaces, backed up in ${dir}`, done: false, actions }]
    },
  }
}

/**
 * kubeadm's order for one node: the new kubeadm; on the first master `kubeadm upgrade plan`
 * and `apply`, on the others `kubeadm upgrade node`; the node drained; the new kubelet and
 * kubectl; the kubelet restarted and seen Ready at the new version; the node uncordoned.
 */
export function upgradePhase(u: UpgradePlan): Phase {
  return {
    name: 'upgrade',
    summary: 'kubeadm upgrade apply (first master) or node (the others), then drain, the new kubelet and kubectl, restart, uncordon',
    async plan(ctx) {
      const v = u.target.text
      const me = u.view.nodes.find((n) => n.name === u.node.name)
      // The state the backup phase wrote (none in a dry run, where it did not run).
      const state = (await readUpgradeState(ctx)) ?? u.state
      const n: NodeUpgrade = {
        ctx,
        u,
        me,
        state,
        kubeletAtTarget: !!me?.kubelet && compareVersions(me.kubelet, u.target) === 0 && me.ready,
        mark: (change) => (state ? [stateWrite({ ...state, ...change })] : []),
        drainWith: u.node.kind === 'worker' ? u.drainFrom : ctx.host.path(u.node.kubeconfig),
      }
      const steps: Step[] = [await copyStep(ctx, `kubeadm ${v} (${BIN_DIR}/kubeadm)`, `${BIN_DIR}/kubeadm`, C.kubeadm, 0o755), kubeadmAgrees(ctx)]
      steps.push(...kubeadmUpgradeSteps(n), ...drainStep(n))
      const binaries = [
        await copyStep(ctx, `kubelet ${v} (${BIN_DIR}/kubelet)`, `${BIN_DIR}/kubelet`, C.kubelet, 0o755),
        await copyStep(ctx, `kubectl ${v} (${BIN_DIR}/kubectl)`, `${BIN_DIR}/kubectl`, C.kubectl, 0o755),
      ]
      steps.push(...binaries, ...(await kubeletUnitSteps(ctx)))
      steps.push({
        title: `kubelet restarted on ${v}`,
        done: n.kubeletAtTarget && binaries.every((s) => s.done),
        actions: [
          { kind: 'run', argv: ['systemctl', 'daemon-reload'] },
          { kind: 'run', argv: ['systemctl', 'restart', 'kubelet'] },
        ],
      })
      steps.push({
        title: `node ${u.node.name} Ready on kubelet ${v}`,
        done: true,
        checkOnly: true,
        actions: [],
        check: () => waitForKubelet(ctx, u),
      })
      return [...steps, ...uncordonStep(n)]
    },
  }
}

/** What the steps of one node's upgrade read. */
interface NodeUpgrade {
  ctx: Context
  u: UpgradePlan
  /** This node as the API server lists it. */
  me: ClusterView['nodes'][number] | undefined
  state: UpgradeState | undefined
  kubeletAtTarget: boolean
  /** The state's record of a step done, as an action of that step (none in a dry run). */
  mark(change: Partial<UpgradeState>): Action[]
  /** The kubeconfig that drains and uncordons this node; none: a worker drained from a master. */
  drainWith: string | undefined
}

/** `kubeadm upgrade plan` and `apply` on the first master, `kubeadm upgrade node` on the others. */
function kubeadmUpgradeSteps({ ctx, u, state, kubeletAtTarget, mark }: NodeUpgrade): Step[] {
  const { host } = ctx
  const v = u.target.text
  const kubeadm = `${BIN_DIR}/kubeadm`
  const steps: Step[] = []
  if (u.node.kind === 'first-master') {
    const applied = compareVersions(u.view.apiServer, u.target) >= 0
    steps.push({
      title: `kubeadm upgrade plan ${v}`,
      done: true,
      checkOnly: true,
      actions: [],
      check: async () => {
        if (applied) return
        const r = await host.run([kubeadm, 'upgrade', 'plan', v], { changing: false })
        if (r.code !== 0) throw new KaError('ESTEP', `kubeadm upgrade plan ${v} refuses: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`)
      },
    })
    steps.push({
      title: `control plane upgraded to ${v} (kubeadm upgrade apply; images from the bundle, never pulled)`,
      done: applied,
      actions: [{ kind: 'run', argv: [kubeadm, 'upgrade', 'apply', v, '--yes'], stream: true }, ...mark({ applied: true })],
    })
  } else {
    steps.push({
      title: `this node's ${u.node.kind === 'worker' ? 'kubelet configuration' : 'control plane and kubelet configuration'} upgraded (kubeadm upgrade node)`,
      done: !!state?.upgradedNode || kubeletAtTarget,
      actions: [{ kind: 'run', argv: [kubeadm, 'upgrade', 'node'], stream: true }, ...mark({ upgradedNode: true })],
    })
  }
  return steps
}

/** The node drained (cordoned is not drained: a node the operator cordoned still has its pods). */
function drainStep({ ctx, u, state, kubeletAtTarget, mark, drainWith }: NodeUpgrade): Step[] {
  const timeout = `${Math.round(ctx.cluster.waitMs / 1000)}s`
  if (!drainWith) return []
  return [
    {
      // Cordoned is not drained: a node the operator cordoned still has its pods.
      title: `node ${u.node.name} drained (kubectl drain, at most ${timeout})`,
      done: kubeletAtTarget || !!state?.drained,
      actions: [
        {
          kind: 'run',
          argv: [
            `${BIN_DIR}/kubectl`,
            '--kubeconfig',
            drainWith,
            'drain',
            u.node.name,
            '--ignore-daemonsets',
            '--delete-emptydir-data',
            `--timeout=${timeout}`,
          ],
        },
        ...mark({ drained: true }),
      ],
    },
  ]
}

/** The node uncordoned, unless it was cordoned before the upgrade. */
function uncordonStep({ u, me, state, kubeletAtTarget, drainWith }: NodeUpgrade): Step[] {
  if (!drainWith) return []
  if (state?.cordoned) return [{ title: `node ${u.node.name} left cordoned, as it was before the upgrade`, done: true, actions: [] }]
  return [
    {
      title: `node ${u.node.name} uncordoned`,
      done: kubeletAtTarget && !me?.unschedulable,
      actions: [{ kind: 'run', argv: [`${BIN_DIR}/kubectl`, '--kubeconfig', drainWith, 'uncordon', u.node.name] }],
    },
  ]
}

/** Polls until the API server reports this node Ready with the new kubelet, or the time is up. */
async function waitForKubelet(ctx: Context, u: UpgradePlan): Promise<void> {
  await poll(
    ctx,
    1000,
    async () => {
      const me = (await clusterView(ctx, u.node.kubeconfig).catch(() => undefined))?.nodes.find((n) => n.name === u.node.name)
      if (me?.ready && me.kubelet && compareVersions(me.kubelet, u.target) === 0) return undefined
      return !me
        ? `the API server does not answer for node ${u.node.name}`
        : `node ${u.node.name} reports ${me.ready ? 'Ready' : 'NotReady'} on kubelet ${me.kubelet?.text ?? '(none)'}`
    },
    (last, s) =>
      `${last} after ${s} s: the new kubelet does not come up; see journalctl -u kubelet; fix it and run sudo ./install upgrade again, or go back with sudo ./install upgrade --rollback`,
  )
}

/** The upgrade marked finished: a rerun changes nothing, and --rollback still can undo it. */
export function upgradedPhase(u: UpgradePlan): Phase {
  return {
    name: 'finish',
    summary: 'the images of earlier versions unpinned, and the upgrade marked finished on this node',
    async plan(ctx) {
      const s = (await readUpgradeState(ctx)) ?? u.state
      // No state: a dry run (the backup phase wrote none) or a node at the target already.
      const done = s ? !!s.finished : compareVersions(u.from, u.target) >= 0
      const write = s ? stateWrite({ ...s, finished: new Date(ctx.facts.now()).toISOString() }) : undefined
      return [
        ...(done ? [] : await unpinSteps(ctx)),
        {
          title: `node ${u.node.name} upgraded to ${u.target.text}`,
          done,
          actions: write ? [write] : [],
        },
      ]
    },
  }
}

/**
 * `./install upgrade --rollback`: every file the backup holds written back (checked against
 * the hash the backup recorded), the files the upgrade added removed, the control-plane
 * manifests from kubeadm's own backup of this upgrade, and containerd and the kubelet
 * restarted on them. The backup is kept; the upgrade state goes.
 */
export function rollbackPhase(state: UpgradeState): Phase {
  return {
    name: 'rollback',
    summary: `what the upgrade replaced, put back from ${UPGRADE_BACKUP_DIR}/<version>`,
    async plan(ctx) {
      const { host } = ctx
      const listText = await host.readText(`${state.backup}/backup.json`)
      let files: BackedUp[] = []
      try {
        files = (JSON.parse(listText ?? '') as { files: BackedUp[] }).files
      } catch {}
      if (!Array.isArray(files) || files.length === 0)
        throw new KaError('ESTEP', `${state.backup}/backup.json is missing or empty: nothing can be put back; restore from your own backup`)
      const steps: Step[] = []
      let containerdFiles = false
      for (const f of files) {
        if (!f.path.startsWith('/') || f.path.includes('..'))
          throw new KaError('ESTEP', `${state.backup}/backup.json names ${JSON.stringify(f.path)}: not a node path`)
        const now = await host.fileState(f.path)
        if (!f.sha256) {
          steps.push({ title: `${f.path} removed (the upgrade added it)`, done: !now, actions: [{ kind: 'remove', path: f.path }] })
          continue
        }
        let sha256: Sha256
        try {
          sha256 = Sha256.fromOci(f.sha256)
        } catch {
          throw new KaError('ESTEP', `${state.backup}/backup.json: ${f.path} has no sha256 digest: the backup list is damaged; restore from your own backup`)
        }
        const done = !!now && now.sha256.equals(sha256) && now.mode === f.mode
        if (!done && [CONTAINERD_CONFIG, CONTAINERD_UNIT, RUNC].includes(f.path)) containerdFiles = true
        if (!done && /\/(containerd[^/]*|ctr)$/.test(f.path)) containerdFiles = true
        const from = `${state.backup}/files${f.path}`
        steps.push({
          title: `${f.path} as it was on ${state.from}`,
          done,
          actions: [{ kind: 'write', path: f.path, mode: f.mode ?? 0o644, sha256, size: 0, data: () => createReadStream(host.path(from)) }],
        })
      }
      steps.push(...(await staticPodSteps(ctx, state)))
      const changed = steps.some((s) => !s.done)
      steps.push({
        title: `${containerdFiles ? 'containerd and the kubelet' : 'the kubelet'} restarted on ${state.from}`,
        done: !changed,
        actions: [
          { kind: 'run', argv: ['systemctl', 'daemon-reload'] },
          ...(containerdFiles ? [{ kind: 'run' as const, argv: ['systemctl', 'restart', 'containerd'] }] : []),
          { kind: 'run', argv: ['systemctl', 'restart', 'kubelet'] },
        ],
      })
      steps.push({
        title: `the upgrade to ${state.to} forgotten (${UPGRADE_STATE} removed; the backup kept)`,
        done: false,
        actions: [{ kind: 'remove', path: UPGRADE_STATE }],
      })
      return steps
    },
  }
}

const kubeadmBackups = async (ctx: Context): Promise<string[]> =>
  (await ctx.host.list(KUBEADM_BACKUPS)).filter((d) => /^kubeadm-backup-manifests-/.test(d)).sort()

/** The control-plane manifests kubeadm backed up during this upgrade (the kubeadm-backup-manifests-<time> made since it started), put back. */
async function staticPodSteps(ctx: Context, state: UpgradeState): Promise<Step[]> {
  if (state.kind === 'worker') return []
  const before = new Set(state.kubeadmBackups ?? [])
  const dir = (await kubeadmBackups(ctx)).find((d) => !before.has(d))
  if (!dir) return []
  const steps: Step[] = []
  for (const f of (await ctx.host.list(`${KUBEADM_BACKUPS}/${dir}`)).filter((f) => f.endsWith('.yaml')).sort()) {
    const src = `${KUBEADM_BACKUPS}/${dir}/${f}`
    const want = await ctx.host.fileState(src)
    if (!want) continue
    const now = await ctx.host.fileState(`${STATIC_PODS}/${f}`)
    steps.push({
      title: `${STATIC_PODS}/${f} from kubeadm's backup (${dir})`,
      done: !!now && now.sha256.equals(want.sha256),
      actions: [
        { kind: 'write', path: `${STATIC_PODS}/${f}`, mode: want.mode, sha256: want.sha256, size: 0, data: () => createReadStream(ctx.host.path(src)) },
      ],
    })
  }
  return steps
}
