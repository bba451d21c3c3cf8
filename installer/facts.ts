import { lookup } from 'node:dns/promises'
import { hostname, networkInterfaces } from 'node:os'
import { networkOf } from './cidr.js'
import type { Host } from './host.js'
import { OS_RELEASE_FILES, PROC_NET_ROUTE } from './node-paths.js'
import { osRelease, type PackageFamily } from '../bundle/os-release.js'

/**
 * What the installer knows about the machine it runs on, gathered once before any phase: the
 * checks, the cluster config and the join files read these, never `process`, `os` or the
 * clock directly, so a test can give a node any facts it likes.
 */
export interface NodeFacts {
  /** The effective user id (0: root). */
  euid: number
  /** `amd64`, `arm64`, or Node's name for another CPU. */
  arch: string
  /** The hostname, as the system gives it. */
  hostname: string
  /** Whether the hostname resolves (kubeadm warns when it does not). */
  hostnameResolves: boolean
  /** This machine's IPv4 networks, loopback aside (`10.0.0.0/24`). */
  networks: string[]
  /** The address kubeadm would pick: the first IPv4 of the default route's interface. */
  defaultRouteAddress?: string
  /** The user who ran sudo (gets a kubeconfig too). */
  sudoUser?: string
  /** The release as the bundle names its package sets (`ubuntu-22.04`, `rocky-9`), from /etc/os-release. */
  release?: string
  /** How this node installs packages: dpkg (.deb) or rpm (.rpm), by its os-release's ID or ID_LIKE. */
  family?: PackageFamily
  /** The clock, in milliseconds. */
  now(): number
}

/** The facts of this machine (the route table read through the Host, so under --root the root's). */
export async function gatherFacts(host: Host, env: NodeJS.ProcessEnv = process.env): Promise<NodeFacts> {
  const name = hostname()
  const ifaces = networkInterfaces()
  const networks: string[] = []
  for (const list of Object.values(ifaces)) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal && a.cidr) networks.push(networkOf(a.cidr)!.text)
  const route = ((await host.readText(PROC_NET_ROUTE)) ?? '').split('\n').find((l) => l.split(/\s+/)[1] === '00000000')
  const iface = route?.split(/\s+/)[0]
  const defaultRouteAddress = iface ? ifaces[iface]?.find((a) => a.family === 'IPv4')?.address : undefined
  const os = (await host.readText(OS_RELEASE_FILES[0]!)) ?? (await host.readText(OS_RELEASE_FILES[1]!))
  return {
    ...(os === undefined ? {} : osRelease(os)),
    euid: process.geteuid?.() ?? 0,
    arch: process.arch === 'x64' ? 'amd64' : process.arch,
    hostname: name,
    hostnameResolves: await lookup(name).then(
      () => true,
      () => false,
    ),
    networks,
    ...(defaultRouteAddress ? { defaultRouteAddress } : {}),
    ...(env.SUDO_USER && env.SUDO_USER !== 'root' ? { sudoUser: env.SUDO_USER } : {}),
    now: Date.now,
  }
}
