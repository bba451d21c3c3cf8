import type { LockedPackage } from '../bundle/lock.js'
import type { Context } from './plan.js'

/** The bundle's packages for this node's release (empty when the bundle carries none for it). */
export function packagesForNode(ctx: Context): { release?: string; mine: LockedPackage[]; carried: string[] } {
  const all = ctx.bundle.lock.packages.filter((p) => p.platform === ctx.bundle.platform)
  const { release } = ctx.facts
  return { ...(release ? { release } : {}), mine: all.filter((p) => p.release === release), carried: [...new Set(all.map((p) => p.release))] }
}
