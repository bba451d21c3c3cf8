/** Kylin V10's service packs, by the codename its /etc/os-release gives in VERSION. */
const KYLIN_SP: Record<string, number> = { tercel: 1, sword: 2, lance: 3 }

/**
 * The release id an /etc/os-release names, as the lock names its package sets and
 * builder/packages/releases.ts its rows: ID-VERSION_ID on Debian and Ubuntu (ubuntu-22.04) and
 * openEuler (openeuler-22.03); the major release on Rocky and AlmaLinux, whose minor
 * releases share one repository tree (rocky-9 for 9.4); kylin-v10sp<N> on Kylin V10, by the
 * codename of its service pack.
 */
export function releaseId(text: string): string | undefined {
  const field = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?\\s*$`, 'm').exec(text)?.[1]?.trim()
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

/** Whether a release id is one whose packages are .rpm files (the rest are Debian's family). */
export const isRpmFamily = (release: string): boolean => /^(rocky|almalinux|rhel|centos|openeuler|kylin)-/.test(release)
