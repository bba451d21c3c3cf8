import { C } from '../../bundle/components.js'
import type { Arch } from '../../bundle/platform.js'

/**
 * What each component is upstream: where its file lives, and where upstream publishes the
 * checksum for it (read by `bundle lock` instead of downloading the file). A component
 * without `perPlatform` is one file for every platform.
 */
export interface Component {
  name: string
  perPlatform: boolean
  url(version: string, arch: Arch): string
  /** A file of `<hex>` or `<hex>  <name>` lines; the line for the artifact's base name is used. */
  checksumUrl?(version: string, arch: Arch): string
}

const gh = (repo: string, tag: string, asset: string): string => `https://github.com/${repo}/releases/download/${tag}/${asset}`
const nodeArch = (arch: Arch): string => (arch === 'amd64' ? 'x64' : 'arm64')

export const COMPONENTS: readonly Component[] = [
  {
    name: C.containerd,
    perPlatform: true,
    url: (v, a) => gh('containerd/containerd', `v${v}`, `containerd-${v}-linux-${a}.tar.gz`),
    checksumUrl: (v, a) => gh('containerd/containerd', `v${v}`, `containerd-${v}-linux-${a}.tar.gz.sha256sum`),
  },
  {
    name: C.containerdService,
    perPlatform: false,
    url: (v) => `https://raw.githubusercontent.com/containerd/containerd/v${v}/containerd.service`,
  },
  {
    name: C.runc,
    perPlatform: true,
    url: (v, a) => gh('opencontainers/runc', `v${v}`, `runc.${a}`),
    checksumUrl: (v) => gh('opencontainers/runc', `v${v}`, 'runc.sha256sum'),
  },
  {
    name: C.crictl,
    perPlatform: true,
    url: (v, a) => gh('kubernetes-sigs/cri-tools', `v${v}`, `crictl-v${v}-linux-${a}.tar.gz`),
    checksumUrl: (v, a) => gh('kubernetes-sigs/cri-tools', `v${v}`, `crictl-v${v}-linux-${a}.tar.gz.sha256`),
  },
  ...([C.kubeadm, C.kubelet, C.kubectl] as const).map(
    (bin): Component => ({
      name: bin,
      perPlatform: true,
      url: (v, a) => `https://dl.k8s.io/release/v${v}/bin/linux/${a}/${bin}`,
      checksumUrl: (v, a) => `https://dl.k8s.io/release/v${v}/bin/linux/${a}/${bin}.sha256`,
    }),
  ),
  {
    name: C.cniPlugins,
    perPlatform: true,
    url: (v, a) => gh('containernetworking/plugins', `v${v}`, `cni-plugins-linux-${a}-v${v}.tgz`),
    checksumUrl: (v, a) => gh('containernetworking/plugins', `v${v}`, `cni-plugins-linux-${a}-v${v}.tgz.sha256`),
  },
  {
    name: C.calicoctl,
    perPlatform: true,
    url: (v, a) => gh('projectcalico/calico', `v${v}`, `calicoctl-linux-${a}`),
    checksumUrl: (v) => gh('projectcalico/calico', `v${v}`, 'SHA256SUMS'),
  },
  {
    name: C.calicoManifest,
    perPlatform: false,
    url: (v) => `https://raw.githubusercontent.com/projectcalico/calico/v${v}/manifests/calico.yaml`,
  },
  {
    name: C.flannelManifest,
    perPlatform: false,
    url: (v) => gh('flannel-io/flannel', `v${v}`, 'kube-flannel.yml'),
  },
  {
    name: C.localPath,
    perPlatform: false,
    url: (v) => `https://raw.githubusercontent.com/rancher/local-path-provisioner/v${v}/deploy/local-path-storage.yaml`,
  },
  {
    name: C.metricsServer,
    perPlatform: false,
    url: (v) => gh('kubernetes-sigs/metrics-server', `v${v}`, 'components.yaml'),
  },
  {
    name: C.ingressNginx,
    perPlatform: false,
    // The bare-metal manifest: a NodePort Service (no cloud load balancer in an air gap).
    url: (v) => `https://raw.githubusercontent.com/kubernetes/ingress-nginx/controller-v${v}/deploy/static/provider/baremetal/deploy.yaml`,
  },
  {
    name: C.etcd,
    perPlatform: true,
    url: (v, a) => gh('etcd-io/etcd', `v${v}`, `etcd-v${v}-linux-${a}.tar.gz`),
    checksumUrl: (v) => gh('etcd-io/etcd', `v${v}`, 'SHA256SUMS'),
  },
  {
    name: C.node,
    perPlatform: true,
    url: (v, a) => `https://nodejs.org/dist/v${v}/node-v${v}-linux-${nodeArch(a)}.tar.xz`,
    checksumUrl: (v) => `https://nodejs.org/dist/v${v}/SHASUMS256.txt`,
  },
]

/** Components whose version is the Kubernetes version unless the manifest says otherwise. */
export const FOLLOWS_KUBERNETES = new Set(['kubeadm', 'kubelet', 'kubectl'])

export const componentNamed = (name: string): Component | undefined => COMPONENTS.find((c) => c.name === name)

/** The last path segment of a URL: the name a file keeps in the bundle's `files/`. */
export const urlBaseName = (url: string): string => {
  const last = new URL(url).pathname.split('/').pop() ?? ''
  try {
    return decodeURIComponent(last)
  } catch {
    return last
  }
}

/**
 * Finds the hash for `baseName` in a checksum file: a file holding only a hash, or
 * `sha256sum`-style lines (`<hex>  name`, `<hex> *name`, paths allowed).
 */
export function pickChecksum(text: string, baseName: string): string | undefined {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
  const only = lines.length === 1 ? /^([0-9a-fA-F]{64})$/.exec(lines[0]!)?.[1] : undefined
  if (only) return only.toLowerCase()
  for (const line of lines) {
    const m = /^([0-9a-fA-F]{64})\s+\*?(.+)$/.exec(line)
    if (m?.[1] && m[2] && (m[2] === baseName || m[2].split('/').pop() === baseName)) return m[1].toLowerCase()
  }
  return undefined
}
