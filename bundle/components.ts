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
  [C.etcd]: { kind: 'archive', names: ['etcdctl', 'etcdutl'] },
  [C.node]: { kind: 'read' },
}
