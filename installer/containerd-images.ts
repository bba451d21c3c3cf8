import { CTR, K8S_NAMESPACE } from './node-paths.js'
import type { Context } from './plan.js'

/** What containerd holds, as `ctr images ls` shows it: the images in a namespace, their labels, and where an image sits instead of k8s.io. */

/**
 * The label containerd's CRI plugin reads as "pinned": kubelet's image garbage collection
 * never removes a pinned image, and an air-gapped node could not pull one back.
 */
export const PINNED_LABEL = 'io.cri-containerd.pinned=pinned'

/** name -> manifest digest, as `ctr images ls` shows them in one namespace. */
export async function listImages(ctx: Context, namespace: string): Promise<Map<string, string> | undefined> {
  const all = await listImageLabels(ctx, namespace)
  return all && new Map([...all].map(([name, i]) => [name, i.digest]))
}

/** name -> manifest digest and labels (REF TYPE DIGEST SIZE PLATFORMS LABELS; SIZE holds a space). */
export async function listImageLabels(ctx: Context, namespace: string): Promise<Map<string, { digest: string; labels: string[] }> | undefined> {
  const r = await ctx.host.run([CTR, '--address', ctx.options.containerdAddress, '-n', namespace, 'images', 'ls'], { changing: false })
  if (r.code !== 0) return undefined
  const out = new Map<string, { digest: string; labels: string[] }>()
  for (const line of r.stdout.trim().split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/)
    const [ref, , digest] = fields
    const labels = fields.length > 5 && fields[fields.length - 1] !== '-' ? fields[fields.length - 1]!.split(',') : []
    if (ref && digest && !ref.startsWith('sha256:')) out.set(ref, { digest, labels })
  }
  return out
}

/** Which of `names` containerd holds in a namespace other than k8s.io (the classic `ctr import` without `-n k8s.io`). */
export async function imagesElsewhere(ctx: Context, names: readonly string[]): Promise<{ image: string; namespace: string }[]> {
  const found: { image: string; namespace: string }[] = []
  const ns = await ctx.host.run([CTR, '--address', ctx.options.containerdAddress, 'namespaces', 'ls', '-q'], { changing: false })
  for (const namespace of ns.stdout
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => s && s !== K8S_NAMESPACE)) {
    const there = await listImages(ctx, namespace)
    for (const image of names) if (there?.has(image)) found.push({ image, namespace })
  }
  return found
}
