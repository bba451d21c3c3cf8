import yaml from 'js-yaml'

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
    const spec = (doc.spec as { template?: { spec?: { containers?: Container[]; initContainers?: Container[] } } } | undefined)?.template?.spec
    if (!spec) continue
    for (const c of [...(spec.containers ?? []), ...(spec.initContainers ?? [])]) {
      if (c.image) c.imagePullPolicy = 'Never'
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
