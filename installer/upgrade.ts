import { createReadStream } from 'node:fs'
import yaml from 'js-yaml'
import { C } from '../bundle/components.js'
import { calicoNodeEnv } from './calico.js'
import { Sha256 } from '../bundle/digest.js'
import { KaError } from '../bundle/errors.js'
import { compareVersions, parseVersion, type Version } from '../bundle/version.js'
import { kubectl, STAGED_ANNOTATION } from './cluster-state.js'
import { unpinSteps } from './phases/images.js'
import { kubeadmAgrees, network } from './phases/cluster.js'
import { containerd } from './phases/containerd.js'
import { cni } from './phases/cni.js'
import { kernel } from './phases/kernel.js'
import { kubeletUnitSteps, kubernetes } from './phases/kubernetes.js'
import {
  BIN_DIR,
  CALICO_APPLIED,
  CONTAINERD_CONFIG,
  CONTAINERD_UNIT,
  KUBEADM_CONFIG,
  KUBEADM_JOIN_CONFIG,
  KUBECONFIG_ADMIN,
  KUBELET_KUBECONFIG,
  RUNC,
  STATIC_PODS,
  KUBEADM_BACKUPS,
  UPGRADE_BACKUP_DIR,
  UPGRADE_STATE,
} from './node-paths.js'
import { describeAction, type Action, type Context, type Phase, type Step } from './plan.js'
import { copyStep } from './steps.js'
import type { Finding } from './checks.js'

/**
 * Upgrades of a running cluster by kubeadm's rules, from the next bundle: one minor version
 * at a time, masters before workers, the node's replaced files backed up first so that a
 * failed upgrade can be rolled back, and every step resumable.
 */

/** How this node joined the cluster, as the installer left it. */
export type NodeKind = 'first-master' | 'control-plane' | 'worker'

export interface ClusterNode {
  name: string
  kubelet?: Version
  controlPlane: boolean
  ready: boolean
  unschedulable: boolean
  /** Which bundle's images the node holds, as `./install upgrade --stage` marked it (STAGED_ANNOTATION). */
  staged?: string
}

/** What the API server says: its version and the nodes. */
export interface ClusterView {
  apiServer: Version
  nodes: ClusterNode[]
}

/** What the installer left on this node: how it joined, under which name, and the first master's network settings. */
export interface InstalledNode {
  kind: NodeKind
  name: string
  /** The kubeconfig this node reads the cluster with. */
  kubeconfig: string
  podSubnet?: string
  advertise?: string
  /** Calico's IP autodetection as applied at install (the manifest it kept says), so that an upgrade keeps it. */
  calicoAutodetection?: string
}

/** The kubeadm config documents the installer wrote, as far as an upgrade reads them. */
interface KubeadmDoc {
  kind?: string
  nodeRegistration?: { name?: string }
  localAPIEndpoint?: { advertiseAddress?: string }
  networking?: { podSubnet?: string }
  controlPlane?: object
}
const docsOf = (text: string | undefined): KubeadmDoc[] => (text ? (yaml.loadAll(text) as KubeadmDoc[]).filter(Boolean) : [])

/** A node as `kubectl get nodes -o json` gives it, as far as an upgrade reads it. */
interface NodeJson {
  metadata?: { name?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
  spec?: { unschedulable?: boolean }
  status?: { nodeInfo?: { kubeletVersion?: string }; conditions?: { type?: string; status?: string }[] }
}

export async function installedNode(ctx: Context): Promise<InstalledNode | undefined> {
  const { host } = ctx
  if (!(await host.exists(KUBELET_KUBECONFIG)) && !(await host.exists(KUBECONFIG_ADMIN))) return undefined
  const init = docsOf(await host.readText(KUBEADM_CONFIG))
  const initDoc = init.find((d) => d.kind === 'InitConfiguration')
  if (initDoc && (await host.exists(KUBECONFIG_ADMIN))) {
    const cluster = init.find((d) => d.kind === 'ClusterConfiguration')
    const calico = calicoNodeEnv(await host.readText(CALICO_APPLIED))
    const autodetection = calico.IP_AUTODETECTION_METHOD
    const pool = calico.CALICO_IPV4POOL_CIDR
    return {
      kind: 'first-master',
      name: String(initDoc.nodeRegistration?.name),
      kubeconfig: KUBECONFIG_ADMIN,
      podSubnet: pool ?? cluster?.networking?.podSubnet,
      advertise: initDoc.localAPIEndpoint?.advertiseAddress,
      ...(autodetection ? { calicoAutodetection: autodetection } : {}),
    }
  }
  const joinDoc = docsOf(await host.readText(KUBEADM_JOIN_CONFIG)).find((d) => d.kind === 'JoinConfiguration')
  if (!joinDoc) return undefined
  const controlPlane = !!joinDoc.controlPlane
  return {
    kind: controlPlane ? 'control-plane' : 'worker',
    name: String(joinDoc.nodeRegistration?.name),
    kubeconfig: controlPlane ? KUBECONFIG_ADMIN : KUBELET_KUBECONFIG,
  }
}

/**
 * `./install --role` on a node of a cluster whose kubelet runs another Kubernetes than the
 * bundle: the install phases would swap the binaries under a running cluster, around kubeadm
 * (an older bundle downgrades the node, a newer one skips `kubeadm upgrade`). One line
 * instead, before anything changes. A node not in a cluster yet installs as usual.
 */
export async function otherVersionRefusal(ctx: Context): Promise<string | undefined> {
  if (!(await installedNode(ctx))) return undefined
  const running = await installedKubelet(ctx)
  const bundle = parseVersion(ctx.bundle.lock.kubernetes)!
  if (!running || compareVersions(running, bundle) === 0) return undefined
  return compareVersions(running, bundle) > 0
    ? `this node runs Kubernetes ${running.text}, newer than this bundle's ${bundle.text}: installing would put older binaries under its cluster; run ./install from the ${running.text} bundle (or a newer one)`
    : `this node runs Kubernetes ${running.text} in a cluster, older than this bundle's ${bundle.text}: upgrade it with sudo ./install upgrade from this bundle (--role would replace its binaries around kubeadm)`
}

/** The kubelet this node has installed (`kubelet --version`). */
export async function installedKubelet(ctx: Context): Promise<Version | undefined> {
  const r = await ctx.host.run([`${BIN_DIR}/kubelet`, '--version'], { changing: false })
  return r.code === 0 ? parseVersion(r.stdout) : undefined
}

/** The API server's version and the nodes, read with `kubeconfig` (a worker's own kubelet.conf may read both). */
export async function clusterView(ctx: Context, kubeconfig: string): Promise<ClusterView> {
  const fail = (what: string, r: { stderr: string; stdout: string }): never => {
    throw new KaError(
      'ESTEP',
      `cannot ask the API server for ${what} with ${kubeconfig}: ${(r.stderr || r.stdout).trim().split('\n').pop() || 'no answer'}; the cluster must be up for an upgrade (kubectl get nodes)`,
    )
  }
  const v = await ctx.host.run(kubectl(ctx, kubeconfig, 'version', '-o', 'json'), { changing: false })
  let apiServer: Version | undefined
  try {
    apiServer = parseVersion(JSON.parse(v.stdout).serverVersion?.gitVersion)
  } catch {}
  if (!apiServer) return fail('its version', v)
  const n = await ctx.host.run(kubectl(ctx, kubeconfig, 'get', 'nodes', '-o', 'json'), { changing: false })
  let items: NodeJson[] = []
  try {
    items = JSON.parse(n.stdout).items
  } catch {}
  if (n.code !== 0 || !Array.isArray(items)) return fail('the nodes', n)
  const nodes = items.map((i) => {
    const kubelet = parseVersion(i.status?.nodeInfo?.kubeletVersion)
    const staged = i.metadata?.annotations?.[STAGED_ANNOTATION]
    return {
      name: String(i.metadata?.name),
      ...(kubelet ? { kubelet } : {}),
      controlPlane: 'node-role.kubernetes.io/control-plane' in (i.metadata?.labels ?? {}),
      ready: (i.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
      unschedulable: !!i.spec?.unschedulable,
      ...(typeof staged === 'string' ? { staged } : {}),
    }
  })
  return { apiServer, nodes }
}

export interface SkewInput {
  kind: NodeKind
  name: string
  /** The node's version before this upgrade (its kubelet, or the upgrade in progress's `from`). */
  from: Version
  target: Version
  cluster: ClusterView
  /** The machine's architecture, and the bundle's. */
  arch: string
  bundleArch: string
}

const series = (v: Version) => `${v.major}.${v.minor}`

/**
 * Whether this bundle is the next step for this node at all: its platform, no downgrade, one
 * minor at a time. What --stage checks too; the rest of the skew rules are about the cluster.
 */
export function stepRefusal(s: Pick<SkewInput, 'from' | 'target' | 'arch' | 'bundleArch'>): string | undefined {
  const { from, target } = s
  if (s.arch !== s.bundleArch) return `this node is ${s.arch} and the bundle is for ${s.bundleArch}: use the linux/${s.arch} bundle of ${target.text}`
  if (compareVersions(target, from) < 0)
    return `this node runs ${from.text} and the bundle is ${target.text}: a downgrade is refused (kubeadm cannot downgrade a cluster); to undo a failed upgrade on this node: sudo ./install upgrade --rollback`
  if (target.major !== from.major || target.minor > from.minor + 1) {
    const between = Array.from({ length: Math.max(0, target.minor - from.minor - 1) }, (_, i) => `${from.major}.${from.minor + i + 1}.x`)
    return `${from.text} to ${target.text} skips ${between.length === 1 ? 'a minor version' : 'minor versions'}: kubeadm upgrades one minor at a time; upgrade the whole cluster with ${between.map((b) => `a ${b} bundle`).join(', then ')} first, then with this one`
  }
  return undefined
}

/**
 * The version-skew rules, checked before anything changes (Kubernetes' version-skew policy
 * and kubeadm's upgrade documentation): the bundle's platform; no downgrade; one minor at a
 * time; masters before workers; a kubelet never newer than the API server; no kubelet more
 * than three minors behind it. The refusal, or undefined when the upgrade may go ahead.
 */
export function skewRefusal(s: SkewInput): string | undefined {
  const { target, cluster } = s
  const step = stepRefusal(s)
  if (step) return step
  const behind = (n: ClusterNode) => !n.kubelet || compareVersions(n.kubelet, target) < 0
  const others = cluster.nodes.filter((n) => n.name !== s.name)
  if (s.kind === 'first-master') {
    if (target.minor > cluster.apiServer.minor + 1)
      return `the API server is at ${cluster.apiServer.text}: ${target.text} is more than one minor ahead of it; upgrade the cluster to ${cluster.apiServer.major}.${cluster.apiServer.minor + 1}.x first`
    const lagging = others.filter((n) => n.controlPlane && (!n.kubelet || n.kubelet.minor < target.minor - 1))
    if (lagging.length)
      return `master ${lagging.map((n) => `${n.name} (${n.kubelet?.text ?? 'version unknown'})`).join(', ')} would be more than one minor behind ${target.text}: finish upgrading every master to ${series(cluster.apiServer)} first (./install upgrade there)`
    const old = others.filter((n) => !n.kubelet || n.kubelet.minor < target.minor - 3)
    if (old.length)
      return `node ${old.map((n) => `${n.name} (${n.kubelet?.text ?? 'version unknown'})`).join(', ')} would be more than three minors behind the API server at ${target.text}: upgrade ${old.length === 1 ? 'it' : 'them'} first`
    return undefined
  }
  if (compareVersions(cluster.apiServer, target) < 0)
    return `the control plane is at ${cluster.apiServer.text}, older than this bundle's ${target.text}: masters go first; run sudo ./install upgrade on the first master, then here (a kubelet may never be newer than the API server)`
  if (s.kind === 'worker') {
    const masters = others.filter((n) => n.controlPlane && behind(n))
    if (masters.length)
      return `master ${masters.map((n) => `${n.name} (${n.kubelet?.text ?? 'version unknown'})`).join(', ')} is not at ${target.text} yet: masters go first; run sudo ./install upgrade there, then here`
  }
  return undefined
}

/** Cluster health before an upgrade starts: every node Ready, the control-plane pods running, etcd healthy. */
export async function healthProblems(ctx: Context, kubeconfig: string, view: ClusterView): Promise<string[]> {
  const out: string[] = []
  const notReady = view.nodes.filter((n) => !n.ready).map((n) => n.name)
  if (notReady.length) out.push(`node ${notReady.join(', ')} not Ready`)
  const pods = await ctx.host.run(kubectl(ctx, kubeconfig, 'get', 'pods', '-n', 'kube-system', '-l', 'tier=control-plane', '--no-headers'), {
    changing: false,
  })
  const down = pods.stdout.split('\n').filter((l) => l.trim() && !/\sRunning\s/.test(l))
  if (pods.code !== 0) out.push(`the control-plane pods cannot be listed (${(pods.stderr || pods.stdout).trim().split('\n').pop()})`)
  else if (down.length) out.push(`control-plane pods not running: ${down.map((l) => l.split(/\s+/)[0]).join(', ')}`)
  const etcd = await ctx.host.run(kubectl(ctx, kubeconfig, 'get', '--raw', '/readyz/etcd'), { changing: false })
  if (etcd.code !== 0 || etcd.stdout.trim() !== 'ok')
    out.push(`etcd is not healthy (/readyz/etcd: ${(etcd.stdout || etcd.stderr).trim().split('\n').pop() || 'no answer'})`)
  return out
}

/** What an upgrade in progress keeps on the node (UPGRADE_STATE): a rerun resumes it, --rollback undoes it. */
export interface UpgradeState {
  from: string
  to: string
  kind: NodeKind
  started: string
  /** The backup of what the upgrade replaces: UPGRADE_BACKUP_DIR/<from>. */
  backup: string
  /** kubeadm's backups of the control-plane manifests (KUBEADM_BACKUPS) from before this upgrade: the one it makes is the new one. */
  kubeadmBackups: string[]
  /** `kubeadm upgrade node` ran (it leaves no mark of its own on a worker). */
  upgradedNode?: boolean
  /** On the first master: `kubeadm upgrade apply` finished, so the cluster's kube-proxy, CoreDNS and kubeadm-config are at `to`. */
  applied?: boolean
  /** The node was cordoned before the upgrade: it stays cordoned after. */
  cordoned?: boolean
  /** This upgrade drained the node (a cordoned node is drained all the same). */
  drained?: boolean
  finished?: string
}

export async function readUpgradeState(ctx: Context): Promise<UpgradeState | undefined> {
  const text = await ctx.host.readText(UPGRADE_STATE)
  if (!text) return undefined
  try {
    const s = JSON.parse(text) as UpgradeState
    if (parseVersion(s.from) && parseVersion(s.to) && typeof s.backup === 'string' && s.backup.startsWith(`${UPGRADE_BACKUP_DIR}/`)) return s
  } catch {}
  throw new KaError('ESTEP', `${UPGRADE_STATE} is not one this installer wrote: look at it, remove it if no upgrade is under way, and run again`)
}

/** One file as the backup keeps it: its hash and mode, or that it was not there. */
interface BackedUp {
  path: string
  sha256?: string
  mode?: number
}

const stateWrite = (s: UpgradeState): Action => {
  const text = `${JSON.stringify(s, null, 2)}\n`
  return { kind: 'write', path: UPGRADE_STATE, mode: 0o600, sha256: Sha256.of(text), size: text.length, data: () => Buffer.from(text) }
}

/** Everything an upgrade may replace: the files the install phases would write now. */
async function filesToReplace(ctx: Context, phases: Phase[]): Promise<string[]> {
  const paths = new Set<string>()
  for (const p of phases)
    for (const s of await p.plan(ctx))
      if (!s.done && !s.on) for (const a of s.actions.flatMap(describeAction)) if (a.kind === 'write' && a.path) paths.add(a.path)
  return [...paths].sort()
}

/** The install phases an upgrade runs again with the new bundle (kubernetes' binaries go in the upgrade phase, in kubeadm's order). */
export const REPLACING_PHASES = [kernel, containerd, cni, kubernetes, network]

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
      actions.push({ kind: 'write', path: `${dir}/backup.json`, mode: 0o600, sha256: Sha256.of(list), size: list.length, data: () => Buffer.from(list) })
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
      const { host } = ctx
      const v = u.target.text
      const me = u.view.nodes.find((n) => n.name === u.node.name)
      const kubeletAtTarget = !!me?.kubelet && compareVersions(me.kubelet, u.target) === 0 && me.ready
      const steps: Step[] = [await copyStep(ctx, `kubeadm ${v} (${BIN_DIR}/kubeadm)`, `${BIN_DIR}/kubeadm`, C.kubeadm, 0o755), kubeadmAgrees(ctx)]
      const kubeadm = `${BIN_DIR}/kubeadm`
      // The state the backup phase wrote (none in a dry run, where it did not run).
      const state = (await readUpgradeState(ctx)) ?? u.state
      const mark = (change: Partial<UpgradeState>): Action[] => (state ? [stateWrite({ ...state, ...change })] : [])
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
            if (r.code !== 0)
              throw new KaError('ESTEP', `kubeadm upgrade plan ${v} refuses: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`)
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
      const drainWith = u.node.kind === 'worker' ? u.drainFrom : host.path(u.node.kubeconfig)
      const timeout = `${Math.round(ctx.cluster.waitMs / 1000)}s`
      if (drainWith)
        steps.push({
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
        })
      const binaries = [
        await copyStep(ctx, `kubelet ${v} (${BIN_DIR}/kubelet)`, `${BIN_DIR}/kubelet`, C.kubelet, 0o755),
        await copyStep(ctx, `kubectl ${v} (${BIN_DIR}/kubectl)`, `${BIN_DIR}/kubectl`, C.kubectl, 0o755),
      ]
      steps.push(...binaries, ...(await kubeletUnitSteps(ctx)))
      steps.push({
        title: `kubelet restarted on ${v}`,
        done: kubeletAtTarget && binaries.every((s) => s.done),
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
      if (drainWith && state?.cordoned) steps.push({ title: `node ${u.node.name} left cordoned, as it was before the upgrade`, done: true, actions: [] })
      else if (drainWith)
        steps.push({
          title: `node ${u.node.name} uncordoned`,
          done: kubeletAtTarget && !me?.unschedulable,
          actions: [{ kind: 'run', argv: [`${BIN_DIR}/kubectl`, '--kubeconfig', drainWith, 'uncordon', u.node.name] }],
        })
      return steps
    },
  }
}

/** Polls until the API server reports this node Ready with the new kubelet, or the time is up. */
async function waitForKubelet(ctx: Context, u: UpgradePlan): Promise<void> {
  const started = Date.now()
  let last = ''
  for (;;) {
    const me = (await clusterView(ctx, u.node.kubeconfig).catch(() => undefined))?.nodes.find((n) => n.name === u.node.name)
    if (me?.ready && me.kubelet && compareVersions(me.kubelet, u.target) === 0) return
    last = !me
      ? `the API server does not answer for node ${u.node.name}`
      : `node ${u.node.name} reports ${me.ready ? 'Ready' : 'NotReady'} on kubelet ${me.kubelet?.text ?? '(none)'}`
    ctx.live?.waiting(`waiting ${Math.round((Date.now() - started) / 1000)}/${Math.round(ctx.cluster.waitMs / 1000)} s: ${last}`)
    if (Date.now() - started > ctx.cluster.waitMs)
      throw new KaError(
        'ESTEP',
        `${last} after ${Math.round(ctx.cluster.waitMs / 1000)} s: the new kubelet does not come up; see journalctl -u kubelet; fix it and run sudo ./install upgrade again, or go back with sudo ./install upgrade --rollback`,
      )
    await new Promise((r) => setTimeout(r, 1000))
  }
}

/** The upgrade marked finished: a rerun changes nothing, and --rollback still can undo it. */
export function upgradedPhase(u: UpgradePlan): Phase {
  return {
    name: 'finish',
    summary: 'the images of earlier versions unpinned, and the upgrade marked finished on this node',
    async plan(ctx) {
      const s = (await readUpgradeState(ctx)) ?? u.state
      const done = !s || !!s.finished
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
        title: `containerd and the kubelet restarted on ${state.from}`,
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

/**
 * For doctor: each node's kubelet and the API server's version, with a kubelet newer than the
 * API server or more than three minors behind it flagged, an upgrade left half done, and
 * whether this bundle would upgrade the node.
 */
export async function versionFindings(ctx: Context): Promise<Finding[]> {
  const node = await installedNode(ctx)
  if (!node) return []
  const out: Finding[] = []
  const target = parseVersion(ctx.bundle.lock.kubernetes)!
  const mine = await installedKubelet(ctx)
  const state = await readUpgradeState(ctx).catch(() => undefined)
  if (state && !state.finished)
    out.push({
      level: 'warn',
      check: 'upgrade',
      found: `an upgrade from ${state.from} to ${state.to} is half done on this node (started ${state.started})`,
      fix: `finish it with the ${state.to} bundle: sudo ./install upgrade; or undo it: sudo ./install upgrade --rollback`,
    })
  let view: ClusterView
  try {
    view = await clusterView(ctx, node.kubeconfig)
  } catch (e) {
    out.push({ level: 'warn', check: 'versions', found: `this node's kubelet is ${mine?.text ?? 'unknown'}; ${(e as Error).message.split(';')[0]}` })
    return out
  }
  const api = view.apiServer
  const list = view.nodes.map((n) => `${n.name} ${n.kubelet?.text ?? '(unknown)'}`).join(', ')
  const newer = view.nodes.filter((n) => n.kubelet && compareVersions(n.kubelet, api) > 0)
  const behind = view.nodes.filter((n) => n.kubelet && (n.kubelet.major !== api.major || n.kubelet.minor < api.minor - 3))
  if (newer.length)
    out.push({
      level: 'fail',
      check: 'version skew',
      found: `kubelet newer than the API server (${api.text}) on ${newer.map((n) => `${n.name} (${n.kubelet!.text})`).join(', ')}`,
      fix: 'upgrade the control plane first (sudo ./install upgrade on the first master), or go back on that node (sudo ./install upgrade --rollback)',
    })
  else if (behind.length)
    out.push({
      level: 'fail',
      check: 'version skew',
      found: `kubelet more than three minors behind the API server (${api.text}) on ${behind.map((n) => `${n.name} (${n.kubelet!.text})`).join(', ')}`,
      fix: "upgrade those nodes one minor at a time (sudo ./install upgrade with each minor's bundle)",
    })
  else out.push({ level: 'ok', check: 'version skew', found: `API server ${api.text}; kubelets: ${list}` })
  if (mine && compareVersions(target, mine) > 0)
    out.push({
      level: 'warn',
      check: 'upgrade',
      found: `this node runs ${mine.text}, this bundle is ${target.text}`,
      fix: 'sudo ./install upgrade from this bundle: the first master, then the other masters one at a time, then the workers',
    })
  return out
}
