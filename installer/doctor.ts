import { localTime } from '../bundle/text.js'
import { X509Certificate } from 'node:crypto'
import yaml from 'js-yaml'
import { JOIN_CONTROL_PLANE, JOIN_WORKER } from '../bundle/layout.js'
import { CLOCK_SLACK_MS, parseJoinFile } from './kubeadm.js'
import {
  CALICO_CNI_KUBECONFIG,
  CA_CERT,
  CALICO_APPLIED,
  FLANNEL_APPLIED,
  CONTAINERD_CONFIG,
  CONTAINERD_UNIT,
  FSTAB,
  KUBEADM_CONFIG,
  KUBELET_KUBECONFIG,
  MODULES_LOAD,
  procSys,
  SYSCTL_CONF,
  KUBELET_CONFIG,
} from './node-paths.js'
import { activeSwaps, describeListener, listenerOn, loadedModules, portFree } from './node-state.js'
import { imagesElsewhere, listImageLabels, PINNED_LABEL } from './containerd-images.js'
import { copiesOf, firewallFindings, hostCommandFindings, nameserverFinding, type Finding } from './checks.js'
import type { Context } from './plan.js'
import { SYSCTLS } from './templates.js'
import { installedNode, versionFindings } from './cluster-view.js'
import { clockSkewFinding } from './clock.js'
import { securityFindings } from './security.js'
import { endpointFindings } from './apiserver-proxy.js'
import { vipFindings } from './vip.js'
import { certFindings } from './certs.js'
import { addonFindings } from './addons.js'
import { flannelNetwork } from './flannel.js'
import { registryFindings } from './registry.js'

/**
 * Read-only checks of a live node (or one under --root) for every failure in the field
 * notes and the common ones of air-gapped installs. Each says what it found and, when it is
 * not ok, what to do. Nothing is changed, nothing is started.
 */
export async function doctor(ctx: Context): Promise<Finding[]> {
  const out: Finding[] = []
  const add: Add = (level, check, found, fix) => out.push({ level, check, found, ...(fix ? { fix } : {}) })
  // Each node file is read once a run: several checks read containerd's config and the kernel phase's files.
  const texts = new Map<string, Promise<string | undefined>>()
  const read: Read = (path) => {
    if (!texts.has(path)) texts.set(path, ctx.host.readText(path))
    return texts.get(path)!
  }
  for (const check of CHECKS) await check(ctx, add, read)
  return out
}

type Add = (level: Finding['level'], check: string, found: string, fix?: string) => void
type Read = (path: string) => Promise<string | undefined>
type Check = (ctx: Context, add: Add, read: Read) => Promise<void>

/** Findings another module makes, added as they are. */
const adding =
  (find: (ctx: Context) => Promise<Finding | Finding[] | undefined>): Check =>
  async (ctx, add) => {
    for (const f of [(await find(ctx)) ?? []].flat()) add(f.level, f.check, f.found, f.fix)
  }

/** containerd's config: the sandbox image, deprecated keys, the cgroup driver. */
async function containerdConfig(ctx: Context, add: Add, read: Read): Promise<void> {
  const { bundle } = ctx
  const config = await read(CONTAINERD_CONFIG)
  if (!config)
    add(
      'todo',
      'containerd config',
      `not installed yet (${CONTAINERD_CONFIG} is not there)`,
      'sudo ./install --role master|worker installs it (or --phases containerd)',
    )
  else {
    // version 2: sandbox_image = "..." (the CRI plugin); version 3 (containerd 2.x): sandbox = '...' (its pinned images).
    const sandbox = /^\s*(?:sandbox_image|sandbox)\s*=\s*["']([^"']+)["']/m.exec(config)?.[1]
    if (sandbox !== bundle.required.pause)
      add(
        'fail',
        'sandbox image',
        `containerd's sandbox_image is ${sandbox ?? 'not set (containerd then uses its own default)'}, the bundle's pause image is ${bundle.required.pause}`,
        `set sandbox_image = "${bundle.required.pause}" in ${CONTAINERD_CONFIG} (./install --phases containerd), or kubelet's pods wait for a pull that never comes`,
      )
    else add('ok', 'sandbox image', sandbox)
    const deprecated = [
      [/^\s*systemd_cgroup\s*=/m, '`systemd_cgroup` (use SystemdCgroup in the runc options)'],
      [/io\.containerd\.runtime\.v1\.linux/, 'the `io.containerd.runtime.v1.linux` runtime (use io.containerd.runc.v2)'],
      [/containerd\.default_runtime\]|^\s*\[plugins\.[^\]]*\.default_runtime\]/m, '`default_runtime` (use default_runtime_name)'],
    ] as const
    const found = deprecated.filter(([re]) => re.test(config)).map(([, what]) => what)
    if (found.length)
      add(
        'fail',
        'containerd deprecated keys',
        `${CONTAINERD_CONFIG} has ${found.join('; ')}: containerd prints DEPRECATION warnings and 2.0 refuses them`,
        './install --phases containerd rewrites the file without them',
      )
    else add('ok', 'containerd deprecated keys', 'none')
    await cgroupDrivers(ctx, add, config)
  }
}

/** The kubelet's cgroup driver and containerd's: systemd both (field notes: pods restart endlessly otherwise). */
async function cgroupDrivers(ctx: Context, add: Add, config: string): Promise<void> {
  const { host } = ctx
  const containerdSystemd = /SystemdCgroup\s*=\s*true/.test(config)
  const kubelet = await host.readText(KUBELET_CONFIG)
  if (!kubelet) {
    // Field notes error 4: expected until kubeadm init/join writes it.
    add('ok', 'kubelet config', `${KUBELET_CONFIG} not there yet: expected until kubeadm init or join writes it (kubelet restarts until then)`)
    // kubeadm will configure the kubelet for systemd (our KubeletConfiguration says so):
    // containerd on cgroupfs (what `containerd config default` writes) is a mismatch now.
    if (!containerdSystemd)
      add(
        'fail',
        'cgroup drivers',
        `containerd's runc uses cgroupfs (SystemdCgroup = false or unset in ${CONTAINERD_CONFIG}), and kubeadm will set up the kubelet for systemd: pods would restart endlessly`,
        `./install --phases containerd rewrites ${CONTAINERD_CONFIG} with SystemdCgroup = true and restarts containerd (by hand: set it under [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options], then systemctl restart containerd)`,
      )
  } else {
    const driver = (yaml.load(kubelet) as { cgroupDriver?: string })?.cgroupDriver ?? 'cgroupfs'
    const ctrDriver = containerdSystemd ? 'systemd' : 'cgroupfs'
    if (driver !== ctrDriver)
      add(
        'fail',
        'cgroup drivers',
        `kubelet uses ${driver}, containerd uses ${ctrDriver}`,
        'both must be systemd: cgroupDriver: systemd in the KubeletConfiguration and SystemdCgroup = true in containerd (./install does both)',
      )
    else add('ok', 'cgroup drivers', `kubelet and containerd both use ${driver}`)
  }
}

/** Two containerd or runc binaries, and which one runs. */
async function binaries(ctx: Context, add: Add, read: Read): Promise<void> {
  const { host } = ctx
  const config = await read(CONTAINERD_CONFIG)
  const unit = (await host.readText(CONTAINERD_UNIT)) ?? ''
  const runs = /^ExecStart=(\S+)/m.exec(unit)?.[1] ?? '(no unit)'
  const runcUsed = (config && /BinaryName\s*=\s*"([^"]+)"/.exec(config)?.[1]) || 'runc on PATH'
  for (const [name, used] of [
    ['containerd', runs],
    ['runc', runcUsed],
  ] as const) {
    const copies = await copiesOf(ctx, name)
    if (copies.length > 1)
      add(
        'warn',
        `${name} binaries`,
        `${copies.join(' and ')}; the one in use: ${used}`,
        `remove the one not in use if nothing needs it (apt remove containerd.io pulls docker-ce with it: check first)`,
      )
    else add('ok', `${name} binaries`, copies[0] ? `${copies[0]} (in use: ${used})` : 'not installed')
  }
}

/** Kernel modules, live and persisted. What the kernel phase has not touched yet is to do, not broken: its files are not there. */
async function modules(ctx: Context, add: Add, read: Read): Promise<void> {
  const { host } = ctx
  const loaded = await loadedModules(host)
  const modulesFile = await read(MODULES_LOAD)
  const persisted = modulesFile ?? ''
  for (const m of ['overlay', 'br_netfilter']) {
    if (!loaded.has(m) && modulesFile === undefined)
      add('todo', `module ${m}`, 'not loaded yet (the kernel phase has not run)', `sudo ./install --role master|worker loads it (or --phases kernel)`)
    else if (!loaded.has(m)) add('fail', `module ${m}`, 'not loaded', `modprobe ${m} (./install --phases kernel)`)
    else if (!persisted.split('\n').includes(m))
      add('warn', `module ${m}`, `loaded, but not in ${MODULES_LOAD}: gone after a reboot`, './install --phases kernel')
    else add('ok', `module ${m}`, 'loaded and persisted')
  }
}

/** The sysctls Kubernetes needs, live and persisted. */
async function sysctls(ctx: Context, add: Add, read: Read): Promise<void> {
  const { host } = ctx
  const sysctlText = await read(SYSCTL_CONF)
  const sysctlFile = sysctlText ?? ''
  for (const [k, v] of SYSCTLS.slice(0, 3)) {
    const live = ((await host.readText(procSys(k))) ?? '').trim()
    if (live !== v && sysctlText === undefined)
      add(
        'todo',
        k,
        `is ${live || 'unset'}, needs ${v}: not set yet (the kernel phase has not run)`,
        'sudo ./install --role master|worker sets it (or --phases kernel)',
      )
    else if (live !== v) add('fail', k, `is ${live || 'unset'}, needs ${v}`, 'sysctl --system after ./install --phases kernel')
    else if (!new RegExp(`^${k.replaceAll('.', '\\.')}\\s*=\\s*${v}`, 'm').test(sysctlFile))
      add('warn', k, `set now, not in ${SYSCTL_CONF}: lost at reboot`, './install --phases kernel')
    else add('ok', k, `${v}, persisted`)
  }
}

/** Swap off now and at boot. */
async function swap(ctx: Context, add: Add, read: Read): Promise<void> {
  const { host } = ctx
  const swaps = await activeSwaps(host)
  const fstabSwap = ((await host.readText(FSTAB)) ?? '').split('\n').filter((l) => !l.trim().startsWith('#') && l.trim().split(/\s+/)[2] === 'swap')
  const kernelDone = (await read(MODULES_LOAD)) !== undefined || (await read(SYSCTL_CONF)) !== undefined
  if (swaps.length && !kernelDone)
    add(
      'todo',
      'swap',
      `on: ${swaps.map((l) => l.split(/\s+/)[0]).join(', ')}: not turned off yet (the kernel phase has not run)`,
      'sudo ./install --role master|worker turns it off now and at boot',
    )
  else if (swaps.length)
    add('fail', 'swap', `on: ${swaps.map((l) => l.split(/\s+/)[0]).join(', ')}`, 'swapoff -a, and ./install --phases kernel to keep it off')
  else if (fstabSwap.length)
    add('warn', 'swap', `off now, but ${FSTAB} turns it on at boot: ${fstabSwap[0]!.trim()}`, './install --phases kernel comments it out (keeping a backup)')
  else add('ok', 'swap', 'off, and off after reboot')
}

/** Field notes error 5: a port in use before the node has joined. */
async function ports(ctx: Context, add: Add): Promise<void> {
  const joined = await ctx.host.exists(KUBELET_KUBECONFIG)
  for (const [port, who] of [
    [10250, 'kubelet'],
    [6443, 'kube-apiserver'],
  ] as const) {
    if (joined) continue
    if (!(await portFree(port)))
      add(
        'fail',
        `port ${port}`,
        `in use by ${describeListener(await listenerOn(port))} before this node joined a cluster`,
        `a ${who} from an earlier attempt: ./install reset, then run ./install again`,
      )
  }
}

/** Field notes error 6: a clock behind the cluster's certificates. */
async function caClock(ctx: Context, add: Add): Promise<void> {
  const pem = await ctx.host.readText(CA_CERT)
  if (pem) {
    const cert = new X509Certificate(pem)
    const now = ctx.facts.now()
    if (now < Date.parse(cert.validFrom))
      add(
        'fail',
        'clock',
        `the node's time ${localTime(new Date(now))} is before the cluster CA's start ${localTime(new Date(cert.validFrom))}`,
        'set the clock (timedatectl set-time, or an NTP server inside the network), then delete the failing pods (kubectl delete pod -n kube-system <pod>) so they start again',
      )
    else if (now > Date.parse(cert.validTo))
      add(
        'fail',
        'clock',
        `the cluster CA expired at ${localTime(new Date(cert.validTo))} (or the clock is ahead)`,
        'check the clock; renew with kubeadm certs renew',
      )
    else add('ok', 'clock', "within the cluster certificates' validity")
  }
}

/** Images: in k8s.io, under their exact names; not elsewhere; pinned. */
async function images(ctx: Context, add: Add): Promise<void> {
  const { bundle } = ctx
  const present = await listImageLabels(ctx, 'k8s.io')
  if (!present) add('warn', 'images', `containerd does not answer at ${ctx.options.containerdAddress}`, 'systemctl status containerd; journalctl -u containerd')
  else {
    const absent = bundle.needed.filter((n) => !present.has(n))
    if (!absent.length) add('ok', 'images', `all ${bundle.needed.length} images the node needs are in k8s.io`)
    else {
      const where = (await imagesElsewhere(ctx, absent)).map((e) => `${e.image} is in namespace "${e.namespace}"`)
      add(
        'fail',
        'images',
        `not in k8s.io: ${absent.join(', ')}${where.length ? ` (${where.join('; ')}: imported without -n k8s.io)` : ''}`,
        './install --phases images imports them into k8s.io',
      )
    }
    // Kubelet's image garbage collection deletes unpinned images under disk pressure; an
    // air-gapped node cannot pull them back.
    const unpinned = bundle.needed.filter((n) => present.has(n) && !present.get(n)!.labels.includes(PINNED_LABEL))
    if (unpinned.length)
      add(
        'warn',
        'images pinned',
        `not pinned: ${unpinned.join(', ')}: kubelet's image garbage collection may delete them, and nothing can pull them back`,
        `./install --phases images pins them (ctr -n k8s.io images label IMAGE ${PINNED_LABEL})`,
      )
    else if (!absent.length) add('ok', 'images pinned', `all pinned (${PINNED_LABEL})`)
  }
}

/** The pod network's pool (Calico's, or Flannel's network) against kubeadm's pod subnet. */
async function calicoPool(ctx: Context, add: Add): Promise<void> {
  const kubeadmCfg = await ctx.host.readText(KUBEADM_CONFIG)
  const calico = await ctx.host.readText(CALICO_APPLIED)
  const flannel = await ctx.host.readText(FLANNEL_APPLIED)
  if (kubeadmCfg && (calico || flannel)) {
    const pod = (yaml.loadAll(kubeadmCfg) as { kind?: string; networking?: { podSubnet?: string } }[]).find((d) => d?.kind === 'ClusterConfiguration')
      ?.networking?.podSubnet
    const [check, whose, pool] = flannel
      ? (['Flannel network', "Flannel's network", flannelNetwork(flannel)] as const)
      : (['Calico pool', "Calico's pool", /name: CALICO_IPV4POOL_CIDR\s*\n\s*value: '?"?([^'"\s]+)/.exec(calico!)?.[1]] as const)
    if (pool !== pod)
      add(
        'fail',
        check,
        `${whose} is ${pool ?? (flannel ? 'not set' : 'not set (Calico then uses 192.168.0.0/16)')}, kubeadm's pod subnet is ${pod}`,
        'run ./install --phases network on the first master with the same --pod-subnet',
      )
    else add('ok', check, `${pool} = kubeadm's pod subnet`)
  }
}

/**
 * Field notes error 6, as it happens: a node that was off while Calico's CNI token expired
 * cannot set up pods ("Unauthorized"), whatever its clock says now.
 */
async function calicoToken(ctx: Context, add: Add): Promise<void> {
  const calicoKubeconfig = await ctx.host.readText(CALICO_CNI_KUBECONFIG)
  if (calicoKubeconfig) {
    const exp = jwtExpiry(/^\s*token:\s*"?([A-Za-z0-9._-]+)"?\s*$/m.exec(calicoKubeconfig)?.[1])
    const now = ctx.facts.now()
    if (exp !== undefined && exp <= now)
      add(
        'fail',
        'Calico CNI token',
        `${CALICO_CNI_KUBECONFIG} holds a token that expired at ${localTime(new Date(exp))}: pods on this node fail with "Unauthorized"`,
        `restart this node's calico-node pod so it writes a fresh one (on a master: kubectl -n kube-system delete pod -l k8s-app=calico-node --field-selector spec.nodeName=${ctx.cluster.config.nodeName})`,
      )
    else if (exp !== undefined) add('ok', 'Calico CNI token', `valid until ${localTime(new Date(exp))}`)
  }
}

/** The join files on the USB stick, and this node's clock against the master's that wrote them. */
async function joinFiles(ctx: Context, add: Add): Promise<void> {
  for (const rel of [JOIN_WORKER, JOIN_CONTROL_PLANE]) {
    const text = await ctx.usb.readText(`/${rel}`)
    if (text === undefined) continue
    // The join file's own validity by the wall clock; this node's clock against the
    // master's (when it wrote the file) separately, by the node's clock.
    const issued = /^issued: '?([^'\n]+)'?$/m.exec(text)?.[1]
    const skew = issued ? Date.parse(issued) - ctx.facts.now() : NaN
    if (skew > CLOCK_SLACK_MS)
      add(
        'fail',
        'clock vs master',
        `${rel} was written on the master at ${issued}: this node's clock is behind it by ${Math.round(skew / 60_000)} minutes or more (kubeadm join fails with x509 "certificate is not yet valid")`,
        "set the time (timedatectl set-time '...', or chronyd against a server inside the network)",
      )
    try {
      parseJoinFile(text, rel)
      add('ok', rel, 'valid')
    } catch (e) {
      add('warn', rel, (e as Error).message.split(';')[0]!, 'on the first master: sudo ./install join-command')
    }
  }
}

/** Every check, in the order doctor prints them. */
const CHECKS: Check[] = [
  // Field notes error 1: kubeadm's preflight stops on missing conntrack (and warns on socat).
  adding(hostCommandFindings),
  containerdConfig,
  binaries,
  adding((ctx) => nameserverFinding(ctx, 'fail')),
  adding(firewallFindings),
  adding((ctx) => securityFindings(ctx, true)),
  modules,
  sysctls,
  swap,
  ports,
  caClock,
  images,
  calicoPool,
  calicoToken,
  joinFiles,
  // The add-ons the first master applied (running; metrics-server's TLS); the registry's certificate, on its node.
  adding(addonFindings),
  adding(registryFindings),
  // With endpoint: local, which masters this node's proxy reaches.
  adding(endpointFindings),
  adding(vipFindings),
  // The usual way an air-gapped cluster dies: kubeadm's certificates, one year after init.
  adding(certFindings),
  adding(versionFindings),
  // This node's clock against the API server's (the Date header it answers with).
  adding(async (ctx) => {
    const node = await installedNode(ctx)
    return node && clockSkewFinding(ctx, node.kubeconfig)
  }),
]

/** The `exp` of a JWT (milliseconds), read without checking it: only the node's view of time matters here. */
function jwtExpiry(token: string | undefined): number | undefined {
  const payload = token?.split('.')[1]
  if (!payload) return undefined
  try {
    const exp = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: unknown }).exp
    return typeof exp === 'number' ? exp * 1000 : undefined
  } catch {
    return undefined
  }
}
