/**
 * Every path the installer touches on the node, in one place (DESIGN section 4). Paths are
 * as on the node; the Host puts them under --root.
 */
export const BIN_DIR = '/usr/local/bin'
export const RUNC = '/usr/local/sbin/runc'
export const CNI_BIN_DIR = '/opt/cni/bin'
export const CONTAINERD_CONFIG = '/etc/containerd/config.toml'
export const CRICTL_CONFIG = '/etc/crictl.yaml'
export const SYSTEMD_DIR = '/etc/systemd/system'
export const CONTAINERD_UNIT = `${SYSTEMD_DIR}/containerd.service`
export const KUBELET_UNIT = `${SYSTEMD_DIR}/kubelet.service`
export const KUBELET_DROPIN = `${SYSTEMD_DIR}/kubelet.service.d/10-kubeadm.conf`
export const MODULES_LOAD = '/etc/modules-load.d/k8s.conf'
export const SYSCTL_CONF = '/etc/sysctl.d/k8s.conf'
export const FSTAB = '/etc/fstab'
export const FSTAB_BACKUP = '/etc/fstab.kube-airgap.bak'
/** SELinux's mode at boot (RPM-family nodes), and the original the installer keeps before it sets permissive. */
export const SELINUX_CONFIG = '/etc/selinux/config'
export const SELINUX_BACKUP = '/etc/selinux/config.kube-airgap.bak'
/** The policy container-selinux installs: what keeping SELinux enforcing needs. */
export const CONTAINER_SELINUX_POLICY = '/usr/share/selinux/packages/container.pp.bz2'
export const DEFAULT_CONTAINERD_SOCKET = '/run/containerd/containerd.sock'
export const CTR = `${BIN_DIR}/ctr`
/** kubeadm's folder: the kubeconfigs, the PKI, the static pods. */
export const KUBERNETES_DIR = '/etc/kubernetes'
export const KUBECONFIG_ADMIN = '/etc/kubernetes/admin.conf'
export const KUBELET_KUBECONFIG = '/etc/kubernetes/kubelet.conf'

/** The kubelet's configuration, written by kubeadm init or join; the pods' folders. */
export const KUBELET_CONFIG = '/var/lib/kubelet/config.yaml'
export const KUBELET_PODS_DIR = '/var/lib/kubelet/pods'
/** The CNI configuration containerd reads, and the CNI plugins' state. */
export const CNI_CONF_DIR = '/etc/cni/net.d'
export const CNI_STATE_DIR = '/var/lib/cni'
/** Where containerd looks for a registry's hosts.toml. */
export const CONTAINERD_CERTS_DIR = '/etc/containerd/certs.d'
/** The registry inside the air gap, on the node that runs it: its configuration, CA, certificate and users. */
export const REGISTRY_DIR = '/etc/kube-airgap/registry'
/** Where it keeps images unless cluster.yaml says otherwise. */
export const REGISTRY_STORAGE = '/var/lib/kube-airgap/registry'
/** Its static pod. */
export const REGISTRY_POD = '/etc/kubernetes/manifests/kube-airgap-registry.yaml'
/** containerd's data (images included) and its runtime state. */
export const CONTAINERD_DATA_DIR = '/var/lib/containerd'
export const CONTAINERD_RUN_DIR = '/run/containerd'
/** Where the CRI plugin keeps per-container and per-sandbox state (field notes error 7). */
export const CRI_STATE_DIRS = [
  `${CONTAINERD_DATA_DIR}/io.containerd.grpc.v1.cri/containers`,
  `${CONTAINERD_DATA_DIR}/io.containerd.grpc.v1.cri/sandboxes`,
  `${CONTAINERD_RUN_DIR}/io.containerd.grpc.v1.cri/containers`,
  `${CONTAINERD_RUN_DIR}/io.containerd.grpc.v1.cri/sandboxes`,
]
/** The node's release: /etc/os-release, else the file it links to. */
export const OS_RELEASE_FILES = ['/etc/os-release', '/usr/lib/os-release']
/** Where a distribution, snap or a hand install put binaries. */
export const BINARY_DIRS = ['/usr/bin', '/usr/sbin', '/bin', '/sbin', '/snap/bin', '/usr/local/bin', '/usr/local/sbin']
export const UFW_CONF = '/etc/ufw/ufw.conf'
/** root's kubeconfig, which the first master's finish phase writes. */
export const ROOT_KUBECONFIG = '/root/.kube/config'

/** Live kernel state, read (under --root too, where tests emulate it). */
export const PROC_MODULES = '/proc/modules'
export const PROC_SWAPS = '/proc/swaps'
export const procSys = (key: string): string => `/proc/sys/${key.replaceAll('.', '/')}`
export const SYSTEMD_RUNNING = '/run/systemd/system'
export const CGROUP_V2_MARKER = '/sys/fs/cgroup/cgroup.controllers'

/** The namespace kubelet's CRI sees images in. */
export const K8S_NAMESPACE = 'k8s.io'

/** What the installer keeps for itself: the kubeadm configs it ran with, Calico as applied, the join token. */
export const STATE_DIR = '/etc/kube-airgap'
export const KUBEADM_CONFIG = `${STATE_DIR}/kubeadm.yaml`
export const KUBEADM_JOIN_CONFIG = `${STATE_DIR}/kubeadm-join.yaml`
export const CALICO_APPLIED = `${STATE_DIR}/calico.yaml`
export const FLANNEL_APPLIED = `${STATE_DIR}/flannel.yaml`
/** flanneld's lease of this node's subnet (subnet.env); reset removes it with the CNI state. */
export const FLANNEL_RUN_DIR = '/run/flannel'
/** The network interfaces of the node, by name. */
export const SYS_CLASS_NET = '/sys/class/net'
/** Flannel's VXLAN device and its CNI bridge. */
export const FLANNEL_LINKS = ['flannel.1', 'cni0'] as const
/** Each add-on's manifest as the first master applied it. */
export const ADDONS_DIR = `${STATE_DIR}/addons`
export const addonApplied = (addon: string): string => `${ADDONS_DIR}/${addon}.yaml`
/** The add-on choices cluster.yaml made at install (an upgrade applies the newer add-ons with the same). */
export const ADDON_CHOICES = `${ADDONS_DIR}/choices.json`
/** Where local-path-provisioner keeps volumes on each node unless cluster.yaml says otherwise (upstream's default). */
export const LOCAL_PATH_DATA = '/opt/local-path-provisioner'
/** CoreDNS's Corefile as applied when the node has no resolver (no upstream forwarding). */
export const COREDNS_APPLIED = `${STATE_DIR}/coredns.yaml`
export const JOIN_STATE = `${STATE_DIR}/join.json`
/** The firewalld openings the installer added (and only those: reset --purge removes them). */
export const FIREWALLD_ADDED = `${STATE_DIR}/firewalld.json`
/** Calico's interfaces kept from NetworkManager, where it runs. */
export const NM_CALICO_CONF = '/etc/NetworkManager/conf.d/calico.conf'
export const CA_CERT = '/etc/kubernetes/pki/ca.crt'
export const KUBECTL_CALICO = `${BIN_DIR}/kubectl-calico`
export const ETC_HOSTS = '/etc/hosts'
export const RESOLV_CONF = '/etc/resolv.conf'
/** systemd-resolved's list of the real DNS servers; its /etc/resolv.conf names only its 127.0.0.53 stub. */
export const SYSTEMD_RESOLV_CONF = '/run/systemd/resolve/resolv.conf'
/** The token Calico's CNI plugin uses (written by calico-node; it expires while a node is off). */
export const CALICO_CNI_KUBECONFIG = `${CNI_CONF_DIR}/calico-kubeconfig`
export const ETC_PASSWD = '/etc/passwd'
export const PROC_NET_ROUTE = '/proc/net/route'
/** The mounts of this process's namespace: always the live machine's, never under --root. */
export const PROC_MOUNTINFO = '/proc/self/mountinfo'

/** OS packages on their way to dpkg: copied here from the bundle, checked as written, removed after. */
export const PACKAGE_STAGING = '/var/lib/kube-airgap/staging'

/** What an upgrade keeps: its state (a rerun resumes, --rollback undoes) and the files it replaced, per version. */
export const UPGRADE_STATE = '/var/lib/kube-airgap/upgrade.json'
export const UPGRADE_BACKUP_DIR = '/var/lib/kube-airgap/backup'
/** kubeadm's static pod manifests, and where `kubeadm upgrade` backs them up (kubeadm-backup-manifests-<time>). */
export const STATIC_PODS = '/etc/kubernetes/manifests'
export const KUBEADM_BACKUPS = '/etc/kubernetes/tmp'

/** Verification records for security officers. */
export const RECORD_DIR = '/var/log/kube-airgap'

/** The local endpoint of the API (cluster.yaml endpoint: local): HAProxy from the bundle's OS packages, its configuration, unit and runtime API. */
export const HAPROXY = '/usr/sbin/haproxy'
export const APISERVER_PROXY = 'kube-airgap-apiserver-proxy'
export const APISERVER_PROXY_CONFIG = `${STATE_DIR}/apiserver-proxy.cfg`
export const APISERVER_PROXY_UNIT = `${SYSTEMD_DIR}/${APISERVER_PROXY}.service`
export const APISERVER_PROXY_SOCKET = `/run/${APISERVER_PROXY}.sock`
/** The virtual IP of the API (cluster.yaml endpoint: { vip }): keepalived from the bundle's OS packages, its configuration, check and unit. */
export const KEEPALIVED = '/usr/sbin/keepalived'
export const VIP_UNIT_NAME = 'kube-airgap-vip'
export const VIP_CONFIG = `${STATE_DIR}/keepalived.conf`
export const VIP_CHECK = `${STATE_DIR}/apiserver-check.sh`
export const VIP_UNIT = `${SYSTEMD_DIR}/${VIP_UNIT_NAME}.service`
/** kubeadm's certificates, and the kubelet's own (its rotated client certificate and its serving one). */
export const PKI_DIR = `${KUBERNETES_DIR}/pki`
export const KUBELET_PKI = '/var/lib/kubelet/pki'
/** Where `./install certs renew` keeps a static pod's manifest while the kubelet stops it. */
export const RESTART_DIR = `${KUBERNETES_DIR}/kube-airgap-restart`
/** kubeadm's local etcd: its static pod (the member's name, data folder and URLs are read from it). */
export const ETCD_MANIFEST = `${STATIC_PODS}/etcd.yaml`
/**
 * `./install backup`: the script that writes a backup (run by the command and by the timer),
 * its settings (this member's name and client URL), the timer's units, the default folder.
 */
export const BACKUP_SCRIPT = '/usr/local/sbin/kube-airgap-backup'
export const BACKUP_SETTINGS = `${STATE_DIR}/backup.env`
export const BACKUP_UNIT_NAME = 'kube-airgap-backup'
export const BACKUP_SERVICE = `${SYSTEMD_DIR}/${BACKUP_UNIT_NAME}.service`
export const BACKUP_TIMER = `${SYSTEMD_DIR}/${BACKUP_UNIT_NAME}.timer`
export const BACKUP_DIR = '/var/lib/kube-airgap/backups'
/** `./install restore`: the snapshot out of the backup, checked as written, removed after. */
export const RESTORE_STAGING = '/var/lib/kube-airgap/restore'
