import { BIN_DIR, CNI_BIN_DIR, DEFAULT_CONTAINERD_SOCKET, RUNC, CNI_CONF_DIR, CONTAINERD_CERTS_DIR } from './node-paths.js'

/**
 * The files the installer writes, as text. Each says why it is the way it is: these are
 * the settings the field notes found by trial and error.
 */
export const HEADER = '# Written by kube-airgap. Run ./install again rather than editing: it rewrites this file.\n'

export const modulesLoad = (): string =>
  `${HEADER}# Loaded at every boot: containerd's overlayfs snapshotter needs overlay; bridged pod
# traffic must pass iptables, which needs br_netfilter.
overlay
br_netfilter
`

export const SYSCTLS: [string, string, string][] = [
  ['net.bridge.bridge-nf-call-iptables', '1', 'bridged pod traffic goes through iptables (kube-proxy and Calico rules)'],
  ['net.bridge.bridge-nf-call-ip6tables', '1', 'the same for IPv6'],
  ['net.ipv4.ip_forward', '1', 'the node routes pod traffic; kubeadm preflight fails without it'],
  ['net.ipv4.conf.all.log_martians', '1', 'log packets with impossible addresses, which otherwise vanish silently (field notes)'],
]

/*
 * Not net.ipv4.conf.all.route_localnet (the field notes set it): kube-proxy sets it itself
 * when it serves NodePorts on 127.0.0.1, with its own rules guarding it; set globally on a
 * prepared but unjoined worker, nothing guards it and localhost services answer the network.
 */
export const sysctlConf = (): string => `${HEADER}${SYSCTLS.map(([k, v, why]) => `# ${why}\n${k} = ${v}\n`).join('')}`

/**
 * containerd's config, version 2 for containerd 1.x, version 3 for 2.x: runc through the v2 shim with the
 * systemd cgroup driver (kubelet uses systemd too: two drivers make two views of the same
 * resources), the runc we installed, the bundle's pause image as the sandbox image (so
 * containerd never tries to pull another one), and registry hosts from certs.d. None of the
 * deprecated keys the field notes fought: no `systemd_cgroup`, no `default_runtime`, no
 * `io.containerd.runtime.v1.linux`, no registry `mirrors`.
 */
export const containerdConfig = (sandboxImage: string, selinux = false, containerdVersion = '1.7'): string =>
  Number.parseInt(containerdVersion, 10) >= 2 ? containerdConfigV3(sandboxImage, selinux, containerdVersion) : containerdConfigV2(sandboxImage, selinux)

const containerdConfigV2 = (sandboxImage: string, selinux: boolean): string =>
  `${HEADER}version = 2

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${sandboxImage}"
${selinux ? '  # SELinux kept enforcing (cluster.yaml selinux: keep): containers get their own labels, as container-selinux expects.\n  enable_selinux = true\n' : ''}
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "${CNI_BIN_DIR}"
  conf_dir = "${CNI_CONF_DIR}"

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "${RUNC}"
  SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "${CONTAINERD_CERTS_DIR}"
`

/**
 * The same for containerd 2.x, in its configuration version 3 (containerd docs/cri/config.md):
 * the CRI plugin split into io.containerd.cri.v1.images (the sandbox image is a pinned image,
 * registries) and io.containerd.cri.v1.runtime (runtimes, CNI). containerd 2.1 lists CNI
 * binaries as bin_dirs (bin_dir deprecated); 2.0 knows only bin_dir.
 */
const containerdConfigV3 = (sandboxImage: string, selinux: boolean, version: string): string =>
  `${HEADER}version = 3

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = '${sandboxImage}'

[plugins.'io.containerd.cri.v1.images'.registry]
  config_path = '${CONTAINERD_CERTS_DIR}'
${selinux ? "\n[plugins.'io.containerd.cri.v1.runtime']\n  # SELinux kept enforcing (cluster.yaml selinux: keep): containers get their own labels, as container-selinux expects.\n  enable_selinux = true\n" : ''}
[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = 'runc'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = '${RUNC}'
  SystemdCgroup = true

[plugins.'io.containerd.cri.v1.runtime'.cni]
  ${/^2\.0\./.test(version) ? `bin_dir = '${CNI_BIN_DIR}'` : `bin_dirs = ['${CNI_BIN_DIR}']`}
  conf_dir = '${CNI_CONF_DIR}'
`

export const crictlConfig = (socket = DEFAULT_CONTAINERD_SOCKET): string =>
  `${HEADER}runtime-endpoint: unix://${socket}
image-endpoint: unix://${socket}
timeout: 10
debug: false
`

export const kubeletUnit = (): string =>
  `${HEADER}[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target containerd.service
After=network-online.target containerd.service

[Service]
ExecStart=${BIN_DIR}/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
`

/** kubeadm's drop-in: kubelet gets its kubeconfig and config from what kubeadm init/join writes. */
export const kubeletDropIn = (): string =>
  `${HEADER}[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# kubeadm init/join writes this file at runtime; it holds KUBELET_KUBEADM_ARGS.
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# For the user's own flags (KUBELET_EXTRA_ARGS).
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=${BIN_DIR}/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`
