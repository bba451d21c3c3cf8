import yaml from 'js-yaml'
import { calicoNodeEnv } from './calico.js'
import { KaError } from '../bundle/errors.js'
import { compareVersions, parseVersion, type Version } from '../bundle/version.js'
import { kubectl, STAGED_ANNOTATION } from './cluster-state.js'
import { flannelNetwork } from './flannel.js'
import { BIN_DIR, CALICO_APPLIED, FLANNEL_APPLIED, KUBEADM_CONFIG, KUBEADM_JOIN_CONFIG, KUBECONFIG_ADMIN, KUBELET_KUBECONFIG } from './node-paths.js'
import type { Context } from './plan.js'
import type { Finding } from './checks.js'
import { readUpgradeState } from './upgrade-state.js'

/**
 * What the cluster and this node say about an upgrade: how the node joined (as the installer
 * left it), which kubelet it runs, the API server's version and the nodes, the cluster's
 * health, and doctor's view of the versions.
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
    const pool = calico.CALICO_IPV4POOL_CIDR ?? flannelNetwork(await host.readText(FLANNEL_APPLIED))
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
