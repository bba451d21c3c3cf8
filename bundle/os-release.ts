/** Kylin V10's service packs, by the codename its /etc/os-release gives in VERSION. */
const KYLIN_SP: Record<string, number> = { tercel: 1, sword: 2, lance: 3 }

/** One field of an os-release file, quotes taken off. */
const osField = (text: string, k: string): string | undefined => new RegExp(`^${k}="?([^"\\n]*)"?\\s*$`, 'm').exec(text)?.[1]?.trim()

/**
 * The release id an /etc/os-release names, as the lock names its package sets and
 * builder/packages/releases.ts its rows: ID-VERSION_ID on Debian and Ubuntu (ubuntu-22.04) and
 * openEuler (openeuler-22.03); the major release on Rocky and AlmaLinux, whose minor
 * releases share one repository tree (rocky-9 for 9.4); kylin-v10sp<N> on Kylin V10, by the
 * codename of its service pack.
 */
export function releaseId(text: string): string | undefined {
  const field = (k: string) => osField(text, k)
  const id = field('ID')?.toLowerCase()
  const version = field('VERSION_ID')
  if (!id || !version) return undefined
  if (id === 'rocky' || id === 'almalinux' || id === 'rhel' || id === 'centos') return `${id}-${version.split('.')[0]}`
  if (id === 'kylin') {
    const sp = KYLIN_SP[/\(([A-Za-z]+)\)/.exec(field('VERSION') ?? '')?.[1]?.toLowerCase() ?? '']
    return sp ? `kylin-${version.toLowerCase()}sp${sp}` : `kylin-${version.toLowerCase()}`
  }
  return `${id}-${version}`
}

/** How a distribution packages its software: Debian's .deb (dpkg) or the RPM family's .rpm (rpm). */
export type PackageFamily = 'deb' | 'rpm'

/** The family of each distribution ID kube-airgap knows, and of the IDs derivatives name in ID_LIKE. */
const FAMILIES: Record<string, PackageFamily> = {
  debian: 'deb',
  ubuntu: 'deb',
  rhel: 'rpm',
  fedora: 'rpm',
  centos: 'rpm',
  rocky: 'rpm',
  almalinux: 'rpm',
  openeuler: 'rpm',
  kylin: 'rpm',
}

/** The family of a release id (`rocky-9`: rpm), as the lock names its package sets. */
export const releaseFamily = (release: string): PackageFamily | undefined => FAMILIES[release.split('-')[0]!]

/**
 * What an /etc/os-release says of the node: its release id (see releaseId) and its package
 * family, by ID, else by the first ID_LIKE kube-airgap knows (as k0sctl's OS detection resolves
 * a derivative: Linux Mint is ubuntu-like, Oracle Linux rhel-like).
 */
export function osRelease(text: string): { release?: string; family?: PackageFamily } {
  const release = releaseId(text)
  const like = (osField(text, 'ID_LIKE') ?? '').toLowerCase().split(/\s+/)
  const family = [osField(text, 'ID')?.toLowerCase() ?? '', ...like].map((id) => FAMILIES[id]).find((f) => f !== undefined)
  return { ...(release ? { release } : {}), ...(family ? { family } : {}) }
}
