import { stat } from 'node:fs/promises'
import { KaError } from '../../bundle/errors.js'
import { isImageLock } from '../../bundle/lock.js'
import { openBundle } from '../../bundle/open.js'
import type { Io } from '../../bundle/report.js'
import { verifyBundle } from '../../bundle/verify.js'
import type { Flags } from '../context.js'
import { verifyOptions } from '../gate.js'
import { images } from '../phases/images.js'
import type { Phase } from '../plan.js'
import { phaseCommand } from './install.js'

/**
 * `./install images FOLDER`, on a running node of any role: an image bundle (`bundle build
 * --images-only`, or a lock of images alone), unpacked, verified as this bundle is (the same
 * --public-key and --require-signature), then its images imported into containerd's k8s.io
 * namespace and pinned. Nothing else on the node changes.
 */
export async function imagesCommand(folder: string, flags: Flags, io: Io): Promise<void> {
  const st = await stat(folder).catch(() => undefined)
  if (!st?.isDirectory())
    throw new KaError(
      'EUSAGE',
      `${folder} is not a folder: unpack the image bundle first (kube-airgap-verify --extract DIR ${st ? folder : 'NAME.tar'}, or sha256sum -c NAME.tar.sha256 && tar xf NAME.tar), then give its folder`,
    )
  const v = await verifyBundle(folder, await verifyOptions({ ...flags, base: undefined }))
  if (!isImageLock(v.lock))
    throw new KaError(
      'EUSAGE',
      `${folder} is a bundle that installs Kubernetes, not an image bundle: run its own ./install; ./install images takes what bundle build --images-only makes`,
    )
  const extra = await openBundle(folder, v.digests, v.lock)
  const phase: Phase = {
    ...images,
    summary: `imports ${v.name}'s images into containerd's k8s.io namespace (skipping those already there with the same digest) and pins them`,
    plan: async (ctx) => {
      if (extra.platform !== ctx.bundle.platform)
        throw new KaError(
          'EUSAGE',
          `${v.name} is for ${extra.platform}, this node's bundle for ${ctx.bundle.platform}: build the image bundle with --platform ${ctx.bundle.platform}`,
        )
      return images.plan({ ...ctx, bundle: extra })
    },
  }
  await phaseCommand(
    `images ${folder}`,
    flags,
    io,
    { phases: ['images'], log: 'images' },
    () => [phase],
    `next: the images are on this node; run the same on every node that may run them (ansible/images.yml does every node)\n`,
  )
}
