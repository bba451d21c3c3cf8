import { loadYaml } from '../bundle/yaml.js'
import { type Cidr, cidrSize, overlaps, parseCidr, parseIPv4 } from './cidr.js'
import type { NodeFacts } from './facts.js'
import { didYouMean } from '../bundle/text.js'
import { type Backend, localEndpoint } from './apiserver-proxy.js'
import { bad, RESERVED } from './config-checks.js'
import { endpointOf } from './endpoint-config.js'
import { addonChoices, type AddonChoices } from './addons.js'
import { registryConfig, type RegistryConfig } from './registry.js'

export interface Taint {
  key: string
  value?: string
  effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute'
}

/** The cluster as the user describes it (cluster.yaml and flags), checked, with defaults filled in. */
export interface ClusterConfig {
  nodeName: string
  advertiseAddress?: string
  controlPlaneEndpoint?: string
  /**
   * endpoint: local: the masters the proxy on every node spreads over (controlPlaneEndpoint
   * is then that proxy, 127.0.0.1:7443). Left out: one master, or the operator's own load
   * balancer or virtual IP as controlPlaneEndpoint.
   */
  localEndpoint?: { masters: Backend[] }
  /** endpoint: { vip }: the virtual IP the masters hold with keepalived (controlPlaneEndpoint is then vip:6443). */
  vip?: { address: string; iface?: string; masters: Backend[] }
  podSubnet: string
  serviceSubnet: string
  dnsDomain: string
  clusterName: string
  taints?: Taint[]
  extraHosts: { ip: string; names: string[] }[]
  calicoAutodetection?: string
  tokenTTL: string
  /** On an SELinux node: set it permissive (kubeadm's requirement), or keep it enforcing (container-selinux must be installed). */
  selinux: 'permissive' | 'keep'
  /** With firewalld running: open the role's ports in it, or keep it as it is (then they must be open already). */
  firewalld: 'open' | 'keep'
  /** A registry inside the air gap: which node runs it, the name every node pulls by. */
  registry?: RegistryConfig
  /** The add-ons the first master applies (those the bundle carries, unless set to false), with their choices. */
  addons: AddonChoices
}

export const CLUSTER_KEYS = [
  'nodes',
  'controlPlaneEndpoint',
  'endpoint',
  'podSubnet',
  'serviceSubnet',
  'dnsDomain',
  'clusterName',
  'taints',
  'extraHosts',
  'calicoAutodetection',
  'tokenTTL',
  'selinux',
  'firewalld',
  'addons',
  'registry',
] as const

export interface ClusterFlags {
  advertiseAddress?: string
  podSubnet?: string
  serviceSubnet?: string
  controlPlaneEndpoint?: string
  /** `local`: the local endpoint (cluster.yaml endpoint). */
  endpoint?: string
  /** The masters, `name=address,...` (cluster.yaml: nodes with role: master): the fleet passes its inventory's. */
  masters?: string
  nodeName?: string
}

/** What differs per node, in cluster.yaml only under nodes.<hostname>. */
const PER_NODE_KEYS = ['nodeName', 'advertiseAddress'] as const
/** ... and what the other nodes need to know of it: whether it is a master (the local endpoint's list). */
const NODE_ENTRY_KEYS = [...PER_NODE_KEYS, 'role'] as const

/** A DNS name: labels of letters, digits and -, joined by dots. */
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$/

/** kubeadm takes any TTL; a join secret that outlives a month is a mistake. */
const MAX_TOKEN_TTL_MS = 720 * 3_600_000

/**
 * Reads cluster.yaml (if any) and the flags (which win), and checks everything before a
 * single file is written: CIDRs, overlaps with each other and with this node's networks,
 * the endpoint, unknown keys (with the nearest known one). Returns the config and the
 * warnings to show.
 */
export function clusterConfig(
  text: string | undefined,
  source: string,
  flags: ClusterFlags,
  facts: Pick<NodeFacts, 'networks' | 'hostname'>,
): { config: ClusterConfig; warnings: string[]; listed: Map<string, string | undefined> } {
  const thisHost = facts.hostname.toLowerCase()
  const { o, str } = settings(text, source, thisHost)
  // The nodes the file names, and the address it gives each (for the fit check below).
  const listed = new Map(
    Object.entries((o.nodes ?? {}) as Record<string, { advertiseAddress?: unknown }>).map(([h, v]) => [
      h,
      v.advertiseAddress === undefined ? undefined : String(v.advertiseAddress),
    ]),
  )
  const warnings: string[] = []
  const { pod, svc } = subnets(flags, str, facts.networks, warnings)
  const { advertiseAddress, controlPlaneEndpoint: given } = addresses(flags, str)
  const { local, vip } = endpointOf(o, given, source, flags)
  const controlPlaneEndpoint = local ? localEndpoint() : vip ? `${vip.address}:6443` : given
  const { selinux, firewalld, tokenTTL } = choices(str)
  const taints = taintsOf(o, source)
  const extraHosts = extraHostsOf(o, source)
  const { nodeName, dnsDomain, clusterName, autodetect } = names(flags, str, thisHost)
  const config: ClusterConfig = {
    nodeName,
    ...(advertiseAddress ? { advertiseAddress } : {}),
    ...(controlPlaneEndpoint ? { controlPlaneEndpoint } : {}),
    ...(local ? { localEndpoint: local } : {}),
    ...(vip ? { vip } : {}),
    podSubnet: pod.text,
    serviceSubnet: svc.text,
    dnsDomain,
    clusterName,
    ...(taints ? { taints } : {}),
    extraHosts,
    ...(autodetect ? { calicoAutodetection: autodetect } : {}),
    tokenTTL,
    selinux: selinux as ClusterConfig['selinux'],
    firewalld: firewalld as ClusterConfig['firewalld'],
    addons: addonChoices(o.addons, source),
  }
  const registry = registryConfig(o.registry, source)
  if (registry) config.registry = registry
  return { config, warnings, listed }
}

/**
 * Whether cluster.yaml fits this node, or was written for other machines (the example, used
 * as it is): on the first master, an endpoint that is another listed node's address, or in
 * none of this node's networks (for one master, its own address is the endpoint); on any
 * node, a nodes: map none of whose hosts is this one or on its networks. Each problem is one
 * line naming the key to edit. Networks unknown (none given): nothing is judged by them.
 */
export function unfitConfig(
  config: ClusterConfig,
  listed: ReadonlyMap<string, string | undefined>,
  facts: Pick<NodeFacts, 'networks' | 'hostname'>,
  node: { advertise: string | undefined; firstMaster: boolean },
): string[] {
  const problems: string[] = []
  const nets = facts.networks.map((n) => parseCidr(n)).filter((n): n is Cidr => !!n)
  const onNetworks = (ip: string) => {
    const v = parseIPv4(ip)
    return v !== undefined && nets.some((n) => overlaps(n, { base: v, prefix: 32, text: ip }))
  }
  const me = `this node (${facts.hostname}${node.advertise ? `, ${node.advertise}` : ''})`
  // The local endpoint is every node's own 127.0.0.1, on no network and nobody's address.
  const host = config.localEndpoint ? undefined : config.controlPlaneEndpoint?.replace(/:\d+$/, '')
  if (node.firstMaster && host && parseIPv4(host) !== undefined && host !== node.advertise) {
    const owner = [...listed].find(([h, ip]) => ip === host && h !== facts.hostname.toLowerCase())?.[0]
    if (owner)
      problems.push(
        `controlPlaneEndpoint ${config.controlPlaneEndpoint} is ${owner}'s address (nodes:), not ${me}, and kubeadm init runs on the first master: edit controlPlaneEndpoint in cluster.yaml (one master: leave it out), or run this on ${owner}`,
      )
    else if (nets.length && !onNetworks(host))
      problems.push(
        `controlPlaneEndpoint ${config.controlPlaneEndpoint} is on none of the networks of ${me} (${facts.networks.join(', ')}): edit controlPlaneEndpoint in cluster.yaml (one master: leave it out; several: the load balancer or virtual IP in front of them)`,
      )
  }
  const hosts = [...listed.keys()]
  if (hosts.length && !listed.has(facts.hostname.toLowerCase()) && nets.length && ![...listed.values()].some((ip) => ip !== undefined && onNetworks(ip)))
    problems.push(
      `nodes: in cluster.yaml names ${hosts.join(', ')}, none of them ${me} nor on its networks (${facts.networks.join(', ')}): edit nodes: for your machines' hostnames and addresses (./install config prints this node's)`,
    )
  return problems
}

/** A value of cluster.yaml as text: this node's own entry for the per-node keys. */
type Str = (k: string) => string | undefined

/** cluster.yaml as a mapping, its keys checked (unknown ones with the nearest known one), and its values read as text. */
function settings(text: string | undefined, source: string, thisHost: string): { o: Record<string, unknown>; str: Str } {
  const raw = (text ? loadYaml(text, source) : {}) ?? {}
  if (typeof raw !== 'object' || Array.isArray(raw)) bad(`${source}: not a mapping of settings`, 'see cluster.example.yaml in the bundle folder')
  const o = raw as Record<string, unknown>
  // The same cluster.yaml goes to every node: what differs per node (its name, its address)
  // comes from flags, the node itself, or the file's per-node map keyed by hostname.
  for (const k of PER_NODE_KEYS) {
    if (k in o)
      bad(
        `${source}: ${k} is per node, and the same cluster.yaml goes to every node (every worker would be ${JSON.stringify(o[k])})`,
        `give --${k === 'nodeName' ? 'node-name' : 'advertise-address'} on each node, or write nodes: { <hostname>: { ${k}: ... } }`,
      )
  }
  for (const k of Object.keys(o))
    if (!(CLUSTER_KEYS as readonly string[]).includes(k))
      bad(`${source}: unknown key ${JSON.stringify(k)}${didYouMean(k, CLUSTER_KEYS)}`, `the keys are ${CLUSTER_KEYS.join(', ')}`)
  if (o.nodes !== undefined && (typeof o.nodes !== 'object' || o.nodes === null || Array.isArray(o.nodes)))
    bad(`${source}: nodes must map host names to { nodeName, advertiseAddress }`, 'e.g. nodes: { k8s01: { advertiseAddress: 192.168.1.11 } }')
  const nodes = (o.nodes ?? {}) as Record<string, unknown>
  for (const [h, v] of Object.entries(nodes)) {
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      bad(`${source}: nodes.${h} must be a mapping`, 'e.g. { nodeName: k8s02, advertiseAddress: 192.168.1.12 }')
    for (const k of Object.keys(v as object))
      if (!(NODE_ENTRY_KEYS as readonly string[]).includes(k))
        bad(`${source}: nodes.${h}: unknown key ${JSON.stringify(k)}${didYouMean(k, NODE_ENTRY_KEYS)}`, `the keys are ${NODE_ENTRY_KEYS.join(', ')}`)
    const role = (v as Record<string, unknown>).role
    if (role !== undefined && role !== 'master' && role !== 'worker')
      bad(`${source}: nodes.${h}.role ${JSON.stringify(role)} is neither master nor worker`, 'write role: master for each master (workers may leave it out)')
  }
  const mine = (nodes[thisHost] ?? {}) as Record<string, unknown>
  // Every value is text: a mapping or a list where text belongs is refused, never String()ed.
  const str = (k: string): string | undefined => {
    const v = (PER_NODE_KEYS as readonly string[]).includes(k) ? mine[k] : o[k]
    if (v === undefined || v === null) return undefined
    if (typeof v !== 'string' && typeof v !== 'number')
      return bad(
        `${source}: ${k} must be text, found ${Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : typeof v}`,
        'see cluster.example.yaml in the bundle folder',
      )
    return String(v)
  }
  return { o, str }
}

/** The pod and service subnets: CIDRs clear of reserved blocks, of each other and of this node's networks. */
function subnets(flags: ClusterFlags, str: Str, nodeNetworks: readonly string[], warnings: string[]): { pod: Cidr; svc: Cidr } {
  const podSubnet = flags.podSubnet ?? str('podSubnet') ?? '10.244.0.0/16'
  const serviceSubnet = flags.serviceSubnet ?? str('serviceSubnet') ?? '10.96.0.0/12'
  const pod =
    parseCidr(podSubnet) ?? bad(`pod subnet ${JSON.stringify(podSubnet)} is not an IPv4 network in CIDR form`, 'write it like 10.244.0.0/16 (no host bits set)')
  const svc =
    parseCidr(serviceSubnet) ??
    bad(`service subnet ${JSON.stringify(serviceSubnet)} is not an IPv4 network in CIDR form`, 'write it like 10.96.0.0/12 (no host bits set)')
  for (const [what, net] of [
    ['pod', pod],
    ['service', svc],
  ] as const) {
    const reserved = RESERVED.find((r) => overlaps(net, r.net))
    if (reserved)
      bad(
        `the ${what} subnet ${net.text} overlaps ${reserved.net.text} (${reserved.what})`,
        `pick a private block (defaults: 10.244.0.0/16 for pods, 10.96.0.0/12 for services)`,
      )
  }
  if (overlaps(pod, svc))
    bad(`the pod subnet ${pod.text} and the service subnet ${svc.text} overlap`, 'pick two separate blocks (defaults: 10.244.0.0/16 and 10.96.0.0/12)')
  for (const n of nodeNetworks) {
    const net = parseCidr(n)
    if (!net) continue
    if (overlaps(pod, net))
      bad(`the pod subnet ${pod.text} overlaps this node's network ${net.text}`, 'pick a pod subnet the nodes do not use (e.g. 10.244.0.0/16)')
    if (overlaps(svc, net))
      bad(`the service subnet ${svc.text} overlaps this node's network ${net.text}`, 'pick a service subnet the nodes do not use (e.g. 10.96.0.0/12)')
  }
  if (pod.prefix > 24) bad(`the pod subnet ${pod.text} is smaller than the /24 each node takes from it`, 'use a /16 (or at least a /23 for two nodes)')
  if (cidrSize(pod) < 2 * 256)
    warnings.push(
      `pod subnet ${pod.text} holds one node's pods only: every node takes a /24 of it, so a second node gets no pod addresses (the field notes' 10.244.0.0/24); use a /16 unless the cluster stays one node`,
    )
  return { pod, svc }
}

/** This node's address and the control-plane endpoint, when given. */
function addresses(flags: ClusterFlags, str: Str): { advertiseAddress?: string; controlPlaneEndpoint?: string } {
  const advertiseAddress = flags.advertiseAddress ?? str('advertiseAddress')
  if (advertiseAddress !== undefined) {
    const ip = parseIPv4(advertiseAddress)
    if (ip === undefined) bad(`advertise address ${JSON.stringify(advertiseAddress)} is not an IPv4 address`, "give this node's address, e.g. 192.168.1.11")
    const reserved = RESERVED.find((r) => overlaps({ base: ip!, prefix: 32, text: advertiseAddress }, r.net))
    if (reserved)
      bad(
        `advertise address ${advertiseAddress} is ${reserved.what}, not an address other nodes reach`,
        "give this node's address on the cluster network, e.g. 192.168.1.11",
      )
  }

  const controlPlaneEndpoint = flags.controlPlaneEndpoint ?? str('controlPlaneEndpoint')
  if (controlPlaneEndpoint !== undefined) {
    const m = /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(controlPlaneEndpoint)
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535)
      bad(`control-plane endpoint ${JSON.stringify(controlPlaneEndpoint)} is not host:port`, 'write it like 192.168.1.11:6443 or k8s-api.example:6443')
  }
  return { advertiseAddress, controlPlaneEndpoint }
}

/** What the installer may change on the node (SELinux, firewalld), and how long a join token lives. */
function choices(str: Str): { selinux: string; firewalld: string; tokenTTL: string } {
  const selinux = str('selinux') ?? 'permissive'
  if (selinux !== 'permissive' && selinux !== 'keep')
    bad(`selinux ${JSON.stringify(selinux)} is neither permissive nor keep`, 'write selinux: permissive (the default) or selinux: keep')
  const firewalld = str('firewalld') ?? 'open'
  if (firewalld !== 'open' && firewalld !== 'keep')
    bad(`firewalld ${JSON.stringify(firewalld)} is neither open nor keep`, 'write firewalld: open (the default) or firewalld: keep')
  const tokenTTL = str('tokenTTL') ?? '24h'
  if (!/^\d{1,6}(h|m)$/.test(tokenTTL)) bad(`tokenTTL ${JSON.stringify(tokenTTL)} is not a duration`, 'write it like 24h or 90m')
  if (durationMs(tokenTTL) < 60_000 || durationMs(tokenTTL) > MAX_TOKEN_TTL_MS)
    bad(`tokenTTL ${tokenTTL} is out of range`, 'give 1m to 720h (a join token is a secret: keep it short-lived)')
  return { selinux, firewalld, tokenTTL }
}

function taintsOf(o: Record<string, unknown>, source: string): Taint[] | undefined {
  let taints: Taint[] | undefined
  if (o.taints !== undefined) {
    if (!Array.isArray(o.taints)) bad(`${source}: taints must be a list`, 'see cluster.example.yaml in the bundle folder')
    taints = (o.taints as Record<string, unknown>[]).map((t, i) => {
      const effect = t?.effect
      const label = /^[A-Za-z0-9]([-A-Za-z0-9_./]{0,251}[A-Za-z0-9])?$/
      if (typeof t?.key !== 'string' || !label.test(t.key) || typeof effect !== 'string' || !['NoSchedule', 'PreferNoSchedule', 'NoExecute'].includes(effect))
        bad(`${source}: taints[${i}] needs a key and an effect (NoSchedule, PreferNoSchedule or NoExecute)`, 'see cluster.example.yaml in the bundle folder')
      if (t.value !== undefined && (typeof t.value !== 'string' || !/^[-A-Za-z0-9_.]{0,63}$/.test(t.value)))
        bad(`${source}: taints[${i}].value must be a label value`, 'letters, digits, -, _ and . (at most 63)')
      return { key: t.key as string, ...(t.value !== undefined ? { value: t.value as string } : {}), effect: effect as Taint['effect'] }
    })
  }
  return taints
}

/** The /etc/hosts lines to add: each an IPv4 address and host names. */
function extraHostsOf(o: Record<string, unknown>, source: string): { ip: string; names: string[] }[] {
  if (o.extraHosts !== undefined && o.extraHosts !== null && !Array.isArray(o.extraHosts))
    bad(`${source}: extraHosts must be a list`, 'e.g. [{ ip: 192.168.1.12, names: [k8s02] }]')
  return ((o.extraHosts ?? []) as Record<string, unknown>[]).map((h, i) => {
    const ip = h?.ip
    const names = Array.isArray(h?.names) ? (h.names as unknown[]) : []
    if (typeof ip !== 'string' || parseIPv4(ip) === undefined || names.length === 0)
      bad(`${source}: extraHosts[${i}] needs an ip and a list of names`, 'e.g. { ip: 192.168.1.12, names: [k8s02] }')
    // Each name goes on an /etc/hosts line: a host name and nothing else (no space, no newline).
    for (const n of names)
      if (typeof n !== 'string' || !HOST_NAME.test(n))
        bad(`${source}: extraHosts[${i}]: ${JSON.stringify(n)} is not a host name`, 'letters, digits, - and . only')
    return { ip: ip as string, names: names as string[] }
  })
}

/** The node's, the cluster's and its DNS domain's names, and how Calico finds the node's address. */
function names(flags: ClusterFlags, str: Str, thisHost: string) {
  const nodeName = flags.nodeName ?? str('nodeName') ?? thisHost
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(nodeName))
    bad(`node name ${JSON.stringify(nodeName)} is not a valid Kubernetes node name`, 'use lower case letters, digits, - and .')

  const dnsDomain = str('dnsDomain') ?? 'cluster.local'
  if (!HOST_NAME.test(dnsDomain)) bad(`dnsDomain ${JSON.stringify(dnsDomain)} is not a DNS domain`, 'write it like cluster.local')
  const clusterName = str('clusterName') ?? 'kubernetes'
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(clusterName))
    bad(`clusterName ${JSON.stringify(clusterName)} is not a valid name`, 'lower case letters, digits and -')
  const autodetect = str('calicoAutodetection')
  if (autodetect !== undefined && !/^(first-found|kubernetes-internal-ip|(can-reach|interface|skip-interface|cidr)=[-A-Za-z0-9_.:,/*|^$]+)$/.test(autodetect))
    bad(
      `calicoAutodetection ${JSON.stringify(autodetect)} is not one of Calico's methods`,
      'e.g. can-reach=192.168.1.1, interface=eth0, cidr=192.168.1.0/24 or first-found',
    )
  return { nodeName, dnsDomain, clusterName, autodetect }
}

/** `24h` / `90m` in milliseconds. */
export const durationMs = (ttl: string): number => Number(ttl.slice(0, -1)) * (ttl.endsWith('h') ? 3_600_000 : 60_000)
