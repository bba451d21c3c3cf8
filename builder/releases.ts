import type { Arch } from '../bundle/platform.js'

/** One suite of a release (the release itself, its updates, its security fixes). */
export interface Suite {
  suite: string
  /** Where this suite lives, when not in the release's archive (Debian's security archive). */
  archive?: (arch: Arch) => string
  /** Its snapshot service, by the Release file's timestamp (for pins the pool has dropped). */
  snapshot?: (arch: Arch, timestamp: string) => string
}

/**
 * The distribution releases a bundle can carry OS packages for: where their archive is,
 * which suites (the release and its updates) and components hold the packages, which
 * keyring signs them (a file in manifests/keyrings/), and where the snapshot service keeps
 * every version. The id is `<ID>-<VERSION_ID>` of /etc/os-release, which is how the
 * installer finds its set.
 *
 * To add one: a row here, the release in the manifest's packages.releases, and
 * `bundle lock`. A release past its end of life keeps its archive elsewhere (Ubuntu's
 * old-releases): the row says where.
 */
export interface Release {
  id: string
  archive(arch: Arch): string
  suites: Suite[]
  components: string[]
  keyring: string
  snapshot(arch: Arch, timestamp: string): string
}

const ubuntu = (arch: Arch) => (arch === 'amd64' ? 'http://archive.ubuntu.com/ubuntu' : 'http://ports.ubuntu.com/ubuntu-ports')
const ubuntuSecurity = (arch: Arch) => (arch === 'amd64' ? 'http://security.ubuntu.com/ubuntu' : 'http://ports.ubuntu.com/ubuntu-ports')
const ubuntuSnapshot = (arch: Arch, ts: string) => `https://snapshot.ubuntu.com/${arch === 'amd64' ? 'ubuntu' : 'ubuntu-ports'}/${ts}`
const UBUNTU_KEYRING = 'ubuntu-archive-keyring.gpg'

/** A supported Ubuntu release: the release, -updates and -security suites, main and universe. */
const ubuntuRelease = (
  version: string,
  codename: string,
  archive: (arch: Arch) => string = ubuntu,
  security: (arch: Arch) => string = ubuntuSecurity,
): Release => ({
  id: `ubuntu-${version}`,
  archive,
  suites: [{ suite: codename }, { suite: `${codename}-updates` }, { suite: `${codename}-security`, archive: security }],
  components: ['main', 'universe'],
  keyring: UBUNTU_KEYRING,
  snapshot: ubuntuSnapshot,
})

/** Ubuntu after its end of life: every suite and architecture on old-releases. */
const oldReleases = () => 'http://old-releases.ubuntu.com/ubuntu'

export const RELEASES: readonly Release[] = [
  ubuntuRelease('20.04', 'focal'),
  ubuntuRelease('22.04', 'jammy'),
  // The field notes' release; end of life, so its archive is old-releases.
  ubuntuRelease('23.10', 'mantic', oldReleases, oldReleases),
  ubuntuRelease('24.04', 'noble'),
  {
    id: 'debian-12',
    archive: () => 'http://deb.debian.org/debian',
    suites: [
      { suite: 'bookworm' },
      { suite: 'bookworm-updates' },
      {
        suite: 'bookworm-security',
        archive: () => 'http://deb.debian.org/debian-security',
        snapshot: (_arch, ts) => `https://snapshot.debian.org/archive/debian-security/${ts}`,
      },
    ],
    components: ['main'],
    keyring: 'debian-archive-keyring.gpg',
    snapshot: (_arch, ts) => `https://snapshot.debian.org/archive/debian/${ts}`,
  },
]

export const releaseNamed = (id: string): Release | undefined => RELEASES.find((r) => r.id === id)
