import { readFile } from 'node:fs/promises'
import { C, type ComponentName, ETCD_CLIENTS } from '../../bundle/components.js'
import { basename } from 'node:path'
import {
  BACKUP_SCRIPT,
  BACKUP_SERVICE,
  BACKUP_TIMER,
  BACKUP_UNIT_NAME,
  APISERVER_PROXY,
  APISERVER_PROXY_UNIT,
  VIP_UNIT,
  VIP_UNIT_NAME,
  BIN_DIR,
  CNI_BIN_DIR,
  CONTAINERD_CONFIG,
  CONTAINERD_UNIT,
  CRICTL_CONFIG,
  CTR,
  ETC_HOSTS,
  FSTAB,
  FSTAB_BACKUP,
  K8S_NAMESPACE,
  KUBECTL_CALICO,
  KUBELET_DROPIN,
  KUBELET_UNIT,
  MODULES_LOAD,
  RUNC,
  STATE_DIR,
  SYSCTL_CONF,
  CRI_STATE_DIRS,
  KUBELET_PODS_DIR,
  PROC_MOUNTINFO,
  KUBERNETES_DIR,
  KUBELET_CONFIG,
  CNI_CONF_DIR,
  CNI_STATE_DIR,
  CONTAINERD_CERTS_DIR,
  REGISTRY_POD,
  FLANNEL_LINKS,
  FLANNEL_RUN_DIR,
  SYS_CLASS_NET,
  ROOT_KUBECONFIG,
  CONTAINERD_DATA_DIR,
  CONTAINERD_RUN_DIR,
} from '../node-paths.js'
import { type Action, type Context, type Phase, type Step, writeAction } from '../plan.js'
import { securityUndoSteps } from '../security.js'
import { nodeMembers, unitState } from '../steps.js'

const lines = (s: string) =>
  s
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)

const KUBEADM_RESET_TIMEOUT_MS = 120_000

/**
 * Mount points at or below these node folders (in the root's terms, as paths on this
 * machine), deepest first, from the live /proc/self/mountinfo.
 */
async function mountsUnder(ctx: Context, dirs: string[]): Promise<string[]> {
  const info = await readFile(PROC_MOUNTINFO, 'utf8').catch(() => '')
  const prefixes = dirs.map((d) => ctx.host.path(d))
  const points = info
    .split('\n')
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m) => prefixes.some((p) => m === p || m.startsWith(`${p}/`)))
  return [...new Set(points)].sort((a, b) => b.split('/').length - a.split('/').length || (a < b ? 1 : -1))
}

/**
 * Undoes a cluster on this node, and with --purge everything the installer installed.
 * Pods and containers containerd cannot delete (field notes error 7) are stopped and
 * removed with crictl and ctr, then the CRI plugin's leftover state for them is removed and
 * containerd restarted; the images in k8s.io stay, so ./install can run again at once.
 */
export function resetPhase(purge: boolean): Phase {
  return {
    name: 'reset',
    // Reset is best effort by nature: a pod whose Calico teardown fails (the field notes'
    // error 7) must not stop the cleanup written for exactly that pod.
    bestEffort: true,
    summary: 'kubeadm reset; kubelet stopped; pods and containers removed (images kept); CNI state removed; with --purge, everything the installer installed',
    async plan(ctx) {
      const { host, options } = ctx
      const steps: Step[] = []
      const kubeadm = `${BIN_DIR}/kubeadm`
      const hasCluster = (await host.list(KUBERNETES_DIR)).length > 0 || (await host.exists(KUBELET_CONFIG))
      const kubeadmDone = !hasCluster || !(await host.exists(kubeadm))
      if (!kubeadmDone && !options.dryRun) ctx.say(`note  kubeadm reset may wait for an API server that is gone: up to ${KUBEADM_RESET_TIMEOUT_MS / 1000} s`)
      steps.push({
        title: 'kubeadm reset -f',
        done: kubeadmDone,
        actions: [{ kind: 'run', argv: [kubeadm, 'reset', '-f'], timeoutMs: KUBEADM_RESET_TIMEOUT_MS }],
      })
      const kubelet = await unitState(ctx, 'kubelet')
      steps.push({ title: 'kubelet stopped', done: !kubelet.active, actions: [{ kind: 'run', argv: ['systemctl', 'stop', 'kubelet'] }] })

      steps.push(...(await podSteps(ctx)))
      const { steps: cri, leftovers } = await criStateSteps(ctx)
      steps.push(...cri)
      const containerd = await unitState(ctx, 'containerd')
      steps.push({
        title: 'containerd restarted on clean state',
        done: leftovers === 0 || !containerd.active,
        actions: [{ kind: 'run', argv: ['systemctl', 'restart', 'containerd'] }],
      })
      const cniState = []
      for (const p of [CNI_CONF_DIR, CNI_STATE_DIR, FLANNEL_RUN_DIR]) if (await host.exists(p)) cniState.push(p)
      steps.push({
        title: `CNI state removed (${CNI_CONF_DIR}, ${CNI_STATE_DIR}, ${FLANNEL_RUN_DIR})`,
        done: cniState.length === 0,
        actions: cniState.map((path) => ({ kind: 'remove', path })),
      })
      // Flannel's VXLAN device and pod bridge outlive its pods; a new flanneld refuses a cni0 with another subnet
      // ("failed to set bridge addr: cni0 already has an IP address different from ...").
      const links = []
      for (const l of FLANNEL_LINKS) if (await host.exists(`${SYS_CLASS_NET}/${l}`)) links.push(l)
      steps.push({
        title: `Flannel's interfaces removed (${FLANNEL_LINKS.join(', ')})`,
        done: links.length === 0,
        actions: links.map((l) => ({ kind: 'run', argv: ['ip', 'link', 'delete', l] })),
      })
      if (purge) steps.push(...(await purgeSteps(ctx, containerd.enabled || containerd.active || kubelet.enabled)))
      return steps
    },
  }
}

/** Pods first (through the CRI, as kubelet made them), then whatever containerd still runs in k8s.io. */
async function podSteps(ctx: Context): Promise<Step[]> {
  const { host } = ctx
  const addr = ctx.options.containerdAddress
  const steps: Step[] = []
  const crictl = [`${BIN_DIR}/crictl`, '--runtime-endpoint', `unix://${addr}`]
  const pods = (await host.exists(`${BIN_DIR}/crictl`)) ? lines((await host.run([...crictl, 'pods', '-q'], { changing: false })).stdout) : []
  steps.push({
    title: `pods stopped and removed (${pods.length})`,
    done: pods.length === 0,
    actions: pods.flatMap((id): Action[] => [
      { kind: 'run', argv: [...crictl, 'stopp', id] },
      { kind: 'run', argv: [...crictl, 'rmp', '-f', id] },
    ]),
  })
  const ctr = [CTR, '--address', addr, '-n', K8S_NAMESPACE]
  const containers = (await host.exists(CTR)) ? lines((await host.run([...ctr, 'containers', 'ls', '-q'], { changing: false })).stdout) : []
  const tasks = new Set(containers.length ? lines((await host.run([...ctr, 'tasks', 'ls', '-q'], { changing: false })).stdout) : [])
  steps.push({
    title: `containers removed from ${K8S_NAMESPACE} (${containers.length}; images kept)`,
    done: containers.length === 0,
    actions: containers.flatMap((id): Action[] => [
      ...(tasks.has(id)
        ? [
            { kind: 'run' as const, argv: [...ctr, 'tasks', 'kill', '-s', 'SIGKILL', id] },
            { kind: 'run' as const, argv: [...ctr, 'tasks', 'rm', '-f', id] },
          ]
        : []),
      { kind: 'run', argv: [...ctr, 'containers', 'rm', id] },
    ]),
  })
  return steps
}

/**
 * A sandbox's shm and a pod's volumes stay mounted when their teardown failed: unmounted,
 * deepest first (or removing their folders fails with EBUSY); then the CRI plugin's leftover state.
 */
async function criStateSteps(ctx: Context): Promise<{ steps: Step[]; leftovers: number }> {
  const { host } = ctx
  const steps: Step[] = []
  const mounts = await mountsUnder(ctx, [...CRI_STATE_DIRS, KUBELET_PODS_DIR])
  steps.push({
    title: `mounts under the pod and sandbox folders unmounted (${mounts.length})`,
    done: mounts.length === 0,
    actions: mounts.map((m) => ({ kind: 'run', argv: ['umount', m] })),
  })
  const leftovers: string[] = []
  for (const d of CRI_STATE_DIRS) for (const id of await host.list(d)) leftovers.push(`${d}/${id}`)
  steps.push({
    title: `leftover CRI state removed (${leftovers.length})`,
    done: leftovers.length === 0,
    actions: leftovers.map((path) => ({ kind: 'remove', path })),
  })
  return { steps, leftovers: leftovers.length }
}

/** The folders under containerd's certs.d that ./install registry wrote (their hosts.toml says so). */
async function registryTrustDirs(ctx: Context): Promise<string[]> {
  const out = []
  for (const name of await ctx.host.list(CONTAINERD_CERTS_DIR))
    if ((await ctx.host.readText(`${CONTAINERD_CERTS_DIR}/${name}/hosts.toml`))?.startsWith('# kube-airgap')) out.push(`${CONTAINERD_CERTS_DIR}/${name}`)
  return out
}

/** Everything the installer wrote, removed; /etc/fstab restored from its backup. */
async function purgeSteps(ctx: Context, unitsOn: boolean): Promise<Step[]> {
  const { host } = ctx
  const members = async (name: ComponentName, dir: string) => (await nodeMembers(ctx, name)).map((m) => `${dir}/${basename(m.path)}`)
  const files = [
    ...(await members(C.containerd, BIN_DIR)),
    ...(await members(C.crictl, BIN_DIR)),
    ...(await members(C.cniPlugins, CNI_BIN_DIR)),
    ...[C.kubeadm, C.kubelet, C.kubectl].map((b) => `${BIN_DIR}/${b}`),
    ...ETCD_CLIENTS.map((b) => `${BIN_DIR}/${b}`),
    BACKUP_SCRIPT,
    BACKUP_SERVICE,
    BACKUP_TIMER,
    KUBECTL_CALICO,
    RUNC,
    CONTAINERD_UNIT,
    KUBELET_UNIT,
    KUBELET_DROPIN,
    APISERVER_PROXY_UNIT,
    VIP_UNIT,
    CONTAINERD_CONFIG,
    CRICTL_CONFIG,
    MODULES_LOAD,
    SYSCTL_CONF,
    STATE_DIR,
    ROOT_KUBECONFIG,
    // containerd's data, images included: a purge leaves the node as before the install.
    CONTAINERD_DATA_DIR,
    CONTAINERD_RUN_DIR,
    REGISTRY_POD,
    // The registry trust (./install registry): the certs.d folders whose hosts.toml is ours; the registry's images stay.
    ...(await registryTrustDirs(ctx)),
  ]
  const present = []
  for (const f of files) if (await host.exists(f)) present.push(f)
  const endpoints = []
  for (const unit of [APISERVER_PROXY, VIP_UNIT_NAME, `${BACKUP_UNIT_NAME}.timer`]) {
    const state = await unitState(ctx, unit)
    if (state.enabled || state.active) endpoints.push(unit)
  }
  const steps: Step[] = [
    { title: 'containerd and kubelet disabled', done: !unitsOn, actions: [{ kind: 'run', argv: ['systemctl', 'disable', '--now', 'kubelet', 'containerd'] }] },
    {
      title: `kube-airgap's own units disabled (${APISERVER_PROXY}, ${VIP_UNIT_NAME}, ${BACKUP_UNIT_NAME}.timer; the backups themselves are kept)`,
      done: endpoints.length === 0,
      actions: [{ kind: 'run', argv: ['systemctl', 'disable', '--now', ...endpoints] }],
    },
    {
      title: `installed files removed (${present.length})`,
      done: present.length === 0,
      actions: [...present.map((path): Action => ({ kind: 'remove', path })), { kind: 'run', argv: ['systemctl', 'daemon-reload'] }],
    },
  ]
  const backup = await host.read(FSTAB_BACKUP)
  steps.push({
    title: `${FSTAB} restored from ${FSTAB_BACKUP}`,
    done: !backup,
    actions: backup ? [writeAction(FSTAB, backup), { kind: 'remove', path: FSTAB_BACKUP }] : [],
  })
  steps.push(...(await securityUndoSteps(ctx)))
  const hosts = (await host.readText(ETC_HOSTS)) ?? ''
  const cleaned = hosts
    .split('\n')
    .filter((l) => !l.endsWith('# kube-airgap'))
    .join('\n')
  steps.push({
    title: `kube-airgap's lines removed from ${ETC_HOSTS}`,
    done: cleaned === hosts,
    actions: [writeAction(ETC_HOSTS, cleaned)],
  })
  return steps
}
