import yaml from 'js-yaml'
import { ADDONS, C, type Addon } from '../bundle/components.js'
import { embeddedPods } from '../bundle/closed-world.js'
import type { Sha256 } from '../bundle/digest.js'
import { imageName, parseImageRef } from '../bundle/reference.js'
import { didYouMean } from '../bundle/text.js'
import { bad } from './config-checks.js'
import { addonApplied, LOCAL_PATH_DATA } from './node-paths.js'
import type { Finding } from './checks.js'
import { admin } from './cluster-state.js'
import type { Context } from './plan.js'

/**
 * The add-ons as cluster.yaml chooses them (`addons:`): each the bundle carries is on unless
 * set to false, with its one choice. metrics-server's kubeletTLS is `insecure` by default
 * (`--kubelet-insecure-tls`, as KubeKey and kubeasz install it): kubeadm's kubelets serve a
 * self-signed certificate, and the alternative (serving certificates signed by the cluster CA)
 * leaves a certificate request to approve for every node and every yearly renewal. Doctor
 * warns while it is insecure.
 */
export interface AddonChoices {
  [C.localPath]: false | { path: string }
  [C.metricsServer]: false | { kubeletTLS: 'insecure' }
  [C.ingressNginx]: false | { expose: 'nodeport' | 'hostport' }
}

/** cluster.yaml's key for each add-on. */
export const ADDON_KEYS: Record<Addon, string> = {
  [C.localPath]: 'localPathProvisioner',
  [C.metricsServer]: 'metricsServer',
  [C.ingressNginx]: 'ingressNginx',
}

/** Reads `addons:` of cluster.yaml; every problem is one line naming the key. */
export function addonChoices(raw: unknown, source: string): AddonChoices {
  const o = (raw ?? {}) as Record<string, unknown>
  if (typeof o !== 'object' || Array.isArray(o)) bad(`${source}: addons must be a mapping`, 'e.g. addons: { ingressNginx: { expose: hostport } }')
  const keys = Object.values(ADDON_KEYS)
  for (const k of Object.keys(o))
    if (!keys.includes(k)) bad(`${source}: addons: unknown key ${JSON.stringify(k)}${didYouMean(k, keys)}`, `the add-ons are ${keys.join(', ')}`)
  const entry = (addon: Addon, fields: Record<string, (v: unknown) => boolean>, fix: string): false | Record<string, unknown> => {
    const key = ADDON_KEYS[addon]
    const v = o[key]
    if (v === false) return false
    if (v === undefined || v === null || v === true) return {}
    if (typeof v !== 'object' || Array.isArray(v)) return bad(`${source}: addons.${key} must be false or a mapping`, fix)
    for (const [f, x] of Object.entries(v as Record<string, unknown>)) {
      const ok = fields[f]
      if (!ok) bad(`${source}: addons.${key}: unknown key ${JSON.stringify(f)}${didYouMean(f, Object.keys(fields))}`, fix)
      if (!ok!(x)) bad(`${source}: addons.${key}.${f}: ${JSON.stringify(x)} is not allowed`, fix)
    }
    return v as Record<string, unknown>
  }
  const lp = entry(
    C.localPath,
    { path: (x) => typeof x === 'string' && /^\/[-\w./]*$/.test(x) && !x.split('/').includes('..') },
    'path: an absolute folder, e.g. /data/local-path',
  )
  const ms = entry(C.metricsServer, { kubeletTLS: (x) => x === 'insecure' }, 'kubeletTLS: insecure (docs/addons.md says why)')
  const ing = entry(C.ingressNginx, { expose: (x) => x === 'nodeport' || x === 'hostport' }, 'expose: nodeport (the default) or hostport')
  return {
    [C.localPath]: lp && { path: (lp.path as string | undefined) ?? LOCAL_PATH_DATA },
    [C.metricsServer]: ms && { kubeletTLS: 'insecure' },
    [C.ingressNginx]: ing && { expose: (ing.expose as 'nodeport' | 'hostport' | undefined) ?? 'nodeport' },
  }
}

/** The choices as cluster.yaml writes them (what addonChoices reads back): kept on the first master, so an upgrade applies the same. */
export const choicesText = (c: AddonChoices): string => `${JSON.stringify(Object.fromEntries(ADDONS.map((a) => [ADDON_KEYS[a], c[a]])), null, 2)}\n`

export const DEFAULT_ADDONS: AddonChoices = addonChoices(undefined, 'cluster.yaml')

interface Container {
  name?: string
  image?: string
  imagePullPolicy?: string
  args?: string[]
  ports?: { containerPort?: number; hostPort?: number; name?: string; protocol?: string }[]
}
export type Doc = Record<string, unknown> & { kind?: string; metadata?: { name?: string; namespace?: string; annotations?: Record<string, string> } }

const podSpecOf = (doc: Doc): { containers?: Container[]; initContainers?: Container[] } | undefined =>
  doc.kind === 'Pod'
    ? (doc.spec as { containers?: Container[] })
    : ((doc.spec as { template?: { spec?: { containers?: Container[] } } } | undefined)?.template?.spec ??
      (doc.spec as { jobTemplate?: { spec?: { template?: { spec?: { containers?: Container[] } } } } } | undefined)?.jobTemplate?.spec?.template?.spec)

export const containersOf = (doc: Doc): Container[] => {
  const spec = podSpecOf(doc)
  return spec ? [...(spec.containers ?? []), ...(spec.initContainers ?? [])] : []
}

/** Every container of a CNI's manifest never pulls: its image is in the bundle, under the tag it names, and a missing one should fail, not reach for the network. */
export function neverPull(doc: Doc): void {
  for (const c of containersOf(doc)) if (c.image) c.imagePullPolicy = 'Never'
}

/**
 * Every container image made the pinned one (`name:tag@sha256:...`, the digest the lock pins)
 * and pulled only if not present: the image is on every node, under that digest, so the
 * kubelet never asks a registry. An image the lock pins no digest for keeps its tag.
 */
function pinImages(doc: Doc, pins: ReadonlyMap<string, Sha256>): void {
  for (const c of containersOf(doc)) {
    if (!c.image) continue
    const name = imageName(parseImageRef(c.image))
    const digest = pins.get(name)
    c.image = digest ? `${name}@${digest.oci}` : name
    c.imagePullPolicy = 'IfNotPresent'
  }
}

/** What a manifest becomes for this cluster: the documents patched, and what changed, for the header. */
export interface Patched {
  text: string
  documents: number
  /** The first Deployment (the add-on's workload, whose readiness says the add-on runs). */
  workload?: { namespace: string; name: string }
}

/**
 * An add-on's upstream manifest made right for an air gap and this cluster's choices. Only
 * these fields change: every image to its pinned digest with pull policy IfNotPresent (a
 * ConfigMap's helper pod too); local-path-provisioner's StorageClass made the default and its
 * data folder set; metrics-server given --kubelet-insecure-tls; ingress-nginx's controller
 * given host ports 80 and 443 when exposed that way. Every document is kept, in order.
 */
export function patchAddon(addon: Addon, text: string, pins: ReadonlyMap<string, Sha256>, choices: AddonChoices): Patched {
  const docs = (yaml.loadAll(text) as Doc[]).filter((d) => d !== null && d !== undefined && typeof d === 'object')
  const changed = ['images pinned by digest, pulled only if not present']
  for (const doc of docs) {
    pinImages(doc, pins)
    if (doc.kind === 'ConfigMap') {
      const data = (doc as { data?: Record<string, string> }).data!
      for (const { key, pod } of embeddedPods(doc)) {
        pinImages(pod as Doc, pins)
        data[key] = yaml.dump(pod, { lineWidth: -1, noRefs: true })
      }
    }
  }
  const lp = choices[C.localPath]
  if (addon === C.localPath && lp) {
    for (const doc of docs) {
      if (doc.kind === 'StorageClass')
        doc.metadata = { ...doc.metadata, annotations: { ...doc.metadata?.annotations, 'storageclass.kubernetes.io/is-default-class': 'true' } }
      const data = (doc as { data?: Record<string, string> }).data
      if (doc.kind === 'ConfigMap' && data?.['config.json']) {
        const config = JSON.parse(data['config.json']) as { nodePathMap?: { node: string; paths: string[] }[] }
        config.nodePathMap = [{ node: 'DEFAULT_PATH_FOR_NON_LISTED_NODES', paths: [lp.path] }]
        data['config.json'] = JSON.stringify(config, null, 2)
      }
    }
    changed.push(`default StorageClass, volumes in ${lp.path}`)
  }
  if (addon === C.metricsServer && choices[C.metricsServer]) {
    for (const c of docs.filter((d) => d.kind === 'Deployment').flatMap(containersOf))
      if (c.name === 'metrics-server' && !c.args?.includes('--kubelet-insecure-tls')) c.args = [...(c.args ?? []), '--kubelet-insecure-tls']
    changed.push('--kubelet-insecure-tls')
  }
  const ing = choices[C.ingressNginx]
  if (addon === C.ingressNginx && ing && ing.expose === 'hostport') {
    for (const c of docs.filter((d) => d.kind === 'Deployment').flatMap(containersOf))
      for (const p of c.ports ?? []) if (p.name === 'http' || p.name === 'https') p.hostPort = p.containerPort!
    changed.push('host ports 80 and 443')
  }
  const workload = docs.find((d) => d.kind === 'Deployment')?.metadata
  return {
    text: `# ${addon}, patched by kube-airgap: ${changed.join('; ')}.\n${docs.map((d) => yaml.dump(d, { lineWidth: -1, noRefs: true })).join('---\n')}`,
    documents: docs.length,
    ...(workload?.name ? { workload: { namespace: workload.namespace ?? 'default', name: workload.name } } : {}),
  }
}

/** The lock's image pins by canonical name: what patchAddon rewrites images to. */
export const imagePins = (images: readonly { ref: string; digest?: Sha256 }[]): Map<string, Sha256> =>
  new Map(images.filter((i) => i.digest).map((i) => [imageName(parseImageRef(i.ref)), i.digest!]))

/** The add-ons this node's cluster runs: those the bundle carries and cluster.yaml leaves on, in ADDONS order. */
export const addonsOn = (carried: (a: Addon) => boolean, choices: AddonChoices): Addon[] => ADDONS.filter((a) => carried(a) && choices[a] !== false)

/** The ready replicas of an add-on's Deployment, as the API says now ('' when it has none, or is not there). */
export async function readyReplicas(ctx: Context, w: { namespace: string; name: string }): Promise<string> {
  const r = await ctx.host.run(admin(ctx, '-n', w.namespace, 'get', 'deployment', w.name, '-o', 'jsonpath={.status.readyReplicas}'), { changing: false })
  return r.code === 0 ? r.stdout.trim() : ''
}

/**
 * Doctor, on the first master: each add-on applied here, by its Deployment's ready replicas;
 * metrics-server's unverified kubelet connections as a warning with their reason.
 */
export async function addonFindings(ctx: Context): Promise<Finding[]> {
  const out: Finding[] = []
  for (const addon of ADDONS) {
    const text = await ctx.host.readText(addonApplied(addon))
    if (!text) continue
    const w = (yaml.loadAll(text) as Doc[]).find((d) => d?.kind === 'Deployment')?.metadata
    if (w?.name) {
      const ready = Number(await readyReplicas(ctx, { namespace: w.namespace ?? 'default', name: w.name }))
      out.push(
        ready > 0
          ? { level: 'ok', check: addon, found: `running (${ready} ready in ${w.namespace})` }
          : {
              level: 'warn',
              check: addon,
              found: `not running: deployment ${w.name} in ${w.namespace} has no ready replica (or the API does not answer)`,
              fix: `kubectl -n ${w.namespace} describe deployment ${w.name}; with one master and no worker, it waits for a worker (or taints: [] in cluster.yaml)`,
            },
      )
    }
    if (addon === C.metricsServer && text.includes('--kubelet-insecure-tls'))
      out.push({
        level: 'warn',
        check: 'metrics-server TLS',
        found: "metrics-server does not verify the kubelets' serving certificates (--kubelet-insecure-tls): kubeadm's kubelets serve self-signed ones",
        fix: 'accepted inside a closed network; docs/addons.md says what verifying them takes',
      })
  }
  return out
}
