import type { Phase } from '../plan.js'
import { images } from './images.js'
import { kernel } from './kernel.js'
import { preflight } from './preflight.js'
import { cni, containerd, kubernetes } from './runtime.js'

/**
 * The phases this installer has, in order, after `verify` (which runs first and on its
 * own: nothing may be read as trusted before it passes). DESIGN section 4 names the rest
 * (packages, cluster, network, finish); they arrive with their issues.
 */
export const PHASES: Phase[] = [preflight, kernel, containerd, cni, kubernetes, images]

export const VERIFY_SUMMARY = 'checks every file of the bundle against SHA256SUMS and the lock, before anything on the node changes'
