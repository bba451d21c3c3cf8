import { stat } from 'node:fs/promises'
import { PassThrough, type Readable } from 'node:stream'
import type { Bundle, BundleImage } from '../../bundle/open.js'
import { Sha256 } from '../../bundle/digest.js'
import { KaError } from '../../bundle/errors.js'
import { ImageLayout } from '../../bundle/image-layout.js'
import { OCI_LAYOUT_CONTENT } from '../../bundle/oci.js'
import { streamSink, TarWriter } from '../../bundle/tar.js'
import { CTR, K8S_NAMESPACE } from '../node-paths.js'
import type { Context, Phase, Step } from '../plan.js'
import { imagesElsewhere, listImageLabels, listImages, PINNED_LABEL } from '../containerd-images.js'

/**
 * The names an image has on the node: its tag, and, when the lock pins a digest, the name a
 * pull by that digest gives it (`repository@sha256:...`, as CRI names what it pulls). An
 * add-on's manifest asks for `name:tag@sha256:...`; CRI looks that up as `repository@sha256:...`
 * (localResolve, pkg/cri/server/helpers.go), so without that name the kubelet would pull.
 */
export function nodeNames(bundle: Bundle, image: BundleImage): string[] {
  const pinned = bundle.lock.images.find((i) => i.ref === image.name)?.digest
  return pinned ? [image.name, `${repository(image.name)}@${pinned.oci}`] : [image.name]
}

/** The blobs an image consists of in the bundle: its manifest, config and layers (hex digests). */
export async function imageBlobs(bundle: Bundle, image: BundleImage): Promise<string[]> {
  return (await bundle.layout.blobsOf(image.manifest)).map((d) => d.hex)
}

/**
 * The bundle's OCI layout cut down to `images` (their manifests, configs and layers, each
 * blob once, less `skip`: blobs containerd already holds), as a tar stream for
 * `ctr images import -`. Nothing is staged on disk.
 */
export function layoutStream(bundle: Bundle, images: BundleImage[], skip: ReadonlySet<string> = new Set()): Readable {
  const out = new PassThrough()
  void (async () => {
    const blobs = new Set<string>()
    for (const im of images) for (const hex of await imageBlobs(bundle, im)) if (!skip.has(hex)) blobs.add(hex)
    const tar = new TarWriter(streamSink(out))
    await tar.data('oci-layout', 0o644, Buffer.from(OCI_LAYOUT_CONTENT))
    await tar.data(
      'index.json',
      0o644,
      ImageLayout.indexBytes(
        images.flatMap((im) => nodeNames(bundle, im).map((name) => ({ ...im, name }))),
        false,
      ),
    )
    await tar.directory('blobs')
    await tar.directory('blobs/sha256')
    for (const hex of [...blobs].sort()) {
      const path = bundle.layout.blobPath(Sha256.fromHex(hex))
      await tar.file(`blobs/sha256/${hex}`, (await stat(path)).size, 0o644, path)
    }
    await tar.end()
    out.end()
  })().catch((e: unknown) => out.destroy(e as Error))
  return out
}

export interface ImportPlan {
  /** Imported alone, first: it brings the layers most images share. */
  first: BundleImage[]
  /** Then these groups, two at a time; no blob is in two groups, none is sent twice. */
  groups: BundleImage[][]
  /** Blobs the first import brings (left out of the groups' streams). */
  firstBlobs: Set<string>
}

/**
 * `ctr import` spends its time sending content to containerd, one blob after another; two
 * imports at once use both cores. Two imports must never carry the same blob (two writers of
 * one digest can collide), so: the image with the most layers in common with the others
 * goes first, alone; the rest are split into groups joined by any blob they still share,
 * and the groups are spread over two streams.
 */
export async function planImport(bundle: Bundle, images: BundleImage[]): Promise<ImportPlan> {
  if (images.length < 3) return { first: images, groups: [], firstBlobs: new Set() }
  const blobs = new Map<BundleImage, string[]>()
  const uses = new Map<string, number>()
  for (const im of images) {
    const list = await imageBlobs(bundle, im)
    blobs.set(im, list)
    for (const b of list) uses.set(b, (uses.get(b) ?? 0) + 1)
  }
  const shared = (im: BundleImage) => blobs.get(im)!.filter((b) => uses.get(b)! > 1).length
  const first = [...images].sort((a, b) => shared(b) - shared(a))[0]!
  const firstBlobs = new Set(blobs.get(first))
  // Union the rest by the blobs they share beyond what the first import brings.
  const rest = images.filter((i) => i !== first)
  const parent = new Map(rest.map((i) => [i, i]))
  const find = (i: BundleImage): BundleImage => (parent.get(i) === i ? i : find(parent.get(i)!))
  const owner = new Map<string, BundleImage>()
  for (const im of rest) {
    for (const b of blobs.get(im)!) {
      if (firstBlobs.has(b)) continue
      const o = owner.get(b)
      if (o) parent.set(find(im), find(o))
      else owner.set(b, im)
    }
  }
  const groups = new Map<BundleImage, BundleImage[]>()
  for (const im of rest) groups.set(find(im), [...(groups.get(find(im)) ?? []), im])
  return { first: [first], groups: [...groups.values()], firstBlobs }
}

export const images: Phase = {
  name: 'images',
  summary: `imports the bundle's images into containerd's ${K8S_NAMESPACE} namespace (skipping those already there with the same digest), then checks every image kubeadm, the sandbox and Calico need is there`,
  async plan(ctx) {
    const { bundle, options } = ctx
    const labelled = await listImageLabels(ctx, K8S_NAMESPACE)
    const present = labelled && new Map([...labelled].map(([n, i]) => [n, i.digest]))
    if (!present && !options.dryRun) {
      throw new KaError(
        'ESTEP',
        `containerd does not answer at ${options.containerdAddress}: is it running? (systemctl status containerd; journalctl -u containerd)`,
      )
    }
    const missing = bundle.images.filter((i) => nodeNames(bundle, i).some((n) => present?.get(n) !== i.manifest.oci))
    const names = bundle.images.flatMap((i) => nodeNames(bundle, i))
    const argv = [CTR, '--address', options.containerdAddress, '-n', K8S_NAMESPACE, 'images', 'import', '-']
    const plan = await planImport(bundle, missing)
    // Groups go into two streams, balanced by count; each stream is one `ctr import`.
    const streams: BundleImage[][] = [[], []]
    for (const g of [...plan.groups].sort((a, b) => b.length - a.length)) streams[streams[0]!.length <= streams[1]!.length ? 0 : 1]!.push(...g)
    return [
      {
        title: `images in ${K8S_NAMESPACE} (${bundle.images.length}: ${missing.length ? `${missing.length} to import` : 'all there'})`,
        done: missing.length === 0,
        actions: [
          { kind: 'run', argv, input: () => layoutStream(bundle, plan.first) },
          {
            kind: 'parallel',
            actions: streams.filter((x) => x.length).map((x) => ({ kind: 'run' as const, argv, input: () => layoutStream(bundle, x, plan.firstBlobs) })),
          },
        ],
        check: () => checkImages(ctx),
      },
      {
        title: `images pinned against kubelet's image garbage collection (${PINNED_LABEL})`,
        done: names.every((n) => labelled?.get(n)?.labels.includes(PINNED_LABEL)),
        actions: names
          .filter((n) => !labelled?.get(n)?.labels.includes(PINNED_LABEL))
          .map((n) => ({
            kind: 'run' as const,
            argv: [CTR, '--address', options.containerdAddress, '-n', K8S_NAMESPACE, 'images', 'label', n, PINNED_LABEL],
          })),
      },
    ]
  },
}

/** An image name without its tag or digest: `registry.k8s.io/kube-apiserver:v1.29.3` -> `registry.k8s.io/kube-apiserver`. */
const repository = (name: string): string => name.replace(/(@sha256:[0-9a-f]+|:[^/:]+)$/, '')

/**
 * After an upgrade: the images of the versions before it (the same repositories as this
 * bundle's images, under other tags) unpinned, not removed, so that the kubelet's image
 * garbage collection may take them once nothing runs them. Images of other repositories
 * (the site's own) keep their pin. `ctr images label REF KEY=` with no value removes the label.
 */
export async function unpinSteps(ctx: Context): Promise<Step[]> {
  const labelled = (await listImageLabels(ctx, K8S_NAMESPACE)) ?? new Map()
  const current = new Set(ctx.bundle.images.flatMap((i) => nodeNames(ctx.bundle, i)))
  const repositories = new Set([...current].map(repository))
  const old = [...labelled]
    .filter(([name, i]) => !current.has(name) && repositories.has(repository(name)) && i.labels.includes(PINNED_LABEL))
    .map(([name]) => name)
    .sort()
  const key = PINNED_LABEL.split('=')[0]
  return [
    {
      title: `the images of earlier versions unpinned, for the kubelet's image garbage collection (${old.length ? old.join(', ') : 'none pinned'})`,
      done: old.length === 0,
      actions: old.map((name) => ({
        kind: 'run' as const,
        argv: [CTR, '--address', ctx.options.containerdAddress, '-n', K8S_NAMESPACE, 'images', 'label', name, `${key}=`],
      })),
    },
  ]
}

/** Every image the node needs is in k8s.io under its exact name; else say which, and where it is instead. */
export async function checkImages(ctx: Context): Promise<void> {
  const present = (await listImages(ctx, K8S_NAMESPACE)) ?? new Map<string, string>()
  const want = new Map(ctx.bundle.images.flatMap((i) => nodeNames(ctx.bundle, i).map((n) => [n, i.manifest.oci] as const)))
  const missing = [...new Set([...ctx.bundle.needed, ...want.keys()])].filter((n) => !present.has(n) || (want.has(n) && present.get(n) !== want.get(n)))
  if (missing.length === 0) return
  const elsewhere = (await imagesElsewhere(ctx, missing)).map(
    (e) => `${e.image} is in namespace "${e.namespace}" (imported without -n ${K8S_NAMESPACE}: kubelet cannot see it there)`,
  )
  throw new KaError(
    'ESTEP',
    `not in containerd's ${K8S_NAMESPACE} namespace: ${missing.join(', ')}${elsewhere.length ? `; ${elsewhere.join('; ')}` : ''}; run ./install --phases images again`,
    { missing },
  )
}
