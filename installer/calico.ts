import yaml from 'js-yaml'
import { containersOf, neverPull } from './addons.js'

interface Container {
  name?: string
  image?: string
  imagePullPolicy?: string
  env?: { name: string; value?: string }[]
}

/**
 * Calico's manifest made right for this cluster: CALICO_IPV4POOL_CIDR set to the pod subnet
 * (upstream leaves it commented out, and Calico then uses 192.168.0.0/16 whatever kubeadm's
 * podSubnet is), IP_AUTODETECTION_METHOD when given, and no container that may pull
 * (imagePullPolicy Never: every image is in the bundle; a missing one should fail, not
 * reach for the network). Every document is kept, in order.
 */
export function patchCalico(text: string, podSubnet: string, autodetection?: string): { text: string; documents: number } {
  const docs = yaml.loadAll(text).filter((d) => d !== null && d !== undefined) as Record<string, unknown>[]
  for (const doc of docs) {
    neverPull(doc)
    for (const c of containersOf(doc) as Container[]) {
      if (doc.kind === 'DaemonSet' && c.name === 'calico-node') {
        c.env = setEnv(c.env ?? [], 'CALICO_IPV4POOL_CIDR', podSubnet)
        if (autodetection) c.env = setEnv(c.env, 'IP_AUTODETECTION_METHOD', autodetection)
      }
    }
  }
  const out = `# Calico, patched by kube-airgap: CALICO_IPV4POOL_CIDR = ${podSubnet}${autodetection ? `, IP_AUTODETECTION_METHOD = ${autodetection}` : ''}, imagePullPolicy Never.\n${docs.map((d) => yaml.dump(d, { lineWidth: -1, noRefs: true })).join('---\n')}`
  return { text: out, documents: docs.length }
}

function setEnv(env: { name: string; value?: string }[], name: string, value: string): { name: string; value?: string }[] {
  const i = env.findIndex((e) => e.name === name)
  if (i >= 0) return env.map((e, k) => (k === i ? { name, value } : e))
  return [...env, { name, value }]
}

interface CalicoDoc {
  kind?: string
  metadata?: { name?: string }
  data?: Record<string, unknown>
  spec?: { template?: { spec?: { containers?: Container[] } } }
}
const docsOf = (text: string | undefined): CalicoDoc[] => (text ? (yaml.loadAll(text) as CalicoDoc[]).filter(Boolean) : [])

/** calico-node's environment in a Calico manifest (the pool, encapsulation and IP autodetection it sets). */
export function calicoNodeEnv(text: string | undefined): Record<string, string> {
  const node = docsOf(text).find((d) => d.kind === 'DaemonSet' && d.metadata?.name === 'calico-node')
  const env = node?.spec?.template?.spec?.containers?.find((c) => c.name === 'calico-node')?.env ?? []
  return Object.fromEntries(env.filter((e) => typeof e.value === 'string').map((e) => [e.name, e.value!]))
}

/**
 * What Calico's manifest puts on the wire between nodes: IP-in-IP (protocol 4) and VXLAN
 * (UDP 4789) when the pool's mode is Always or CrossSubnet (calico-node's default is Never),
 * BGP (TCP 179) when the backend is bird (the calico-config ConfigMap's calico_backend).
 * A bundle without Calico's manifest: upstream's defaults, IP-in-IP over BGP.
 */
export function calicoWire(text: string | undefined): { ipip: boolean; vxlan: boolean; bgp: boolean } {
  if (!text) return { ipip: true, vxlan: false, bgp: true }
  const env = calicoNodeEnv(text)
  const on = (mode: string | undefined) => mode === 'Always' || mode === 'CrossSubnet'
  const config = docsOf(text).find((d) => d.kind === 'ConfigMap' && d.metadata?.name === 'calico-config')
  const backend = config?.data?.calico_backend
  return { ipip: on(env.CALICO_IPV4POOL_IPIP), vxlan: on(env.CALICO_IPV4POOL_VXLAN), bgp: backend === undefined || backend === 'bird' }
}
