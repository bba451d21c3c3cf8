import yaml from 'js-yaml'
import { KaError } from './errors.js'
import { MANIFESTS, type ManifestComponent } from './components.js'
import type { KubeadmRow } from './lock.js'
import { imageName, parseImageRef } from './reference.js'

export const KUBEADM_REPOSITORY = 'registry.k8s.io'

export interface RequiredImages {
  /** Every image kubeadm will ask for at this Kubernetes version. */
  kubeadm: string[]
  /** The pause image: kubelet's and containerd's sandbox image. */
  pause: string
}

export interface Wanted {
  image: string
  neededBy: string
}

/** A Kubernetes manifest the bundle carries (its CNI's, an add-on's), as text. */
export interface CarriedManifest {
  component: ManifestComponent
  text: string
}

/**
 * Every image a node of this lock will ask for, and who asks: kubeadm at the lock's exact
 * version (the pause image also as containerd's sandbox image), and every container of the
 * manifests it carries (the CNI's, each add-on's). The builder refuses a lock without them;
 * the installer checks containerd has them. One function, so the two sides never disagree.
 */
export function requiredImages(
  kubernetes: string,
  tableText: string,
  manifests: readonly CarriedManifest[] = [],
  row?: KubeadmRow,
): RequiredImages & { wants: Wanted[]; needed: string[] } {
  const k = kubeadmImages(kubernetes, tableText, row)
  const wants = [
    ...k.kubeadm.map((image) => ({ image, neededBy: image === k.pause ? `kubeadm ${kubernetes} and containerd's sandbox_image` : `kubeadm ${kubernetes}` })),
    ...manifests.flatMap((m) => manifestImages(m.text).map((image) => ({ image, neededBy: MANIFESTS[m.component] }))),
  ]
  return { ...k, wants, needed: [...new Set(wants.map((w) => w.image))] }
}

/**
 * Reads manifests/kubeadm-images.yaml for one exact Kubernetes version: kubeadm changes
 * etcd and CoreDNS in patch releases, so a row per minor would be wrong for some patches.
 */
export function kubeadmImages(kubernetes: string, tableText: string, known?: KubeadmRow): RequiredImages {
  const table = yaml.load(tableText) as Record<string, KubeadmRow>
  const row = known ?? table[kubernetes]
  if (!row) {
    throw new KaError(
      'ENOTPINNED',
      `Kubernetes ${kubernetes}: manifests/kubeadm-images.yaml has no row for it (it knows ${Object.keys(table).join(', ')}); run \`kubeadm config images list --kubernetes-version v${kubernetes}\` with that kubeadm and add its coredns, etcd and pause versions`,
    )
  }
  const r = KUBEADM_REPOSITORY
  const pause = `${r}/pause:${row.pause}`
  return {
    kubeadm: [
      ...['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kube-proxy'].map((n) => `${r}/${n}:v${kubernetes}`),
      `${r}/coredns/coredns:${row.coredns}`,
      pause,
      `${r}/etcd:${row.etcd}`,
    ],
    pause,
  }
}

/** kubeadm's images for a version as a table row: the list `kubeadm config images list` prints, read. */
export function kubeadmRow(kubernetes: string, list: readonly string[]): KubeadmRow | undefined {
  const tag = (repo: string) =>
    list
      .map((i) => imageName(parseImageRef(i)))
      .find((i) => i.startsWith(`${KUBEADM_REPOSITORY}/${repo}:`))
      ?.split(':')
      .pop()
  const row = { coredns: tag('coredns/coredns'), etcd: tag('etcd'), pause: tag('pause') }
  if (!row.coredns || !row.etcd || !row.pause) return undefined
  // Only the shape this table describes: the four control-plane images at the version itself, and these three.
  const expected = kubeadmImages(kubernetes, '{}', row as KubeadmRow).kubeadm
  const got = new Set(list.map((i) => imageName(parseImageRef(i))))
  return expected.every((e) => got.has(e)) && got.size === expected.length ? (row as KubeadmRow) : undefined
}

/** The table as the bundle carries it: the committed rows, with the lock's own row for its version (kubeadm's word wins). */
export function tableWith(tableText: string, kubernetes: string, row: KubeadmRow | undefined): string {
  if (!row) return tableText
  const line = `'${kubernetes}': { coredns: ${row.coredns}, etcd: ${row.etcd}, pause: '${row.pause}' }`
  const at = new RegExp(`^'${kubernetes.replaceAll('.', '\\.')}': .*$`, 'm')
  return at.test(tableText) ? tableText.replace(at, line) : `${tableText.replace(/\n*$/, '\n')}${line}\n`
}

/** Every `image:` of every container and init container in a (multi-document) manifest, canonical. */
export function manifestImages(manifestText: string): string[] {
  return [...new Set(manifestImageRefs(manifestText).map((x) => imageName(parseImageRef(x))))].sort()
}

/**
 * Every `image:` of a manifest's containers as written (a digest kept), in the order they
 * appear; with the pods a ConfigMap holds as text (local-path-provisioner starts its helper
 * pod from `helperPod.yaml` in its ConfigMap: its image is asked for as much as any other).
 */
export function manifestImageRefs(manifestText: string): string[] {
  const found: string[] = []
  const walk = (v: unknown, inContainers: boolean): void => {
    if (Array.isArray(v)) {
      for (const x of v) walk(x, inContainers)
      return
    }
    if (typeof v !== 'object' || v === null) return
    for (const [k, x] of Object.entries(v)) {
      if (k === 'image' && inContainers && typeof x === 'string') found.push(x)
      else walk(x, k === 'containers' || k === 'initContainers' || k === 'ephemeralContainers' ? true : inContainers && Array.isArray(v))
    }
  }
  for (const doc of yaml.loadAll(manifestText)) {
    walk(doc, false)
    for (const { pod } of embeddedPods(doc)) walk(pod, false)
  }
  return [...new Set(found)]
}

/** The pods a ConfigMap holds as YAML text (`kind: Pod`), by data key, parsed; text that is not one is left alone. */
export function embeddedPods(doc: unknown): { key: string; pod: Record<string, unknown> }[] {
  const d = doc as { kind?: unknown; data?: Record<string, unknown> } | null
  if (d?.kind !== 'ConfigMap' || typeof d.data !== 'object' || d.data === null) return []
  const out: { key: string; pod: Record<string, unknown> }[] = []
  for (const [key, text] of Object.entries(d.data)) {
    if (typeof text !== 'string' || !/^kind:\s*Pod\s*$/m.test(text)) continue
    try {
      const pod = yaml.load(text) as Record<string, unknown> | null
      if (pod?.kind === 'Pod') out.push({ key, pod })
    } catch {
      // not YAML: a script or a JSON of another shape
    }
  }
  return out
}

/** What the node will ask for that `have` lacks, and who asks. */
export function missingImages(have: Iterable<string>, wants: Wanted[]): Wanted[] {
  const h = new Set(have)
  const seen = new Set<string>()
  return wants.filter((w) => !h.has(w.image) && !seen.has(w.image) && seen.add(w.image))
}
