import { compareVersions, type Version } from '../bundle/version.js'
import type { ClusterNode, ClusterView, NodeKind } from './cluster-view.js'

/** The version-skew rules of an upgrade: pure, over what the cluster view says. */

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
