import yaml from 'js-yaml'
import { neverPull, type Doc } from './addons.js'

/** Flannel's ConfigMap and its key for the network it hands out (kube-flannel.yml, Documentation/kube-flannel.yml upstream). */
const FLANNEL_CONFIG = 'kube-flannel-cfg'
const NET_CONF = 'net-conf.json'

/**
 * Flannel's manifest made right for this cluster, as Calico's is: the network of net-conf.json
 * set to the pod subnet (upstream's is 10.244.0.0/16 whatever kubeadm's podSubnet is; a
 * mismatch leaves every node's pod CIDR outside Flannel's network and flanneld exits), and no
 * container that may pull. Every document is kept, in order.
 */
export function patchFlannel(text: string, podSubnet: string): { text: string; documents: number } {
  const docs = (yaml.loadAll(text) as Doc[]).filter((d) => d !== null && d !== undefined && typeof d === 'object')
  for (const doc of docs) {
    neverPull(doc)
    const data = (doc as { data?: Record<string, string> }).data
    if (doc.kind === 'ConfigMap' && doc.metadata?.name === FLANNEL_CONFIG && data?.[NET_CONF]) {
      data[NET_CONF] = `${JSON.stringify({ ...(JSON.parse(data[NET_CONF]) as object), Network: podSubnet }, null, 2)}\n`
    }
  }
  const out = `# Flannel, patched by kube-airgap: Network = ${podSubnet}, imagePullPolicy Never.\n${docs.map((d) => yaml.dump(d, { lineWidth: -1, noRefs: true })).join('---\n')}`
  return { text: out, documents: docs.length }
}

/** The network of an applied Flannel manifest's net-conf.json (undefined when it names none). */
export function flannelNetwork(text: string | undefined): string | undefined {
  if (!text) return undefined
  const docs = (yaml.loadAll(text) as Doc[]).filter(Boolean)
  const conf = docs.find((d) => d.kind === 'ConfigMap' && d.metadata?.name === FLANNEL_CONFIG) as { data?: Record<string, string> } | undefined
  try {
    return (JSON.parse(conf?.data?.[NET_CONF] ?? '{}') as { Network?: string }).Network
  } catch {
    return undefined
  }
}
