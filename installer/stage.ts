import { Sha256 } from '../bundle/digest.js'
import type { Bundle } from '../bundle/open.js'
import { compareVersions, type Version } from '../bundle/version.js'
import { kubectl, STAGED_ANNOTATION } from './cluster-state.js'
import type { Phase } from './plan.js'
import type { ClusterNode, ClusterView, InstalledNode } from './cluster-view.js'

/**
 * Staging: the next bundle's images on every node before the first master changes. Once the
 * control plane is upgraded, kubeadm rolls kube-proxy and CoreDNS across the whole cluster,
 * and a new Calico rolls calico-node; a node that has not got their images cannot pull them.
 * `./install upgrade --stage` imports and pins them on any node, and marks the node so; the
 * first master's upgrade waits until every node is marked (kubespray's "prepare nodes for
 * upgrade" does the same with a download play).
 */

/** The bundle's images by name: its Kubernetes version and a hash of every image's name and manifest digest. */
export function stagedImagesId(bundle: Bundle): string {
  const list = bundle.images
    .map((i) => `${i.name}@${i.manifest.oci}\n`)
    .sort()
    .join('')
  return `v${bundle.lock.kubernetes}-${Sha256.of(list).hex.slice(0, 16)}`
}

/** The node marked, with its own kubeconfig, as holding this bundle's images. */
export function stagePhase(node: InstalledNode, view: ClusterView): Phase {
  return {
    name: 'stage',
    summary: `this node marked as holding the bundle's images (the ${STAGED_ANNOTATION} annotation the first master's upgrade waits for)`,
    async plan(ctx) {
      const id = stagedImagesId(ctx.bundle)
      const me = view.nodes.find((n) => n.name === node.name)
      return [
        {
          title: `node ${node.name} marked as holding the images of Kubernetes v${ctx.bundle.lock.kubernetes} (${STAGED_ANNOTATION}=${id})`,
          done: me?.staged === id,
          actions: [{ kind: 'run', argv: kubectl(ctx, node.kubeconfig, 'annotate', '--overwrite', 'node', '--', node.name, `${STAGED_ANNOTATION}=${id}`) }],
        },
      ]
    },
  }
}

/** The nodes (this one aside) that have neither staged this bundle's images nor run its version already. */
export const unstagedNodes = (view: ClusterView, self: string, id: string, target: Version): ClusterNode[] =>
  view.nodes.filter((n) => n.name !== self && n.staged !== id && !(n.kubelet && compareVersions(n.kubelet, target) >= 0))
