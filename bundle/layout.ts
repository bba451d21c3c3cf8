import type { Arch } from './platform.js'

/**
 * Every name inside a bundle, in one place (DESIGN section 3). The builder writes these
 * names, the verifier and the installer read them; nobody spells them out elsewhere.
 */
export const LOCK_FILE = 'bundle.lock.json'
export const SUMS_FILE = 'SHA256SUMS'
export const FILES_DIR = 'files'
export const IMAGES_DIR = 'images'
export const RUNTIME_DIR = 'runtime'
export const INSTALLER_DIR = 'installer'
export const INSTALL_SCRIPT = 'install'

/** `kube-airgap-v1.29.3-linux-amd64`: the top folder of the tar, and the tar's base name. */
export const bundleName = (kubernetes: string, arch: Arch): string => `kube-airgap-v${kubernetes}-linux-${arch}`
export const bundleTarName = (name: string): string => `${name}.tar`
/** `kube-airgap-images-0123456789ab-linux-amd64`: an image bundle, named by the images it pins (12 hex of their list's sha256). */
export const imageBundleName = (imagesHex: string, arch: Arch): string => `kube-airgap-images-${imagesHex.slice(0, 12)}-linux-${arch}`
export const tarSumName = (tarName: string): string => `${tarName}.sha256`

/**
 * Trust: STATEMENT.json names the bundle and the sha256 of its SHA256SUMS and lock (which
 * SHA256SUMS covers, with every other file, the SBOM included); SIGNATURE is the Ed25519
 * signature of the statement's exact bytes. Both stand outside SHA256SUMS, which they cover.
 */
export const STATEMENT_FILE = 'STATEMENT.json'
export const SIGNATURE_FILE = 'SIGNATURE'
export const SBOM_FILE = 'sbom.cdx.json'

/** The quickstart pages and the example cluster.yaml, for the operator on the node (who has no README). */
export const QUICKSTART_FILE = 'README.txt'
export const QUICKSTART_ZH_FILE = 'README.zh-CN.txt'
export const CLUSTER_EXAMPLE_FILE = 'cluster.example.yaml'

/**
 * A delta bundle (`bundle build --upgrade-from OLD_LOCK`) carries only what the old bundle
 * lacks; DELTA.json (listed in SHA256SUMS, so signed with it) names the old bundle and every
 * file taken from it, with its sha256. Its folder is `<name>-from-v<old>`, beside the old one.
 */
export const DELTA_FILE = 'DELTA.json'
export const deltaName = (name: string, fromKubernetes: string): string => `${name}-from-v${fromKubernetes}`

/**
 * Every file a bundle may hold at its top level. Any other top-level file in an unpacked
 * folder is the operator's own (a cluster.yaml, a public key put beside the bundle): it is
 * reported as not part of the bundle and never read as part of it, rather than called damage.
 * A name on this list that SHA256SUMS does not cover is still a problem.
 */
export const TOP_LEVEL_FILES: readonly string[] = [
  SUMS_FILE,
  LOCK_FILE,
  STATEMENT_FILE,
  SIGNATURE_FILE,
  SBOM_FILE,
  INSTALL_SCRIPT,
  QUICKSTART_FILE,
  QUICKSTART_ZH_FILE,
  CLUSTER_EXAMPLE_FILE,
  DELTA_FILE,
]

/**
 * The fleet playbook (ansible/site.yml and its tasks) and the example inventory that
 * `./install inventory` prints: for the controller that drives ./install on every node.
 */
export const ANSIBLE_DIR = 'ansible'
export const ANSIBLE_INVENTORY_EXAMPLE = `${ANSIBLE_DIR}/inventory.example.yml`

/** Split parts for FAT32 sticks: NAME.tar.000, .001, ... and NAME.parts.sha256. */
export const partName = (tarName: string, i: number): string => `${tarName}.${String(i).padStart(3, '0')}`
export const partsSumName = (tarName: string): string => `${tarName.replace(/\.tar$/, '')}.parts.sha256`

/** OS packages the node may lack, per distribution release. */
export const PACKAGES_DIR = 'packages'
export const packagePath = (release: string, file: string): string => `${PACKAGES_DIR}/${release}/${file}`

/** The bundle's images: one OCI image layout. */
export const IMAGE_INDEX = `${IMAGES_DIR}/index.json`
export const IMAGE_LAYOUT_FILE = `${IMAGES_DIR}/oci-layout`
export const imageBlobPath = (hex: string): string => `${IMAGES_DIR}/blobs/sha256/${hex}`

/** The installer, bundled into one file, and what it reads beside it. */
export const INSTALLER_FILE = `${INSTALLER_DIR}/install.mjs`
export const KUBEADM_TABLE_FILE = `${INSTALLER_DIR}/kubeadm-images.yaml`
/** manifests/compatibility.yaml, carried: `./install upgrade` checks the bundle it upgrades to against it. */
export const COMPATIBILITY_FILE = `${INSTALLER_DIR}/compatibility.yaml`

/**
 * The pinned Node.js runtime: the lock pins the upstream tarball (component `node`); the
 * bundle carries only the binary, extracted at build time so the node needs no xz.
 */
export const RUNTIME_COMPONENT = 'node'
export const RUNTIME_NODE = `${RUNTIME_DIR}/bin/node`

/**
 * Join files the first master writes into the bundle folder for the next nodes. They are
 * made on the node, after the bundle was built, so verification passes over them.
 */
export const JOIN_DIR = 'join'
export const JOIN_WORKER = `${JOIN_DIR}/worker.yaml`
export const JOIN_CONTROL_PLANE = `${JOIN_DIR}/control-plane.yaml`
/** The registry's CA, which the registry node writes for every other node's containerd to trust. */
export const JOIN_REGISTRY_CA = `${JOIN_DIR}/registry-ca.crt`
/** user:password of the registry's basic auth (0600), for ./install registry push from another node. */
export const JOIN_REGISTRY_CREDENTIALS = `${JOIN_DIR}/registry-credentials`

/** Where a pinned upstream file lives inside the bundle (the runtime excepted, see above). */
export const filePath = (file: string): string => `${FILES_DIR}/${file}`

/** Fixed metadata of every tar entry, so that the same inputs give the same bytes. */
export const TAR_MTIME = new Date('2000-01-01T00:00:00Z')
export const FILE_MODE = 0o644
export const EXEC_MODE = 0o755
export const DIR_MODE = 0o755

/**
 * A path inside a bundle that is safe to create or read: relative, `/`-separated, without
 * `.`/`..` segments or empty segments. Anything else in a tar or a sums file is an attack
 * or a corruption, never a name we wrote.
 */
export function isSafeRelativePath(p: string): boolean {
  if (p.length === 0 || p.startsWith('/') || p.includes('\\') || p.includes('\0')) return false
  return p.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..')
}
