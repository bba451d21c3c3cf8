import { OS_RELEASE_FILES } from './node-paths.js'
import type { LockedPackage } from '../bundle/lock.js'
import { releaseId } from '../bundle/os-release.js'
import type { Context } from './plan.js'

/** `ubuntu-22.04`, `rocky-9`: the node's release from /etc/os-release, as the bundle names its sets (bundle/os-release.ts). */
export async function nodeRelease(ctx: Context): Promise<string | undefined> {
  const text = (await ctx.host.readText(OS_RELEASE_FILES[0]!)) ?? (await ctx.host.readText(OS_RELEASE_FILES[1]!))
  return text === undefined ? undefined : releaseId(text)
}

/** The bundle's packages for this node's release (empty when the bundle carries none for it). */
export async function packagesForNode(ctx: Context): Promise<{ release?: string; mine: LockedPackage[]; carried: string[] }> {
  const all = ctx.bundle.lock.packages.filter((p) => p.platform === ctx.bundle.platform)
  const release = await nodeRelease(ctx)
  return { ...(release ? { release } : {}), mine: all.filter((p) => p.release === release), carried: [...new Set(all.map((p) => p.release))] }
}
