import { stat } from 'node:fs/promises'
import { KaError } from '../../bundle/errors.js'
import { JOIN_REGISTRY_CA, JOIN_REGISTRY_CREDENTIALS } from '../../bundle/layout.js'
import { isImageLock } from '../../bundle/lock.js'
import { openBundle } from '../../bundle/open.js'
import { type Io, printJson } from '../../bundle/report.js'
import { verifyBundle } from '../../bundle/verify.js'
import { type Flags, requireSuperuser, resolveContext } from '../context.js'
import { verifyOptions } from '../gate.js'
import { registryHandOver, registryOf, registryPhase, registryTrust, runsRegistry } from '../phases/registry.js'
import { pushImages } from '../registry-push.js'
import { REGISTRY_FILES } from '../registry.js'
import { phaseCommand } from './install.js'

export interface RegistryFlags extends Flags {
  caCert?: string
  caKey?: string
}

/**
 * `./install registry`, on every node: on the node cluster.yaml's registry.node names, the
 * registry itself, then its CA (and credentials) into the bundle folder; on every node, its
 * containerd's trust. Run it there first, then on the others with the folder it wrote to.
 */
export async function registryCommand(flags: RegistryFlags, io: Io): Promise<void> {
  await phaseCommand(
    'registry',
    flags,
    io,
    { phases: ['registry', 'registry-trust'], log: 'registry' },
    () => [registryPhase({ ...(flags.caCert ? { cert: flags.caCert } : {}), ...(flags.caKey ? { key: flags.caKey } : {}) }), registryHandOver, registryTrust],
    async (ctx) => {
      const c = registryOf(ctx)
      return runsRegistry(ctx, c)
        ? `next: copy the bundle folder (it now holds ${JOIN_REGISTRY_CA}${c.auth ? ` and ${JOIN_REGISTRY_CREDENTIALS}` : ''}) to every other node and run sudo ./install registry --config cluster.yaml there; push images with sudo ./install registry push FOLDER\n`
        : `next: this node pulls ${c.name}/<path>:<tag>${c.mirrors.length ? ` and ${c.mirrors.join(', ')} images` : ''} from the registry\n`
    },
  )
}

/**
 * `./install registry push FOLDER`: an image bundle, verified as `./install images` verifies
 * one, pushed into the registry by digest and tag (the registry checks every blob's digest as
 * it receives it). It runs on any node that trusts the registry: the registry node itself, or
 * one with the bundle folder's CA and credentials.
 */
export async function registryPushCommand(folder: string, flags: Flags, io: Io): Promise<void> {
  requireSuperuser(flags, `registry push ${folder}`)
  const st = await stat(folder).catch(() => undefined)
  if (!st?.isDirectory())
    throw new KaError('EUSAGE', `${folder} is not a folder: unpack the image bundle first (kube-airgap-verify --extract DIR NAME.tar), then give its folder`)
  const { ctx } = await resolveContext(flags, { role: 'worker', needAddress: false, record: false, phases: [], say: (l) => io.err(`${l}\n`) })
  const c = registryOf(ctx)
  const here = runsRegistry(ctx, c)
  const ca = here ? await ctx.host.readText(REGISTRY_FILES.caCert) : await ctx.usb.readText(`/${JOIN_REGISTRY_CA}`)
  if (!ca) throw new KaError('EUSAGE', `no registry CA here: run ./install registry on ${c.node} first (it writes ${JOIN_REGISTRY_CA} into the bundle folder)`)
  const credentials = (here ? await ctx.host.readText(REGISTRY_FILES.credentials) : await ctx.usb.readText(`/${JOIN_REGISTRY_CREDENTIALS}`))?.trim()
  const v = await verifyBundle(folder, await verifyOptions({ ...flags, base: undefined }))
  if (!isImageLock(v.lock))
    throw new KaError(
      'EUSAGE',
      `${folder} is a bundle that installs Kubernetes, not an image bundle: registry push takes what bundle build --images-only makes`,
    )
  const images = await openBundle(folder, v.digests, v.lock)
  if (ctx.options.dryRun) {
    const lines = images.images.map((i) => `would push ${i.name} to ${c.name}`)
    if (flags.json) return printJson(io, { ok: true, dryRun: true, images: images.images.map((i) => i.name) })
    io.out(`${lines.join('\n')}\n`)
    return
  }
  const pushed = await pushImages(images, { registry: c, ca, ...(credentials ? { credentials } : {}), ...(c.address ? { connectTo: c.address } : {}) })
  if (flags.json) return printJson(io, { ok: true, pushed })
  for (const p of pushed) io.out(`pushed  ${p.image} as ${p.pushed} (${p.newBlobs} new blob${p.newBlobs === 1 ? '' : 's'})\n`)
  io.out(`next: pods pull them as ${c.name}/<path>:<tag>${c.mirrors.length ? ` (or by their ${c.mirrors.join(', ')} names)` : ''}\n`)
}
