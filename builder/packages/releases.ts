import type { Arch } from '../../bundle/platform.js'

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
export interface DebRelease {
  family: 'deb'
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
): DebRelease => ({
  family: 'deb',
  id: `ubuntu-${version}`,
  archive,
  suites: [{ suite: codename }, { suite: `${codename}-updates` }, { suite: `${codename}-security`, archive: security }],
  components: ['main', 'universe'],
  keyring: UBUNTU_KEYRING,
  snapshot: ubuntuSnapshot,
})

/** Ubuntu after its end of life: every suite and architecture on old-releases. */
const oldReleases = () => 'http://old-releases.ubuntu.com/ubuntu'

const DEB_RELEASES: readonly DebRelease[] = [
  ubuntuRelease('20.04', 'focal'),
  ubuntuRelease('22.04', 'jammy'),
  // The field notes' release; end of life, so its archive is old-releases.
  ubuntuRelease('23.10', 'mantic', oldReleases, oldReleases),
  ubuntuRelease('24.04', 'noble'),
  {
    family: 'deb',
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

/** One repository of an RPM release (BaseOS, AppStream, everything, update): the folder that holds repodata/. */
export interface RpmRepo {
  name: string
  url(arch: Arch): string
  /**
   * Where this repository of a point release (9.4, from its .treeinfo) lives once the next
   * one replaces it (Rocky's and AlmaLinux's vault trees): a pin's fallback on 404.
   */
  vault?(minor: string, arch: Arch): string
}

/**
 * An RPM-family release: its repositories, the key that signs their repomd.xml (a file in
 * manifests/keyrings/; none when we do not ship it yet, and then `--keyring` must give it),
 * the architectures it publishes, and the Debian package names the manifest uses that it
 * spells otherwise (conntrack is conntrack-tools). A name it has as a provide (iptables,
 * ebtables on Enterprise Linux 9) needs no entry: the resolver finds the provider.
 */
export interface RpmRelease {
  family: 'rpm'
  id: string
  repos: RpmRepo[]
  arches: readonly Arch[]
  keyring?: string
  /** Where the operator gets the key we do not ship, and how to check it. */
  keyHelp?: string
  names: Readonly<Record<string, string>>
}

export type Release = DebRelease | RpmRelease

const RPM_NAMES = { conntrack: 'conntrack-tools' }
/** How RPM repositories spell an architecture. */
export const rpmArch = (arch: Arch): string => (arch === 'amd64' ? 'x86_64' : 'aarch64')

/**
 * Rocky and AlmaLinux: BaseOS and AppStream of the major release (its newest minor); once
 * the next minor is out, the old one's tree moves to `vault` (`<vault>/9.4/BaseOS/...`).
 */
const enterprise = (id: string, base: string, vault: string, key: { keyring: string } | { keyHelp: string }): RpmRelease => ({
  family: 'rpm',
  id,
  repos: ['BaseOS', 'AppStream'].map((name) => ({
    name,
    url: (arch) => `${base}/${name}/${rpmArch(arch)}/os`,
    vault: (minor, arch) => `${vault}/${minor}/${name}/${rpmArch(arch)}/os`,
  })),
  arches: ['amd64', 'arm64'],
  ...key,
  names: RPM_NAMES,
})

/** openEuler LTS: the everything repository (a superset of OS) and its updates. */
const openEuler = (version: string): RpmRelease => ({
  family: 'rpm',
  id: `openeuler-${version}`,
  repos: ['everything', 'update'].map((name) => ({ name, url: (arch) => `https://repo.openeuler.org/openEuler-${version}-LTS/${name}/${rpmArch(arch)}` })),
  arches: ['amd64', 'arm64'],
  keyHelp: `openEuler's key is not shipped yet: fetch https://repo.openeuler.org/openEuler-${version}-LTS/OS/x86_64/RPM-GPG-KEY-openEuler, check its fingerprint against openEuler's published one, and pass it with --keyring (gpg --dearmor first)`,
  names: RPM_NAMES,
})

/** Kylin V10, each service pack its own tree, as /etc/os-release names it (Tercel, Sword, Lance). */
const kylin = (sp: number): RpmRelease => ({
  family: 'rpm',
  id: `kylin-v10sp${sp}`,
  repos: ['base', 'updates'].map((name) => ({
    name,
    url: (arch) => `https://update.cs2c.com.cn/NS/V10/V10SP${sp}/os/adv/lic/${name}/${rpmArch(arch)}`,
  })),
  arches: ['amd64', 'arm64'],
  keyring: 'kylin-keyring.gpg',
  names: RPM_NAMES,
})

export const RELEASES: readonly Release[] = [
  ...DEB_RELEASES,
  enterprise('rocky-8', 'https://dl.rockylinux.org/pub/rocky/8', 'https://dl.rockylinux.org/vault/rocky', { keyring: 'rocky-8-keyring.gpg' }),
  enterprise('rocky-9', 'https://dl.rockylinux.org/pub/rocky/9', 'https://dl.rockylinux.org/vault/rocky', { keyring: 'rocky-9-keyring.gpg' }),
  // The only copy of AlmaLinux 8's key we could take (Debian's distribution-gpg-keys) expired
  // on 2024-01-12, and the lock refuses what an expired key signs, as apt does.
  enterprise('almalinux-8', 'https://repo.almalinux.org/almalinux/8', 'https://vault.almalinux.org', {
    keyHelp:
      "AlmaLinux 8's key is not shipped (the copy we have expired on 2024-01-12): fetch https://repo.almalinux.org/almalinux/RPM-GPG-KEY-AlmaLinux-8, check its fingerprint is 5E9B 8F56 17B5 066C E920 57C3 488F CF7C 3ABB 34F8 and that it has not expired, gpg --dearmor it, and pass it with --keyring",
  }),
  enterprise('almalinux-9', 'https://repo.almalinux.org/almalinux/9', 'https://vault.almalinux.org', { keyring: 'almalinux-9-keyring.gpg' }),
  openEuler('22.03'),
  openEuler('24.03'),
  kylin(1),
  kylin(2),
  kylin(3),
]

export const releaseNamed = (id: string): Release | undefined => RELEASES.find((r) => r.id === id)
