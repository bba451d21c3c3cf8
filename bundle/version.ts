/** kube-airgap's version, as both command lines and the bundled installer report it (package.json must agree: a unit test checks). */
export const TOOL_VERSION = '0.1.0'

/** A Kubernetes version, parsed once (the installer's skew rules, the builder's delta bundles). */
export interface Version {
  major: number
  minor: number
  patch: number
  /** `v1.29.3` */
  text: string
}

/** `v1.29.3`, `1.29.3` or `Kubernetes v1.29.3` (kubelet --version); undefined when none is in it. */
export function parseVersion(s: string | undefined): Version | undefined {
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(s ?? '')
  if (!m) return undefined
  const [major, minor, patch] = [Number(m[1]), Number(m[2]), Number(m[3])]
  return { major, minor, patch, text: `v${major}.${minor}.${patch}` }
}

export const compareVersions = (a: Version, b: Version): number => a.major - b.major || a.minor - b.minor || a.patch - b.patch
