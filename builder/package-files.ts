import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The package's own folder (from the sources or from lib/), where manifests/ and the default lock live. */
export const PACKAGE_DIR = ((): string => {
  let dir = resolve(dirname(fileURLToPath(import.meta.url)), '..')
  if (!existsSync(join(dir, 'package.json'))) dir = dirname(dir)
  return dir
})()

export const KUBEADM_TABLE = join(PACKAGE_DIR, 'manifests', 'kubeadm-images.yaml')
/** Which versions fit together (bundle/compatibility.ts reads it): checked at lock time, carried for upgrades. */
export const COMPATIBILITY = join(PACKAGE_DIR, 'manifests', 'compatibility.yaml')
/** The distributions' archive keyrings the release table names (builder/packages/releases.ts). */
export const KEYRING_DIR = join(PACKAGE_DIR, 'manifests', 'keyrings')
/** The quickstart pages and the example cluster.yaml every bundle carries. */
export const QUICKSTART_DIR = join(PACKAGE_DIR, 'manifests', 'quickstart')
export const CLUSTER_EXAMPLE = join(PACKAGE_DIR, 'manifests', 'cluster.example.yaml')
/** The fleet playbook and its example inventory, carried as the bundle's ansible/ folder. */
export const ANSIBLE_SOURCE_DIR = join(PACKAGE_DIR, 'manifests', 'ansible')
export const INSTALLER_BUILT = join(PACKAGE_DIR, 'lib', 'installer', 'install.mjs')
