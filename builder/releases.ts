import type { Arch } from '../installer/core/platform.js'

/**
 * The distribution releases a bundle can carry OS packages for: where their archive is,
 * which suites (the release and its updates) and components hold the packages. The id is
 * `<ID>-<VERSION_ID>` of /etc/os-release, which is how the installer finds its set.
 * To add one: a row here (and the release in the manifest's packages.releases).
 */
export interface Release {
  id: string
  archive(arch: Arch): string
  suites: { suite: string; archive?: (arch: Arch) => string }[]
  components: string[]
}

const ubuntu = (arch: Arch) => (arch === 'amd64' ? 'http://archive.ubuntu.com/ubuntu' : 'http://ports.ubuntu.com/ubuntu-ports')
const ubuntuSecurity = (arch: Arch) => (arch === 'amd64' ? 'http://security.ubuntu.com/ubuntu' : 'http://ports.ubuntu.com/ubuntu-ports')

export const RELEASES: readonly Release[] = [
  { id: 'ubuntu-22.04', archive: ubuntu, suites: [{ suite: 'jammy' }, { suite: 'jammy-updates' }, { suite: 'jammy-security', archive: ubuntuSecurity }], components: ['main', 'universe'] },
  { id: 'ubuntu-24.04', archive: ubuntu, suites: [{ suite: 'noble' }, { suite: 'noble-updates' }, { suite: 'noble-security', archive: ubuntuSecurity }], components: ['main', 'universe'] },
  { id: 'debian-12', archive: () => 'https://deb.debian.org/debian', suites: [{ suite: 'bookworm' }, { suite: 'bookworm-updates' }, { suite: 'bookworm-security', archive: () => 'https://deb.debian.org/debian-security' }], components: ['main'] },
]

export const releaseNamed = (id: string): Release | undefined => RELEASES.find((r) => r.id === id)

/** Where a release's Packages index for one suite, component and architecture is. */
export const indexUrl = (r: Release, s: Release['suites'][number], component: string, arch: Arch): string =>
  `${(s.archive ?? r.archive)(arch)}/dists/${s.suite}/${component}/binary-${arch}/Packages.gz`
