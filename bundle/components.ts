import { RUNTIME_COMPONENT } from './layout.js'

/**
 * The components a bundle carries, by the name the lock gives them: the builder knows where
 * each comes from (builder/lock/components.ts, URLs), the installer what it does with each; both
 * spell the names from here.
 */
export const C = {
  containerd: 'containerd',
  containerdService: 'containerd-service',
  runc: 'runc',
  crictl: 'crictl',
  kubeadm: 'kubeadm',
  kubelet: 'kubelet',
  kubectl: 'kubectl',
  cniPlugins: 'cni-plugins',
  calicoctl: 'calicoctl',
  calicoManifest: 'calico-manifest',
  flannelManifest: 'flannel-manifest',
  localPath: 'local-path-provisioner',
  metricsServer: 'metrics-server',
  ingressNginx: 'ingress-nginx',
  etcd: 'etcd',
  node: RUNTIME_COMPONENT,
} as const

export type ComponentName = (typeof C)[keyof typeof C]

/** What a master takes of etcd's release: its clients, for backups and restores (etcd itself runs as kubeadm's static pod). */
export const ETCD_CLIENTS = ['etcdctl', 'etcdutl'] as const

/**
 * What the node takes from each component: a file copied as it is, the regular files of a
 * .tar.gz (those under `members`, or with one of the base `names`, when given), or nothing
 * (the runtime runs from the bundle, the manifests are read).
 */
export const NODE_TAKES: Record<ComponentName, { kind: 'file' } | { kind: 'archive'; members?: string; names?: readonly string[] } | { kind: 'read' }> = {
  [C.containerd]: { kind: 'archive', members: 'bin/' },
  [C.containerdService]: { kind: 'file' },
  [C.runc]: { kind: 'file' },
  [C.crictl]: { kind: 'archive' },
  [C.kubeadm]: { kind: 'file' },
  [C.kubelet]: { kind: 'file' },
  [C.kubectl]: { kind: 'file' },
  [C.cniPlugins]: { kind: 'archive' },
  [C.calicoctl]: { kind: 'file' },
  [C.calicoManifest]: { kind: 'read' },
  [C.flannelManifest]: { kind: 'read' },
  [C.localPath]: { kind: 'read' },
  [C.metricsServer]: { kind: 'read' },
  [C.ingressNginx]: { kind: 'read' },
  [C.etcd]: { kind: 'archive', names: ['etcdctl', 'etcdutl'] },
  [C.node]: { kind: 'read' },
}

/** The pod network a bundle carries: one of these manifests (Calico unless the manifest says `cni: flannel`). */
export const CNI_MANIFEST = { calico: C.calicoManifest, flannel: C.flannelManifest } as const
export type Cni = keyof typeof CNI_MANIFEST

/** The add-ons a bundle may carry, in the order the first master applies them (storage first: the others may claim volumes). */
export const ADDONS = [C.localPath, C.metricsServer, C.ingressNginx] as const
export type Addon = (typeof ADDONS)[number]

/**
 * The Kubernetes manifests a bundle may carry (upstream's file, pinned by sha256): every
 * container image they name is an image the nodes will ask for. The name is the one people know the file by.
 */
export const MANIFESTS: Record<typeof C.calicoManifest | typeof C.flannelManifest | Addon, string> = {
  [C.calicoManifest]: 'calico.yaml',
  [C.flannelManifest]: 'kube-flannel.yml',
  [C.localPath]: 'local-path-storage.yaml',
  [C.metricsServer]: "metrics-server's components.yaml",
  [C.ingressNginx]: "ingress-nginx's deploy.yaml",
}
export type ManifestComponent = keyof typeof MANIFESTS
export const isManifestComponent = (name: string): name is ManifestComponent => Object.hasOwn(MANIFESTS, name)
