import { didYouMean } from '../bundle/text.js'
import type { Backend } from './apiserver-proxy.js'
import { overlaps, parseIPv4 } from './cidr.js'
import type { ClusterConfig, ClusterFlags } from './cluster-config.js'
import { bad, RESERVED } from './config-checks.js'

/**
 * The endpoint the bundle provides, if any: the local endpoint (HAProxy on every node to every
 * master), when asked for (`endpoint: local`) or when several masters are listed and no
 * controlPlaneEndpoint of the operator's own is given; or a virtual IP the masters hold
 * (`endpoint: { vip: 10.0.0.100, interface: eth0 }`). Each master must give its address.
 */
export function endpointOf(
  o: Record<string, unknown>,
  given: string | undefined,
  source: string,
  flags: ClusterFlags,
): { local?: ClusterConfig['localEndpoint']; vip?: ClusterConfig['vip'] } {
  const asked = flags.endpoint !== undefined ? endpointFlag(flags.endpoint) : endpointKey(o.endpoint, source)
  const masters = flags.masters !== undefined ? mastersFlag(flags.masters) : mastersListed(o, source)
  if (asked === undefined && (given !== undefined || masters.length < 2)) return {}
  const what = asked?.kind === 'vip' ? 'endpoint: { vip }' : 'endpoint: local'
  if (given !== undefined)
    bad(
      `${what} and a controlPlaneEndpoint (${given}) are both given`,
      'keep one: endpoint (the bundle provides it), or controlPlaneEndpoint (your own load balancer or virtual IP)',
    )
  if (!masters.length) bad(`${source}: ${what} names no master`, 'give each master as nodes: { <hostname>: { role: master, advertiseAddress: <its address> } }')
  if (asked?.kind !== 'vip') return { local: { masters } }
  if (masters.some((m) => m.address === asked.address))
    bad(`the virtual IP ${asked.address} is a master's own address`, "give an unused address on the masters' network")
  return { vip: { address: asked.address, ...(asked.iface ? { iface: asked.iface } : {}), masters } }
}

type AskedEndpoint = { kind: 'local' } | { kind: 'vip'; address: string; iface?: string }

const VIP_FIX = 'write endpoint: local (a proxy on every node to every master) or endpoint: { vip: <a free address>, interface: <optional> }'

/** cluster.yaml's endpoint: `local`, or `{ vip, interface }`. */
function endpointKey(v: unknown, source: string): AskedEndpoint | undefined {
  if (v === undefined || v === null) return undefined
  if (v === 'local') return { kind: 'local' }
  if (typeof v !== 'object' || Array.isArray(v)) return bad(`${source}: endpoint ${JSON.stringify(v)} is not known`, VIP_FIX)
  const e = v as Record<string, unknown>
  for (const k of Object.keys(e))
    if (k !== 'vip' && k !== 'interface') bad(`${source}: endpoint: unknown key ${JSON.stringify(k)}${didYouMean(k, ['vip', 'interface'])}`, VIP_FIX)
  return vipOf(String(e.vip ?? ''), e.interface === undefined ? undefined : String(e.interface), `${source}: endpoint`)
}

/** --endpoint local, or --endpoint vip=10.0.0.100[,interface=eth0]. */
function endpointFlag(v: string): AskedEndpoint {
  if (v === 'local') return { kind: 'local' }
  const m = /^vip=([^,]*)(?:,interface=(.*))?$/.exec(v)
  if (!m) return bad(`--endpoint ${JSON.stringify(v)} is not known`, 'give --endpoint local, or --endpoint vip=<a free address>[,interface=<name>]')
  return vipOf(m[1]!, m[2], '--endpoint')
}

function vipOf(address: string, iface: string | undefined, where: string): AskedEndpoint {
  const ip = parseIPv4(address)
  if (ip === undefined)
    bad(`${where}: the virtual IP ${JSON.stringify(address)} is not an IPv4 address`, "give a free address on the masters' network, e.g. 192.168.1.100")
  const reserved = RESERVED.find((r) => overlaps({ base: ip!, prefix: 32, text: address }, r.net))
  if (reserved) bad(`${where}: the virtual IP ${address} is ${reserved.what}`, "give a free address on the masters' network")
  if (iface !== undefined && !/^[A-Za-z0-9_.@-]{1,15}$/.test(iface)) bad(`${where}: ${JSON.stringify(iface)} is not an interface name`, 'e.g. eth0 or ens192')
  return { kind: 'vip', address, ...(iface ? { iface } : {}) }
}

/** The masters cluster.yaml lists (nodes with role: master), each with the address the proxies send to. */
function mastersListed(o: Record<string, unknown>, source: string): Backend[] {
  return Object.entries((o.nodes ?? {}) as Record<string, Record<string, unknown>>)
    .filter(([, v]) => v.role === 'master')
    .map(([h, v]) => {
      const address = v.advertiseAddress === undefined ? undefined : String(v.advertiseAddress)
      if (!address || parseIPv4(address) === undefined)
        bad(`${source}: nodes.${h} is a master with no advertiseAddress`, `the local endpoint sends to each master's address: give nodes.${h}.advertiseAddress`)
      return master(String(v.nodeName ?? h), address!, `${source}: nodes.${h}`)
    })
}

/** --masters m01=192.0.2.11,m02=192.0.2.12: the fleet's masters, from its inventory. */
export function mastersFlag(text: string): Backend[] {
  return text
    .split(',')
    .filter(Boolean)
    .map((entry) => {
      const [name, address, more] = entry.split('=')
      if (!name || !address || more !== undefined || parseIPv4(address) === undefined)
        bad(`--masters: ${JSON.stringify(entry)} is not name=address`, "write it like m01=192.0.2.11,m02=192.0.2.12 (each master's node name and IPv4 address)")
      return master(name!, address!, '--masters')
    })
}

function master(nodeName: string, address: string, where: string): Backend {
  const name = nodeName.toLowerCase()
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name))
    bad(`${where}: ${JSON.stringify(name)} is not a valid node name`, 'use lower case letters, digits, - and .')
  return { name, address }
}
