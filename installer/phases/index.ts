import type { Phase } from '../plan.js'
import { images } from './images.js'
import { kernel } from './kernel.js'
import { packages } from './packages.js'
import { preflight } from './preflight.js'
import { cluster, finish } from './cluster.js'
import { network } from './network.js'
import { cni } from './cni.js'
import { containerd } from './containerd.js'
import { kubernetes } from './kubernetes.js'
import { endpoint } from './endpoint.js'
import { addons } from './addons.js'

/**
 * The phases this installer has, in order, after `verify` (which runs first and on its
 * own: nothing may be read as trusted before it passes), in DESIGN section 4's order.
 */
export const PHASES: Phase[] = [preflight, packages, kernel, containerd, cni, kubernetes, images, endpoint, cluster, network, finish, addons]

export const VERIFY_SUMMARY = 'checks every file of the bundle against SHA256SUMS and the lock, before anything on the node changes'

/** What --phases and --skip-phases accept. */
export const PHASE_CHOICES: readonly string[] = ['verify', ...PHASES.map((p) => p.name)]
