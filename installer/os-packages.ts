import { installedBy, type LockedPackage, type PackageUse } from '../bundle/lock.js'
import type { Context } from './plan.js'

/** The bundle's packages `use` installs here, for this machine's release (none when the bundle carries none for it), and the releases it carries them for. */
export function packagesHere(ctx: Context, use: PackageUse = 'node'): { release?: string; mine: LockedPackage[]; carried: string[] } {
  const all = ctx.bundle.lock.packages.filter((p) => p.platform === ctx.bundle.platform && installedBy(p, use))
  const { release } = ctx.facts
  return { ...(release ? { release } : {}), mine: all.filter((p) => p.release === release), carried: [...new Set(all.map((p) => p.release))] }
}
