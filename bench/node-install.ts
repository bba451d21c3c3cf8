import { execFileSync, spawn } from 'node:child_process'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { C } from '../bundle/components.js'
import type { Bundle } from '../bundle/open.js'
import { startContainerd } from '../test/support/containerd.js'
import { freshNodeRoot, writeStandins } from '../test/support/standins.js'

/** One run on a node: its time, and each phase's, from the lines it printed as they came. */
interface Phased {
  seconds: number
  phases: Map<string, number>
}

/**
 * The field notes' procedure for a first master, as an operator types it (the manual
 * baseline): kernel modules and sysctls, swap off, containerd from its release tarball with
 * `containerd config default` and SystemdCgroup set by sed, runc, the CNI plugins, crictl,
 * kubeadm/kubelet/kubectl with their units, `ctr -n k8s.io images import` of one tar per
 * image, `kubeadm init --config`, and Calico with `kubectl apply`. Nothing is checked: no
 * sha256sum, no image list compared, as the notes do it. Each phase prints a `[phase]` line
 * at its end, as the installer does, so that both are timed alike.
 *
 * sh -c SCRIPT manual ROOT SOCKET TAR...; the bundle's files in $F_<COMPONENT>.
 */
const MANUAL = `
set -e
R=$1; SOCK=$2; shift 2
mkdir -p "$R/etc/modules-load.d" "$R/etc/sysctl.d"
printf 'overlay\\nbr_netfilter\\n' > "$R/etc/modules-load.d/k8s.conf"
modprobe overlay; modprobe br_netfilter
printf 'net.bridge.bridge-nf-call-iptables  = 1\\nnet.bridge.bridge-nf-call-ip6tables = 1\\nnet.ipv4.ip_forward                 = 1\\n' > "$R/etc/sysctl.d/k8s.conf"
sysctl --system
swapoff -a; sed -i '/\\sswap\\s/ s/^/#/' "$R/etc/fstab"
echo '[kernel] done'
mkdir -p "$R/usr/local" "$R/usr/local/lib/systemd/system" "$R/etc/containerd"
tar Cxzf "$R/usr/local" "$F_CONTAINERD"
cp "$F_CONTAINERD_SERVICE" "$R/usr/local/lib/systemd/system/containerd.service"
"$R/usr/local/bin/containerd" config default > "$R/etc/containerd/config.toml"
sed -i -e 's/SystemdCgroup = false/SystemdCgroup = true/' -e 's#sandbox_image = .*#sandbox_image = "registry.k8s.io/pause:3.9"#' "$R/etc/containerd/config.toml"
install -D -m 755 "$F_RUNC" "$R/usr/local/sbin/runc"
systemctl daemon-reload; systemctl enable --now containerd
echo '[containerd] done'
mkdir -p "$R/opt/cni/bin"; tar Cxzf "$R/opt/cni/bin" "$F_CNI_PLUGINS"
echo '[cni] done'
tar zxf "$F_CRICTL" -C "$R/usr/local/bin"
printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\\nimage-endpoint: unix:///run/containerd/containerd.sock\\ntimeout: 10\\n' > "$R/etc/crictl.yaml"
install -m 755 "$F_KUBEADM" "$F_KUBELET" "$F_KUBECTL" "$R/usr/local/bin/"
mkdir -p "$R/etc/systemd/system/kubelet.service.d"
printf '[Service]\\nExecStart=/usr/local/bin/kubelet\\nRestart=always\\n[Install]\\nWantedBy=multi-user.target\\n' > "$R/etc/systemd/system/kubelet.service"
printf '[Service]\\nEnvironment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"\\nExecStart=\\nExecStart=/usr/local/bin/kubelet $KUBELET_KUBECONFIG_ARGS\\n' > "$R/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"
systemctl daemon-reload; systemctl enable --now kubelet
echo '[kubernetes] done'
for t in "$@"; do ctr --address "$SOCK" -n k8s.io images import "$t" > /dev/null; done
echo '[images] done'
cat > "$R/kubeadm-config.yaml" <<YAML
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
nodeRegistration:
  name: k8s01
  criSocket: unix:///run/containerd/containerd.sock
localAPIEndpoint:
  advertiseAddress: 192.0.2.10
  bindPort: 6443
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: $K8S
controlPlaneEndpoint: 192.0.2.10:6443
networking:
  podSubnet: 10.244.0.0/16
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
YAML
"$R/usr/local/bin/kubeadm" init --config "$R/kubeadm-config.yaml"
mkdir -p "$R/root/.kube"; cp "$R/etc/kubernetes/admin.conf" "$R/root/.kube/config"
echo '[cluster] done'
"$R/usr/local/bin/kubectl" apply -f "$F_CALICO_MANIFEST"
echo '[network] done'
`

/**
 * A first master's whole install on a stand-in node (the e2e world: real containerd, real ctr
 * import into a real containerd, stand-ins for what cannot run here), `./install --role
 * master` against the manual baseline, each on a fresh root with a containerd of its own
 * running, broken down by phase. Neither waits on a real kubeadm: the stand-in's init
 * returns at once, so the figure leaves out kubeadm's own wait, as the target says.
 */
export async function benchNodeInstall(dir: string, bundle: Bundle, tars: string[]): Promise<string[]> {
  const standins = await writeStandins(join(dir, 'standins'))
  const ca = join(dir, 'ca.crt')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', ca, '-days', '1', '-subj', '/CN=kubernetes'], {
    stdio: 'ignore',
  })
  const node = async (name: string, cmd: (root: string, socket: string) => [string, string[]], env: NodeJS.ProcessEnv = {}): Promise<Phased> => {
    const root = join(dir, 'roots', name)
    await mkdir(root, { recursive: true })
    await freshNodeRoot(root)
    const ctd = await startContainerd(join(dir, `ctd-node-${name}`))
    try {
      const [file, args] = cmd(root, ctd.socket)
      return await phased(file, args, {
        ...env,
        PATH: `${standins}:${process.env.PATH}`,
        KA_ROOT: root,
        KA_RECORD: join(dir, `${name}.record`),
        KA_CA_CRT: ca,
      })
    } finally {
      await ctd.stop()
    }
  }
  const ours = await node('ours', (root, socket) => [
    join(bundle.dir, 'install'),
    ['--role', 'master', '--advertise-address', '192.0.2.10', '--containerd-address', socket, '--root', root, '--host-commands', standins],
  ])
  const files: NodeJS.ProcessEnv = { K8S: `v${bundle.lock.kubernetes}` }
  for (const c of [C.containerd, C.containerdService, C.runc, C.cniPlugins, C.crictl, C.kubeadm, C.kubelet, C.kubectl, C.calicoManifest])
    files[`F_${c.toUpperCase().replace(/-/g, '_')}`] = bundle.file(c).path
  const manual = await node('manual', (root, socket) => ['sh', ['-c', MANUAL, 'manual', root, socket, ...tars]], files)
  const lines = [
    `whole install of a first master ${ours.seconds.toFixed(2)} s vs the field notes' commands ${manual.seconds.toFixed(2)} s: ratio ${(ours.seconds / manual.seconds).toFixed(2)}x (target <= 1.2x)`,
  ]
  const names = [...new Set([...ours.phases.keys(), ...manual.phases.keys()])]
  lines.push(`  by phase, ours / manual: ${names.map((p) => `${p} ${time(ours.phases.get(p))}/${time(manual.phases.get(p))}`).join(', ')}`)
  return lines
}

const time = (s: number | undefined): string => (s === undefined ? '-' : s.toFixed(2))

/**
 * Runs a command and times each phase by its `[phase] ...` lines as they come: a phase lasts
 * from the end of the one before it (or the start) to its last line.
 */
async function phased(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<Phased> {
  const t0 = process.hrtime.bigint()
  const at = () => Number(process.hrtime.bigint() - t0) / 1e9
  const child = spawn(file, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)))
  const ends = new Map<string, number>()
  for await (const line of createInterface({ input: child.stdout })) {
    const m = /^\[([a-z-]+)\]/.exec(line)
    if (m) ends.set(m[1]!, at())
  }
  const code = child.exitCode ?? (await new Promise<number | null>((r) => child.on('close', r)))
  if (code !== 0) throw new Error(`${file} ${args.slice(0, 3).join(' ')} exited ${code}: ${err}`)
  const seconds = at()
  const phases = new Map<string, number>()
  let from = 0
  for (const [p, end] of ends) {
    phases.set(p, end - from)
    from = end
  }
  return { seconds, phases }
}
